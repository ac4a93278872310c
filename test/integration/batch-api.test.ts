import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { startAuthorityServer, type AuthorityServer } from '../../src/authority/server.js';
import { ManualClock } from '../../src/core/clock.js';
import type { CheckQuotaRequest } from '../../src/gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../../src/gen/quotad/v1/CheckQuotaResponse.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import type { QuotaStore } from '../../src/store/store.js';
import { capturingLogger, makeAuthority } from '../../harness/authority.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { limit, policyWith, TEST_MODEL, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const MINUTE = 60_000;
const START = Date.UTC(2026, 10, 23, 10, 0, 0);

/** Three limits per decision, as a gateway's tier has: requests and tokens per minute, dollars per day. */
const policy = policyWith(
  [
    tier('three', [
      limit({ name: 'requests_per_minute', kind: 'rate', limit: 10 }),
      limit({ name: 'tokens_per_minute', kind: 'rate', unit: 'tokens', limit: 3_000 }),
      limit({ name: 'usd_per_day', kind: 'budget', unit: 'usd_micros', limit: 5_000_000 }),
    ]),
    tier('budget', [limit({ name: 'tokens_per_day', kind: 'budget', unit: 'tokens', limit: 10_000 })]),
  ],
  { leaseMs: 5 * MINUTE, idempotencyWindowMs: 60 * MINUTE },
);

let redisServer: TestRedisServer;
before(async () => {
  redisServer = await TestRedisServer.start();
});
after(() => redisServer.stop());

interface Harness {
  client: QuotaClient;
  /** The store's own Redis connection, when the store is Redis. */
  redis: Redis | undefined;
}

async function serve(
  t: { after(fn: () => Promise<void>): void },
  storeKind: 'memory' | 'redis',
): Promise<Harness> {
  const clock = new ManualClock(START);
  let store: QuotaStore;
  let redis: Redis | undefined;
  if (storeKind === 'redis') {
    redis = createRedisClient(redisServer.url, { commandTimeoutMs: 2_000 });
    await redis.connect();
    store = new RedisStore({ redis, clock });
  } else {
    store = new MemoryStore({ clock, sweepIntervalMs: 0 });
  }
  const { handlers } = makeAuthority(store, clock, policy);
  const server: AuthorityServer = await startAuthorityServer({
    address: '127.0.0.1:0',
    logger: capturingLogger().logger,
    ...handlers,
  });
  const client = quotaClient(`127.0.0.1:${server.port}`);
  t.after(async () => {
    client.close();
    await server.shutdown({ drainDelayMs: 0, graceMs: 1_000 });
    await store.close();
  });
  return { client, redis };
}

let sequence = 0;
function principal(tierName = 'three') {
  sequence += 1;
  return { subject: `batch-user-${process.pid}-${sequence}`, org: `batch-org-${sequence}`, tier: tierName };
}
function check(who: ReturnType<typeof principal>, extra: Partial<CheckQuotaRequest> = {}): CheckQuotaRequest {
  sequence += 1;
  return {
    requestId: `batch-req-${sequence}`,
    principal: who,
    model: TEST_MODEL.name,
    inputTokens: 100,
    maxOutputTokens: 100,
    ...extra,
  };
}

/** What a caller reads from an answer, without the ids that differ between two runs. */
function essence(answer: CheckQuotaResponse__Output) {
  return {
    allowed: answer.allowed,
    code: answer.code,
    duplicate: answer.duplicate,
    retryAfterMs: answer.retryAfterMs,
    limits: answer.limits.map((l) => [l.name, l.used, l.remaining, l.exceeded]),
  };
}

function responses(results: { response?: CheckQuotaResponse__Output | null }[]) {
  return results.map((r) => {
    assert.ok(r.response, 'every item has an answer');
    return r.response;
  });
}

for (const storeKind of ['memory', 'redis'] as const) {
  describe(`CheckQuotaBatch and RecordUsageBatch on the ${storeKind} store`, () => {
    test('a batch of 15 checks answers exactly as 15 CheckQuota calls in a row: 10 admitted, then OVER_LIMIT', async (t) => {
      const { client } = await serve(t, storeKind);
      const one = principal();
      const alone: CheckQuotaResponse__Output[] = [];
      for (let i = 0; i < 15; i++) alone.push(await client.checkQuota(check(one)));

      const other = principal();
      const batch = await client.checkQuotaBatch({
        checks: Array.from({ length: 15 }, () => check(other)),
      });
      assert.deepEqual(responses(batch.results).map(essence), alone.map(essence));
      assert.deepEqual(
        responses(batch.results).map((r) => r.code),
        [...Array<string>(10).fill('OK'), ...Array<string>(5).fill('OVER_LIMIT')],
      );
    });

    test('a check that would break one of three limits charges none of them, inside a batch too', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal();
      const [big, small] = responses(
        (
          await client.checkQuotaBatch({
            checks: [check(who, { inputTokens: 2_500, maxOutputTokens: 400 }), check(who)],
          })
        ).results,
      );
      assert.equal(big?.allowed, true);
      assert.equal(small?.allowed, false);
      assert.deepEqual(
        small?.limits.filter((l) => l.exceeded).map((l) => l.name),
        ['tokens_per_minute'],
      );
      const usage = await client.getUsage({ principal: who });
      assert.deepEqual(
        usage.limits.map((l) => [l.name, l.used]),
        [
          ['requests_per_minute', 1],
          ['tokens_per_minute', 2_900],
          ['usd_per_day', big?.reservation?.usdMicros],
        ],
      );
    });

    test('an item with bad input fails alone with INVALID_ARGUMENT naming its field, and charges nothing', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal();
      const { results } = await client.checkQuotaBatch({
        checks: [check(who), check({ ...who, org: 'no spaces' }), check(who, { requestId: '' }), check(who)],
      });
      assert.equal(results[0]?.response?.allowed, true);
      assert.equal(results[1]?.error?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(results[1]?.error?.message ?? '', /^principal\.org: /);
      assert.equal(results[2]?.error?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(results[2]?.error?.message ?? '', /^request_id: /);
      assert.equal(results[3]?.response?.allowed, true);
      const usage = await client.getUsage({ principal: who });
      assert.equal(usage.limits[0]?.used, 2);
    });

    test('an empty batch and one over 1,000 checks are INVALID_ARGUMENT naming checks', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal();
      for (const length of [0, 1_001]) {
        await assert.rejects(
          client.checkQuotaBatch({ checks: Array.from({ length }, () => check(who)) }),
          (error: grpc.ServiceError) => {
            assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
            assert.match(error.details, /^checks: must hold 1 to 1000 items/);
            return true;
          },
        );
      }
      assert.equal((await client.getUsage({ principal: who })).limits[0]?.used, 0);
    });

    test('the same request_id twice in one batch is reserved once: the second answer is its duplicate', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal();
      const first = check(who);
      const [a, b] = responses((await client.checkQuotaBatch({ checks: [first, { ...first }] })).results);
      assert.equal(a?.duplicate, false);
      assert.equal(b?.duplicate, true);
      assert.deepEqual(b?.reservation, a?.reservation);
      assert.equal((await client.getUsage({ principal: who })).limits[0]?.used, 1);
    });

    test('RecordUsageBatch settles each record once; the same batch again is all DUPLICATE', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal('budget');
      const checks = Array.from({ length: 20 }, () => check(who));
      await client.checkQuotaBatch({ checks });
      assert.equal((await client.getUsage({ principal: who })).tokensUsed, 20 * 200);
      const records = checks.map((c) => ({
        requestId: c.requestId,
        principal: who,
        model: TEST_MODEL.name,
        inputTokens: 100,
        outputTokens: 30,
        outcome: 'COMPLETED' as const,
      }));
      const settled = await client.recordUsageBatch({ records });
      assert.deepEqual(
        settled.results.map((r) => r.response?.status),
        Array<string>(20).fill('SETTLED'),
      );
      const again = await client.recordUsageBatch({ records });
      assert.deepEqual(
        again.results.map((r) => r.response?.status),
        Array<string>(20).fill('DUPLICATE'),
      );
      assert.equal((await client.getUsage({ principal: who })).tokensUsed, 20 * 130);
    });

    test('a record with no outcome fails alone with INVALID_ARGUMENT naming outcome', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal('budget');
      const c = check(who);
      await client.checkQuota(c);
      const base = { requestId: c.requestId, principal: who, model: TEST_MODEL.name, inputTokens: 100 };
      const { results } = await client.recordUsageBatch({
        records: [
          { ...base, requestId: 'never-checked', outcome: 'OUTCOME_UNSPECIFIED' },
          { ...base, outputTokens: 10, outcome: 'COMPLETED' },
        ],
      });
      assert.equal(results[0]?.error?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(results[0]?.error?.message ?? '', /^outcome: /);
      assert.equal(results[1]?.response?.status, 'SETTLED');
      assert.equal((await client.getUsage({ principal: who })).tokensUsed, 110);
    });

    test('40 batches of 25 checks at once against a 10,000-token budget admit exactly 50 of 200 tokens', async (t) => {
      const { client } = await serve(t, storeKind);
      const who = principal('budget');
      const batches = await Promise.all(
        Array.from({ length: 40 }, () =>
          client.checkQuotaBatch({ checks: Array.from({ length: 25 }, () => check(who)) }),
        ),
      );
      const answers = batches.flatMap((b) => responses(b.results));
      assert.equal(answers.length, 1_000);
      assert.equal(answers.filter((a) => a.allowed).length, 50);
      assert.equal((await client.getUsage({ principal: who })).tokensUsed, 10_000);
    });
  });
}

describe('CheckQuotaBatch on Redis: one round trip per batch', () => {
  test('a batch of 100 checks over three limits is 100 EVALSHA in one write to Redis', async (t) => {
    const { client, redis } = await serve(t, 'redis');
    assert.ok(redis);
    const inspect = redisServer.client();
    t.after(async () => {
      await inspect.quit();
    });
    const who = principal();
    // The connection's first call sends each script whole; warm it up so the batch names them by hash.
    await client.checkQuota(check(who));
    const scripts = async () =>
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(await inspect.info('commandstats'))?.[1] ?? 0);
    // What reaches the socket: Node calls _write or _writev once per write to the kernel.
    const socket = redis.stream as typeof redis.stream & {
      _write: (...args: unknown[]) => void;
      _writev: (...args: unknown[]) => void;
    };
    const [write, writev] = [socket._write, socket._writev];
    let writes = 0;
    socket._write = function (this: unknown, ...args: unknown[]) {
      writes += 1;
      return write.apply(this, args);
    };
    socket._writev = function (this: unknown, ...args: unknown[]) {
      writes += 1;
      return writev.apply(this, args);
    };
    const before = await scripts();
    writes = 0;
    const { results } = await client.checkQuotaBatch({
      checks: Array.from({ length: 100 }, () => check(principal())),
    });
    const written = writes;
    [socket._write, socket._writev] = [write, writev];
    assert.equal(results.filter((r) => r.response?.allowed).length, 100);
    assert.equal(written, 1);
    assert.equal((await scripts()) - before, 100);
  });
});
