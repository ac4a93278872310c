import type { FastifyInstance } from 'fastify';
import { connectAuthority, type AuthorityClient } from '../gateway/authority-client.js';
import { Authenticator, jwtVerifier } from '../gateway/auth.js';
import { KeyConfirmations } from '../gateway/key-confirmations.js';
import { ModelCallHandler } from '../gateway/model-call.js';
import { RequestLog } from '../gateway/request-log.js';
import { createGatewayServer } from '../gateway/server.js';
import { Settler } from '../gateway/settlement.js';
import { connectUpstream, type Upstream } from '../gateway/upstream.js';
import { secretScrubber, type Logger } from '../telemetry/logger.js';
import type { GatewayMetrics } from '../telemetry/gateway-metrics.js';
import type { GatewayConfig } from './gateway-config.js';
import { authorityCredentials } from './tls.js';

/** Settlements get more time than checks: nobody waits on them, and losing one loses real usage. */
const SETTLEMENT_ATTEMPT_TIMEOUT_MS = 2_000;
/** A key the authority answered for is read and estimated without asking again for this long. */
const KEY_CONFIRMATION_TTL_MS = 60_000;
/** Keys remembered as confirmed: about 1.5 MB. */
const CONFIRMED_KEYS = 10_000;

/** What the gateway's parts share, made by the caller: telemetry, and where the upstream is. */
export interface GatewayParts {
  logger: Logger;
  metrics: GatewayMetrics;
  /** The upstream's base URL: the configured one, or the demo upstream's. */
  upstreamUrl: string;
  /** Delays between settlement attempts (tests shorten them). */
  settlementBackoffMs?: readonly number[];
}

export interface ComposedGateway {
  /** The HTTP server, not yet listening. */
  app: FastifyInstance;
  authority: AuthorityClient;
  settler: Settler;
  upstream: Upstream;
  models: ModelCallHandler;
  /** The --request-log file; unset without one. */
  requestLog: RequestLog | undefined;
}

/** What the gateway's logs must never show, however it reaches them (an upstream may echo its key). */
export function gatewaySecrets(config: GatewayConfig): (string | undefined)[] {
  return [
    config.upstreamApiKey,
    config.jwt?.kind === 'secret' ? new TextDecoder().decode(config.jwt.secret) : undefined,
    config.authorityToken,
  ];
}

/**
 * The one wiring of the gateway process's parts: authority client, settlement, authentication, upstream,
 * key confirmations, the model-call handler, the request log file and the HTTP server. startGateway
 * (`quotad gateway`, the tests and the benchmarks) builds the gateway with it.
 */
export async function composeGateway(config: GatewayConfig, parts: GatewayParts): Promise<ComposedGateway> {
  const { logger, metrics, upstreamUrl } = parts;
  const authority = connectAuthority(config.authorityTarget, {
    credentials: authorityCredentials(config.authorityTls),
    ...(config.authorityToken === undefined ? {} : { token: config.authorityToken }),
    batch: config.authorityBatch,
    onBatchUnimplemented: () =>
      logger.warn(
        { authority: config.authorityTarget },
        'the authority does not serve batch calls (older than this gateway); calling it one request at a time',
      ),
  });
  const settler = new Settler({
    authority,
    metrics,
    logger,
    attemptTimeoutMs: SETTLEMENT_ATTEMPT_TIMEOUT_MS,
    ...(parts.settlementBackoffMs ? { backoffMs: parts.settlementBackoffMs } : {}),
  });
  const authenticator = new Authenticator(config.jwt ? await jwtVerifier(config.jwt) : undefined);
  const upstream = connectUpstream({
    baseUrl: upstreamUrl,
    apiKey: config.upstreamApiKey,
    timeoutMs: config.upstreamTimeoutMs,
  });
  const keys = new KeyConfirmations({
    ttlMs: KEY_CONFIRMATION_TTL_MS,
    maxKeys: CONFIRMED_KEYS,
    clock: { now: () => Date.now() },
  });
  const models = new ModelCallHandler({
    keys,
    authority,
    upstream,
    settler,
    metrics,
    logger,
    authorityTimeoutMs: config.authorityTimeoutMs,
    maxPendingChecks: config.maxPendingChecks,
    failMode: config.failMode,
  });
  const requestLog = config.requestLog
    ? new RequestLog({
        ...config.requestLog,
        scrub: secretScrubber(gatewaySecrets(config)),
        onError: (error) =>
          logger.error({ err: error.message, path: config.requestLog?.path }, 'request log not written'),
      })
    : undefined;
  const app = createGatewayServer({
    ...(requestLog ? { requestLog } : {}),
    authority,
    authenticator,
    keys,
    models,
    metrics,
    logger,
    authorityTimeoutMs: config.authorityTimeoutMs,
    maxBodyBytes: config.maxBodyBytes,
    trustedProxies: config.trustedProxies,
    connections: config.connections,
  });
  return { app, authority, settler, upstream, models, requestLog };
}
