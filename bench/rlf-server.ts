/**
 * The peer a Node user would pick: rate-limiter-flexible's RateLimiterRedis behind the same grpc-js server
 * and QuotaService messages as the authority, on an ioredis client made as the authority makes its own.
 *
 *   node dist/bench/rlf-server.js <redis url>    (prints `listening <port>`; stops on SIGTERM)
 *
 * The bench tier's three limits are three limiters: requests/min (1 point a request), tokens/min (a point
 * a token) and USD/day (a point a micro-dollar). RateLimiterUnion cannot hold them: it consumes the same
 * points on every limiter. So a CheckQuota consumes the three together (Promise.all: three EVALSHA) and
 * a RecordUsage moves tokens and dollars by actual minus estimate with `reward` (or `penalty`): two more.
 * The client has quotad's options, so each command is its own write: with ioredis auto-pipelining this
 * server was slower (1,498 against 1,956 CheckQuota + RecordUsage a second, one session, 5 s loops), so
 * the peer is measured in its better setup. What this does not give, and quotad does:
 *
 * - all or nothing: a request refused by one limiter has still been charged by the others;
 * - a reservation: the estimate is kept in this process (a Map by request_id), not in Redis, so another
 *   replica could not settle it and a restart forgets it; no idempotency of a retried check or settle;
 * - sliding windows and calendar days: each limiter is a fixed window that starts at a key's first
 *   consume (the USD "day" is any 24 h from the first request).
 */
import * as grpc from '@grpc/grpc-js';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { createRedisClient } from '../src/store/redis/redis-store.js';
import {
  allowedCheckResponse,
  BENCH_LIMITS,
  benchLimitStatuses,
  serveQuotaOnLoopback,
  settledRecordResponse,
  usdMicros,
} from './common.js';

const [redisUrl] = process.argv.slice(2);
if (!redisUrl) throw new Error('usage: rlf-server.js <redis url>');
const redis = createRedisClient(redisUrl, { commandTimeoutMs: 1_000 });
await redis.connect();

const requests = new RateLimiterRedis({
  storeClient: redis,
  keyPrefix: 'rlf:rpm',
  points: BENCH_LIMITS.requestsPerMinute,
  duration: 60,
});
const tokens = new RateLimiterRedis({
  storeClient: redis,
  keyPrefix: 'rlf:tpm',
  points: BENCH_LIMITS.tokensPerMinute,
  duration: 60,
});
const dollars = new RateLimiterRedis({
  storeClient: redis,
  keyPrefix: 'rlf:usd',
  points: BENCH_LIMITS.usdPerDayMicros,
  duration: 86_400,
});

interface Estimate {
  tokens: number;
  micros: number;
}
/** Estimates by request_id until settled (what quotad keeps in its reservation record, in Redis). */
const estimates = new Map<string, Estimate>();

interface Principal {
  subject: string;
  org: string;
}
const keyOf = (p: Principal) => `${p.org}:${p.subject}`;

/** A consume's answer whether it fits (resolves) or not (rejects with a RateLimiterRes). */
async function consume(limiter: RateLimiterRedis, key: string, points: number) {
  try {
    return { res: await limiter.consume(key, points), refused: false };
  } catch (error) {
    if (error instanceof RateLimiterRes) return { res: error, refused: true };
    throw error;
  }
}

/** Moves a limiter by `delta` points (negative gives back). */
async function adjust(limiter: RateLimiterRedis, key: string, delta: number) {
  if (delta < 0) return limiter.reward(key, -delta);
  if (delta > 0) return limiter.penalty(key, delta);
  return undefined;
}

const fail = (callback: grpc.sendUnaryData<unknown>, error: unknown) =>
  callback({ code: grpc.status.UNAVAILABLE, details: String(error) }, null);

const handlers: Record<string, grpc.handleUnaryCall<unknown, unknown>> = {
  CheckQuota: (call, callback) => {
    const request = call.request as {
      requestId: string;
      principal: Principal;
      inputTokens: number;
      maxOutputTokens: number;
    };
    const key = keyOf(request.principal);
    const estimate = {
      tokens: request.inputTokens + request.maxOutputTokens,
      micros: usdMicros(request.inputTokens, request.maxOutputTokens),
    };
    Promise.all([
      consume(requests, key, 1),
      consume(tokens, key, estimate.tokens),
      consume(dollars, key, estimate.micros),
    ]).then(
      ([r, t, d]) => {
        const nowMs = Date.now();
        const allowed = !r.refused && !t.refused && !d.refused;
        if (allowed) estimates.set(request.requestId, estimate);
        const response = allowedCheckResponse(nowMs);
        callback(null, {
          ...response,
          allowed,
          code: allowed ? 'OK' : 'OVER_LIMIT',
          limits: benchLimitStatuses(nowMs, {
            requests: r.res.consumedPoints,
            tokens: t.res.consumedPoints,
            micros: d.res.consumedPoints,
          }),
          reservation: allowed ? response.reservation : null,
        });
      },
      (error: unknown) => fail(callback, error),
    );
  },
  RecordUsage: (call, callback) => {
    const request = call.request as {
      requestId: string;
      principal: Principal;
      inputTokens: number;
      outputTokens: number;
    };
    const key = keyOf(request.principal);
    const actual = {
      tokens: request.inputTokens + request.outputTokens,
      micros: usdMicros(request.inputTokens, request.outputTokens),
    };
    const estimate = estimates.get(request.requestId);
    estimates.delete(request.requestId);
    const charges = estimate
      ? [
          adjust(tokens, key, actual.tokens - estimate.tokens),
          adjust(dollars, key, actual.micros - estimate.micros),
        ]
      : [requests.penalty(key, 1), adjust(tokens, key, actual.tokens), adjust(dollars, key, actual.micros)];
    Promise.all(charges).then(
      (results) => {
        const nowMs = Date.now();
        const [t, d] = estimate ? results : results.slice(1);
        callback(null, {
          ...settledRecordResponse(nowMs),
          status: estimate ? 'SETTLED' : 'CHARGED_WITHOUT_RESERVATION',
          limits: benchLimitStatuses(nowMs, {
            requests: 0,
            tokens: t?.consumedPoints ?? 0,
            micros: d?.consumedPoints ?? 0,
          }),
        });
      },
      (error: unknown) => fail(callback, error),
    );
  },
};

await serveQuotaOnLoopback(handlers, () => redis.disconnect());
