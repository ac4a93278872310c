import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTVerifyResult,
} from 'jose';
import { formatDuration } from '../core/duration.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Principal } from '../core/quota.js';
import { requireOrg, requireText } from '../api/identity.js';
import { MAX_ID_LENGTH, MAX_NAME_LENGTH } from '../api/limits.js';
import { checkApiKey, isKeySubject, KEY_ID_PREFIX } from '../keys/api-key.js';
import { authenticationError } from './errors.js';

/** How internal callers' JWTs are verified: a shared HMAC secret, or a JWKS file of public keys. */
export type JwtConfig = ({ kind: 'secret'; secret: Uint8Array } | { kind: 'jwks'; path: string }) & {
  issuer?: string;
  audience?: string;
  /** The longest a token may be valid: exp − iat, or exp − now when it has no iat. */
  maxLifetimeMs: number;
};

/**
 * Who is calling, as far as the gateway can tell without the authority: the SHA-256 of an API key (the
 * authority decides whether the key is known and usable), or the principal of a verified JWT.
 */
export type Caller = { kind: 'key'; sha256: Buffer } | { kind: 'jwt'; principal: Principal };

/** A QuotaService credential: the oneof of CheckQuota, RecordUsage, GetUsage and ListModels. */
export type Credential = { apiKeySha256: Buffer } | { principal: Principal };

/** The caller as a QuotaService credential. */
export function credentialOf(caller: Caller): Credential {
  return caller.kind === 'key' ? { apiKeySha256: caller.sha256 } : { principal: caller.principal };
}

const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/;
const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
const PUBLIC_KEY_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
];

type Verifier = (token: string) => Promise<Principal>;

/** How far ahead of this gateway's clock a token's iat may be: issuers' clocks drift a little. */
export const JWT_IAT_SKEW_SECONDS = 60;

function claim(payload: Record<string, unknown>, name: string): string {
  const value = payload[name];
  if (typeof value !== 'string' || value === '') {
    throw authenticationError(`The token has no '${name}' claim.`, 'invalid_token');
  }
  return value;
}

function principalOf(payload: Record<string, unknown>): Principal {
  const principal = {
    subject: claim(payload, 'sub'),
    org: claim(payload, 'org'),
    tier: claim(payload, 'tier'),
  };
  if (isKeySubject(principal.subject)) {
    throw authenticationError(
      `The token's sub claim must not start with '${KEY_ID_PREFIX}': that prefix names API keys.`,
      'invalid_token',
    );
  }
  try {
    requireText('sub', principal.subject, MAX_ID_LENGTH);
    requireOrg('org', principal.org);
    requireText('tier', principal.tier, MAX_NAME_LENGTH);
  } catch (error) {
    if (error instanceof InvalidArgumentError) {
      throw authenticationError(`The token's ${error.field} claim ${error.reason}.`, 'invalid_token');
    }
    throw error;
  }
  return principal;
}

/**
 * A token must not be issued in the future, nor live longer than the configured maximum: a leaked token
 * is then good for a bounded time, whatever its issuer wrote.
 */
function checkLifetime(payload: Record<string, unknown>, maxLifetimeMs: number, nowSeconds: number): void {
  // jose has checked that exp is present and a number, and iat a number when present.
  const exp = payload.exp as number;
  const iat = payload.iat as number | undefined;
  if (iat !== undefined && iat > nowSeconds + JWT_IAT_SKEW_SECONDS) {
    throw authenticationError("The token's iat claim is in the future.", 'invalid_token');
  }
  if (exp - (iat ?? nowSeconds) > maxLifetimeMs / 1000) {
    throw authenticationError(
      `The token's exp claim is more than ${formatDuration(maxLifetimeMs)} after ${iat === undefined ? 'now (it has no iat)' : 'its iat'}: this gateway accepts no longer-lived tokens.`,
      'invalid_token',
    );
  }
}

/** Builds the JWT verifier for the configuration: an HMAC secret, or the public keys of a JWKS file. */
export async function jwtVerifier(config: JwtConfig): Promise<Verifier> {
  const claims = {
    ...(config.issuer ? { issuer: config.issuer } : {}),
    ...(config.audience ? { audience: config.audience } : {}),
    requiredClaims: ['exp'],
  };
  let verify: (token: string) => Promise<JWTVerifyResult>;
  if (config.kind === 'secret') {
    verify = (token) => jwtVerify(token, config.secret, { ...claims, algorithms: HMAC_ALGORITHMS });
  } else {
    const jwks = JSON.parse(await readFile(config.path, 'utf8')) as JSONWebKeySet;
    const keys = createLocalJWKSet(jwks);
    verify = (token) => jwtVerify(token, keys, { ...claims, algorithms: PUBLIC_KEY_ALGORITHMS });
  }
  return async (token) => {
    try {
      const { payload } = await verify(token);
      checkLifetime(payload, config.maxLifetimeMs, Math.floor(Date.now() / 1000));
      return principalOf(payload);
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) {
        throw authenticationError('The token has expired.', 'token_expired');
      }
      if (error instanceof joseErrors.JOSEError) {
        throw authenticationError(`The token was not accepted: ${error.message}.`, 'invalid_token');
      }
      throw error;
    }
  };
}

/** The bearer credential of a request: `Authorization: Bearer <credential>` or `X-API-Key: <credential>`. */
export function presentedCredential(
  headers: Record<string, string | string[] | undefined>,
): string | undefined {
  const authorization = headers.authorization;
  if (typeof authorization === 'string' && authorization !== '') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) {
      throw authenticationError(
        'The Authorization header must be "Bearer <API key>".',
        'invalid_authorization_header',
      );
    }
    return match[1];
  }
  const apiKey = headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey !== '' ? apiKey.trim() : undefined;
}

/**
 * Authenticates what a request presents. API keys are checked for format and checksum here, so a typo
 * or a scanner's guess never costs an authority call; only the SHA-256 of a well-formed key leaves.
 */
export class Authenticator {
  readonly #verifyJwt: Verifier | undefined;

  constructor(verifyJwt: Verifier | undefined) {
    this.#verifyJwt = verifyJwt;
  }

  async authenticate(headers: Record<string, string | string[] | undefined>): Promise<Caller> {
    const presented = presentedCredential(headers);
    if (presented === undefined) {
      throw authenticationError(
        'You did not provide an API key. Send it as "Authorization: Bearer <key>" or "X-API-Key: <key>".',
        'missing_api_key',
      );
    }
    if (presented.startsWith('qd_')) {
      const checked = checkApiKey(presented);
      if (checked.ok) return { kind: 'key', sha256: checked.sha256 };
      throw authenticationError('Incorrect API key provided.', 'invalid_api_key');
    }
    if (JWT_SHAPE.test(presented)) {
      if (!this.#verifyJwt) {
        throw authenticationError('This gateway does not accept JWTs; use an API key.', 'invalid_api_key');
      }
      return { kind: 'jwt', principal: await this.#verifyJwt(presented) };
    }
    throw authenticationError('Incorrect API key provided.', 'invalid_api_key');
  }
}
