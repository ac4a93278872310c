import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { CheckQuotaInput } from '../../src/authority/quota-authority.js';
import { ManualClock } from '../../src/core/clock.js';
import type { Decision } from '../../src/core/decision.js';
import { StoreUnavailableError } from '../../src/core/errors.js';
import { RedisKeyStore } from '../../src/store/redis/redis-key-store.js';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import type { AuthorityMetrics } from '../../src/telemetry/metrics.js';
import {
  checkInput,
  freshPrincipal,
  makeAuthority,
  usageInput,
  type TestAuthority,
} from '../../harness/authority.js';
import { eventually } from '../../harness/eventually.js';
import { limit, policyWith, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';

/** Each call's store command gives up after this; the caller's deadline is ten times longer. */
const COMMAND_TIMEOUT_MS = 100;
const DEADLINE_MS = 1_000;
const REPLICAS = 2;
const LIMIT = 10;

const requestsPerMinute = (onStoreFailure: 'open' | 'closed' | 'local') =>
  limit({ name: 'requests_per_minute', kind: 'rate', limit: LIMIT, onStoreFailure });
const policy = policyWith(
  [
    tier('closed', [requestsPerMinute('closed')]),
    tier('open', [requestsPerMinute('open')]),
    tier('local', [requestsPerMinute('local')]),
  ],
  { replicas: REPLICAS },
);
/** One authority replica, and `local` limits of every kind that has one: the fallback's full amounts. */
const singleReplicaPolicy = policyWith(
  [
    tier('local30', [
      limit({ name: 'requests_per_minute', kind: 'rate', limit: 30, onStoreFailure: 'local' }),
    ]),
    tier('localslots', [
      limit({ name: 'concurrent_requests', kind: 'concurrency', limit: 3, onStoreFailure: 'local' }),
    ]),
  ],
  { replicas: 1 },
);

let server: TestRedisServer;
let redis: Redis;
let store: RedisStore;
let keyStore: RedisKeyStore;
let harness: TestAuthority;
/** An authority over the same Redis under singleReplicaPolicy. */
let single: TestAuthority;
/** API keys on the `open` tier: one resolved before Redis goes down, one never. */
const keys = { seen: Buffer.alloc(0), unseen: Buffer.alloc(0) };

before(async () => {
  server = await TestRedisServer.start();
  redis = createRedisClient(server.url, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  // While Redis is down the client reports every failed reconnection; the store turns them into answers.
  redis.on('error', () => undefined);
  await redis.connect();
  const clock = new ManualClock(Date.UTC(2026, 10, 22, 10, 0, 0));
  store = new RedisStore({ redis, clock });
  keyStore = new RedisKeyStore({ redis });
  harness = makeAuthority(store, clock, policy, 'info', keyStore);
  single = makeAuthority(store, clock, singleReplicaPolicy);
});
after(async () => {
  await keyStore.close();
  await store.close();
  await server.stop();
});

interface Timed<T> {
  ms: number;
  value?: T;
  error?: unknown;
}

/** Runs a call and measures how long its answer (or its error) took. */
async function timed<T>(call: () => Promise<T>): Promise<Timed<T>> {
  const started = performance.now();
  try {
    const value = await call();
    return { ms: performance.now() - started, value };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

async function checkWithinDeadline(input: CheckQuotaInput, on = harness): Promise<Decision> {
  const { ms, value, error } = await timed(() => on.authority.check(input));
  if (error) throw error;
  assert.ok(ms < DEADLINE_MS, `answered after ${Math.round(ms)} ms, past the ${DEADLINE_MS} ms deadline`);
  return value as Decision;
}

/** A check asked with an API key's hash instead of a principal. */
function keyCheck(apiKeySha256: Buffer): CheckQuotaInput {
  const { requestId, model, inputTokens, maxOutputTokens, dryRun } = checkInput(freshPrincipal('open'));
  return { requestId, model, inputTokens, maxOutputTokens, dryRun, apiKeySha256 };
}

function answer(decision: Decision) {
  return { allowed: decision.allowed, code: decision.code, degraded: decision.degraded };
}

/** A counter's value for one label set, 0 when the series does not exist. */
async function counter(metrics: AuthorityMetrics, name: string, labels: Record<string, string>) {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  const series = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return series?.value ?? 0;
}

async function failureCounts() {
  const { metrics } = harness;
  return {
    reserveErrors: await counter(metrics, 'quotad_store_errors_total', { store: 'redis', op: 'reserve' }),
    settleErrors: await counter(metrics, 'quotad_store_errors_total', { store: 'redis', op: 'settle' }),
    closed: await counter(metrics, 'quotad_degraded_decisions_total', { mode: 'closed' }),
    open: await counter(metrics, 'quotad_degraded_decisions_total', { mode: 'open' }),
    local: await counter(metrics, 'quotad_degraded_decisions_total', { mode: 'local' }),
  };
}

/** Uses 20 of a 30-a-minute `local` limit through Redis, before the outage. */
const seeded = freshPrincipal('local30');

describe('while Redis is up', () => {
  test('a `local` limit is counted in Redis: 20 of 30 used before the outage', async () => {
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(answer(await single.authority.check(checkInput(seeded))), {
        allowed: true,
        code: 'OK',
        degraded: false,
      });
    }
  });

  test('every failure mode is answered by Redis, not degraded', async () => {
    const decisions = [];
    for (const mode of ['closed', 'open', 'local']) {
      decisions.push(answer(await harness.authority.check(checkInput(freshPrincipal(mode)))));
    }
    assert.deepEqual(decisions, Array(3).fill({ allowed: true, code: 'OK', degraded: false }));
  });

  test('API keys resolve and decide through Redis', async () => {
    for (const which of ['seen', 'unseen'] as const) {
      const { secret } = await harness.keys.create({
        name: which,
        owner: 'store-failure',
        org: `keys-${which}`,
        tier: 'open',
        expiresInMs: 0,
      });
      keys[which] = createHash('sha256').update(secret).digest();
    }
    // The change channel forgets every cached key when it (re)subscribes: let that happen first.
    await eventually(
      async () => (keyStore.changesDeliveredAsOf() === Number.NEGATIVE_INFINITY ? undefined : true),
      () => 'the key change channel never confirmed its subscription',
      { intervalMs: 5 },
    );
    const decision = await harness.authority.check(keyCheck(keys.seen));
    assert.deepEqual(answer(decision), { allowed: true, code: 'OK', degraded: false });
  });
});

describe('while Redis is down', () => {
  before(() => server.kill());

  test('a `local` limit goes on from the last count Redis reported: 20 of 30 used, at most 10 more', async () => {
    const decisions = [];
    for (let i = 0; i < 15; i++) decisions.push(await checkWithinDeadline(checkInput(seeded), single));
    assert.equal(decisions.filter((d) => d.allowed).length, 10);
  });

  test('settling a request admitted by the `local` fallback gives its concurrency slot back', async () => {
    const principal = freshPrincipal('localslots');
    const admitted = [];
    for (let i = 0; i < 3; i++) {
      const check = checkInput(principal);
      assert.equal((await checkWithinDeadline(check, single)).allowed, true);
      admitted.push(check);
    }
    assert.equal((await checkWithinDeadline(checkInput(principal), single)).allowed, false);
    for (const check of admitted) {
      // Redis is still down: the caller will have to retry the settlement, but the slot is free now.
      await assert.rejects(single.authority.record(usageInput(check)), StoreUnavailableError);
    }
    const next = await checkWithinDeadline(checkInput(principal), single);
    assert.deepEqual(answer(next), { allowed: true, code: 'OK', degraded: true });
  });

  test('a `closed` limit denies with STORE_UNAVAILABLE, marked degraded, within the deadline', async () => {
    const decision = await checkWithinDeadline(checkInput(freshPrincipal('closed')));
    assert.deepEqual(answer(decision), { allowed: false, code: 'STORE_UNAVAILABLE', degraded: true });
  });

  test('an `open` limit admits, marked degraded, within the deadline', async () => {
    const decision = await checkWithinDeadline(checkInput(freshPrincipal('open')));
    assert.deepEqual(answer(decision), { allowed: true, code: 'OK', degraded: true });
  });

  test('a `local` limit admits its share, limit ÷ replicas, in-process and then denies', async () => {
    const principal = freshPrincipal('local');
    const share = Math.floor(LIMIT / REPLICAS);
    const decisions = [];
    for (let i = 0; i < share + 2; i++)
      decisions.push(answer(await checkWithinDeadline(checkInput(principal))));
    assert.deepEqual(decisions, [
      ...Array(share).fill({ allowed: true, code: 'OK', degraded: true }),
      ...Array(2).fill({ allowed: false, code: 'OVER_LIMIT', degraded: true }),
    ]);
  });

  test('200 concurrent checks all get an answer within the deadline', { timeout: 10_000 }, async () => {
    const principals = ['closed', 'open', 'local'].map((mode) => freshPrincipal(mode));
    const calls = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        timed(() => harness.authority.check(checkInput(principals[i % 3]!))),
      ),
    );
    const unanswered = calls
      .map((call, i) => ({ call: i, ms: Math.round(call.ms), error: call.error }))
      .filter(({ ms, error }) => error !== undefined || ms >= DEADLINE_MS);
    assert.deepEqual(unanswered, []);
  });

  test("a key resolved before Redis went down still decides, by its limits' failure policies", async () => {
    const decision = await checkWithinDeadline(keyCheck(keys.seen));
    assert.deepEqual(answer(decision), { allowed: true, code: 'OK', degraded: true });
  });

  test('a key never resolved cannot be: StoreUnavailableError (UNAVAILABLE) within the deadline', async () => {
    const { ms, error } = await timed(() => harness.authority.check(keyCheck(keys.unseen)));
    assert.ok(error instanceof StoreUnavailableError, `rejected with ${String(error)}`);
    assert.ok(ms < DEADLINE_MS, `rejected after ${Math.round(ms)} ms`);
  });

  test('RecordUsage rejects with StoreUnavailableError within the deadline', async () => {
    const check = checkInput(freshPrincipal('closed'));
    const { ms, error } = await timed(() => harness.authority.record(usageInput(check)));
    assert.ok(error instanceof StoreUnavailableError, `rejected with ${String(error)}`);
    assert.ok(ms < DEADLINE_MS, `rejected after ${Math.round(ms)} ms`);
  });

  test('every failed store call and degraded decision is counted', async () => {
    const before = await failureCounts();
    await harness.authority.check(checkInput(freshPrincipal('closed')));
    for (let i = 0; i < 2; i++) await harness.authority.check(checkInput(freshPrincipal('open')));
    for (let i = 0; i < 3; i++) await harness.authority.check(checkInput(freshPrincipal('local')));
    await assert.rejects(harness.authority.record(usageInput(checkInput(freshPrincipal('open')))));
    const after = await failureCounts();
    assert.deepEqual(
      {
        reserveErrors: after.reserveErrors - before.reserveErrors,
        settleErrors: after.settleErrors - before.settleErrors,
        closed: after.closed - before.closed,
        open: after.open - before.open,
        local: after.local - before.local,
      },
      { reserveErrors: 6, settleErrors: 1, closed: 1, open: 2, local: 3 },
    );
  });

  test('a limit that fails closed is not counted as exceeded: it was unreachable', async () => {
    const exceeded = () =>
      counter(harness.metrics, 'quotad_limit_exceeded_total', {
        limit: 'requests_per_minute',
        shadow: 'false',
      });
    const before = await exceeded();
    await harness.authority.check(checkInput(freshPrincipal('closed')));
    assert.equal(await exceeded(), before);
  });

  test('a usage report that fails is counted as a store error', async () => {
    const before = await failureCounts();
    await assert.rejects(
      harness.authority.usage({ principal: freshPrincipal('closed') }),
      StoreUnavailableError,
    );
    assert.equal((await failureCounts()).reserveErrors, before.reserveErrors + 1);
  });
});

describe('after Redis comes back on the same port', () => {
  before(async () => {
    // A plain listener, not events.once: the failed reconnections before the restart emit 'error'.
    const ready = new Promise((resolve) => redis.once('ready', resolve));
    await server.resume();
    await ready;
  });

  test('the next check is answered by Redis again, without restarting anything', async () => {
    const decision = await checkWithinDeadline(checkInput(freshPrincipal('closed')));
    assert.deepEqual(answer(decision), { allowed: true, code: 'OK', degraded: false });
  });
});
