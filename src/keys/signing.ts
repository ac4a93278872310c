import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { SignatureRefusal } from '../core/decision.js';

/**
 * Signed requests. A key's signing secret is not stored anywhere: it is derived, as
 * HMAC-SHA256(QUOTAD_SIGNING_KEY, "quotad-signing-v1\n" + key id + "\n" + SHA-256 of one of the key's API
 * secrets), so each API secret has its own signing secret and a rotation's overlap covers both alike.
 */
export const SIGNING_SECRET_PREFIX = 'qd_sign_';

/** How far a signature's timestamp may be from the authority's clock, by default. */
export const DEFAULT_SIGNATURE_MAX_AGE_MS = 300_000;

const NONCE = /^[A-Za-z0-9_-]{16,64}$/;
const TIMESTAMP = /^\d{1,12}$/;
const SIGNATURE = /^v1=([0-9a-f]{64})$/;

/** The signing secret paired with the API secret whose SHA-256 (hex) is `secretSha256Hex`. */
export function deriveSigningSecret(masterKey: Buffer, keyId: string, secretSha256Hex: string): string {
  const mac = createHmac('sha256', masterKey)
    .update(`quotad-signing-v1\n${keyId}\n${secretSha256Hex}`)
    .digest('hex');
  return `${SIGNING_SECRET_PREFIX}${mac}`;
}

/** What the client signs: timestamp, nonce, method, path and the body's SHA-256 (hex), one per line. */
export function signedText(parts: {
  timestamp: string;
  nonce: string;
  method: string;
  path: string;
  bodySha256Hex: string;
}): string {
  return `${parts.timestamp}\n${parts.nonce}\n${parts.method}\n${parts.path}\n${parts.bodySha256Hex}`;
}

/** `v1=<hex>`: the X-Quotad-Signature of `text` under `signingSecret` (the secret's UTF-8 bytes are the key). */
export function signText(signingSecret: string, text: string): string {
  return `v1=${createHmac('sha256', signingSecret).update(text).digest('hex')}`;
}

/** Signs a request as a client does; for tests, benchmarks and the README's example. */
export function signRequest(
  signingSecret: string,
  request: { timestamp: string; nonce: string; method: string; path: string; body: string | Buffer },
): string {
  const bodySha256Hex = createHash('sha256').update(request.body).digest('hex');
  return signText(signingSecret, signedText({ ...request, bodySha256Hex }));
}

export interface SignatureInput {
  timestamp: string;
  nonce: string;
  signature: string;
  method: string;
  path: string;
  bodySha256: Buffer;
}

/** Whether the three headers are shaped as the protocol says (checked before any secret is touched). */
export function signatureFormatProblem(
  input: Pick<SignatureInput, 'timestamp' | 'nonce' | 'signature'>,
): string | undefined {
  if (!TIMESTAMP.test(input.timestamp)) return 'X-Quotad-Timestamp must be Unix seconds';
  if (!NONCE.test(input.nonce)) return 'X-Quotad-Nonce must be 16 to 64 of A-Z, a-z, 0-9, _ and -';
  if (!SIGNATURE.test(input.signature)) return 'X-Quotad-Signature must be v1= and 64 lowercase hex digits';
  return undefined;
}

/**
 * Verifies a signature against the signing secret and the authority's clock: the HMAC compared in constant
 * time, then the timestamp within `maxAgeMs` of `nowMs` either way. The nonce is the store's to check.
 */
export function verifySignature(
  input: SignatureInput,
  signingSecret: string,
  nowMs: number,
  maxAgeMs: number,
): { ok: true } | { ok: false; code: SignatureRefusal; reason: string } {
  const problem = signatureFormatProblem(input);
  if (problem) return { ok: false, code: 'INVALID_SIGNATURE', reason: problem };
  const text = signedText({ ...input, bodySha256Hex: input.bodySha256.toString('hex') });
  const expected = createHmac('sha256', signingSecret).update(text).digest();
  const sent = Buffer.from((SIGNATURE.exec(input.signature) as RegExpExecArray)[1] as string, 'hex');
  if (!timingSafeEqual(expected, sent)) {
    return {
      ok: false,
      code: 'INVALID_SIGNATURE',
      reason: 'the signature does not match this key, method, path and body',
    };
  }
  const skewMs = Math.abs(Number(input.timestamp) * 1000 - nowMs);
  if (skewMs > maxAgeMs) {
    return {
      ok: false,
      code: 'SIGNATURE_EXPIRED',
      reason: `its timestamp is ${Math.round(skewMs / 1000)} s from the authority's clock (at most ${maxAgeMs / 1000} s)`,
    };
  }
  return { ok: true };
}
