import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { parseDuration } from '../../src/core/duration.js';
import type { CheckQuotaResponse__Output } from '../../src/gen/quotad/v1/CheckQuotaResponse.js';
import { GATEWAY_SETTINGS } from '../../src/main/gateway-config.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import { checkInput, freshPrincipal, makeAuthority } from '../../harness/authority.js';
import { eventually } from '../../harness/eventually.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { limit, policyWith, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

/*
 * Redis stalled rather than gone: stopped with SIGSTOP, its connections open and its kernel still taking
 * the commands, so every command waits instead of failing. The authority runs at its default settings and
 * is asked with the gateway's default deadline, as a gateway would ask it.
 */

const GATEWAY_DEADLINE_MS = parseDuration(GATEWAY_SETTINGS.authorityTimeout.default) as number;

const POLICY = `
version: 1
timezone: UTC
reservation: { lease: 10m, idempotency_window: 1h }
replicas: 1
models:
  gpt-4o-mini: { input_per_million: '0.15', output_per_million: '0.60' }
tiers:
  open:
    max_output_tokens: 100
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 1000000, window: 1m, on_store_failure: open }
  closed:
    max_output_tokens: 100
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 1000000, window: 1m }
      - { name: concurrent_requests, type: concurrency, limit: 5000 }
`;

let dir: string;
let server: TestRedisServer;
let authority: RunningAuthority;
let client: QuotaClient;
/** A plain client, for looking at what the store holds and for keeping Redis busy. */
let inspector: Redis;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quotad-stall-'));
  await writeFile(join(dir, 'policy.yaml'), POLICY);
  server = await TestRedisServer.start();
  inspector = server.client();
  authority = await startAuthority(
    inProcessServeConfig(['--policy', join(dir, 'policy.yaml'), '--log-level', 'silent'], {
      REDIS_URL: server.url,
    }),
  );
  client = quotaClient(`127.0.0.1:${authority.grpcPort}`);
});

after(async () => {
  client.close();
  inspector.disconnect();
  await authority.stop();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

let sequence = 0;
function request(credential: { principal: ReturnType<typeof freshPrincipal> } | { apiKeySha256: Buffer }) {
  sequence += 1;
  return { requestId: `stall-${sequence}`, ...credential, model: 'gpt-4o-mini', inputTokens: 10 };
}

/** A check as a gateway makes it: with the gateway's default deadline. Resolves with its answer or error. */
async function gatewayCheck(
  credential: Parameters<typeof request>[0],
): Promise<CheckQuotaResponse__Output | grpc.ServiceError> {
  return client.checkQuota(request(credential), GATEWAY_DEADLINE_MS).catch((e: grpc.ServiceError) => e);
}

function outcome(answer: CheckQuotaResponse__Output | grpc.ServiceError): string {
  if ('code' in answer && typeof answer.code === 'number') return grpc.status[answer.code] ?? 'error';
  const decision = answer as CheckQuotaResponse__Output;
  return `${decision.code}${decision.degraded ? ' (degraded)' : ''}`;
}

/** Scripts Redis has run so far (EVALSHA), from INFO commandstats. */
async function scriptsRun(): Promise<number> {
  const stats = await inspector.info('commandstats');
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

/** Keeps Redis busy in one script for `ms`: a slow command, as far as every other client can tell. */
function blockRedis(ms: number): Promise<unknown> {
  const spin = `local t = redis.call('TIME'); local s = t[1] * 1000 + t[2] / 1000; local n = s
    while n - s < tonumber(ARGV[1]) do t = redis.call('TIME'); n = t[1] * 1000 + t[2] / 1000 end
    return 1`;
  return inspector.eval(spin, 0, ms);
}

describe('a slow or stalled Redis, at default settings', () => {
  test("a check waits for a Redis that is slow but answers within the call's deadline", async () => {
    const principal = freshPrincipal('closed');
    const blocked = blockRedis(300);
    const answer = await gatewayCheck({ principal });
    await blocked;
    assert.equal(outcome(answer), 'OK');
  });

  test("while Redis hangs, every check of an `open` key is decided within the gateway's deadline", async () => {
    const { secret } = await authority.keys.create({
      name: 'stall',
      owner: 'stall test',
      org: 'stall',
      tier: 'open',
      expiresInMs: 0,
    });
    const apiKeySha256 = createHash('sha256').update(secret).digest();
    assert.equal(outcome(await gatewayCheck({ apiKeySha256 })), 'OK');
    const staleLookups = async () => {
      const text = (await authority.metrics.render()).body;
      return Number(/quotad_key_lookups_total\{source="stale",result="found"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    server.pause();
    try {
      // Checks go on until the cached key is too old to trust and has to be looked up, in vain, then one round more.
      const outcomes = new Map<string, number>();
      for (let round = 0, after = 0; after < 2; round++) {
        if ((await staleLookups()) > 0) after += 1;
        const answers = await Promise.all(Array.from({ length: 20 }, () => gatewayCheck({ apiKeySha256 })));
        for (const each of answers) outcomes.set(outcome(each), (outcomes.get(outcome(each)) ?? 0) + 1);
        assert.ok(round < 50, 'the cached key never went stale');
      }
      assert.deepEqual([...outcomes.keys()], ['OK (degraded)']);
    } finally {
      await server.resume();
    }
  });

  test('once Redis has answered nothing for --redis-timeout, checks wait for it only briefly, until it answers again', async () => {
    const principal = freshPrincipal('open');
    const round = () =>
      Promise.all(
        Array.from({ length: 5 }, async () => {
          const started = performance.now();
          const answer = await gatewayCheck({ principal });
          return { outcome: outcome(answer), ms: performance.now() - started };
        }),
      );
    server.pause();
    let suspected;
    try {
      await round(); // these wait out --redis-timeout: Redis may only be slow
      suspected = await round();
    } finally {
      await server.resume();
    }
    assert.deepEqual(new Set(suspected.map((each) => each.outcome)), new Set(['OK (degraded)']));
    const slowest = Math.max(...suspected.map((each) => each.ms));
    assert.ok(slowest < GATEWAY_DEADLINE_MS / 4, `decided in ${Math.round(slowest)} ms`);
    const after = await eventually(
      async () => {
        const answer = outcome(await gatewayCheck({ principal }));
        return answer === 'OK' ? answer : undefined;
      },
      () => 'checks were still decided without Redis after it came back',
    );
    assert.equal(after, 'OK');
  });

  test('a batch answered by its failure policy while Redis hangs leaves nothing reserved once Redis runs again', async () => {
    const principal = freshPrincipal('closed');
    const checks = Array.from({ length: 1_000 }, () => request({ principal }));
    const scriptsBefore = await scriptsRun();
    server.pause();
    let answers;
    try {
      answers = await client.checkQuotaBatch({ checks }, GATEWAY_DEADLINE_MS);
    } finally {
      await server.resume();
    }
    const codes = new Set(answers.results.map((r) => r.response?.code ?? `error ${r.error?.code}`));
    assert.deepEqual([...codes], ['STORE_UNAVAILABLE']);
    await eventually(
      async () => ((await scriptsRun()) >= scriptsBefore + checks.length ? true : undefined),
      () => 'Redis never ran the scripts it was sent while it was stopped',
    );
    const usage = await client.getUsage({ principal });
    assert.deepEqual(
      usage.limits.map((l) => [l.name, l.used]),
      [
        ['requests_per_minute', 0],
        ['concurrent_requests', 0],
      ],
    );
  });
});

describe('an answer that comes after the failure policy refused', () => {
  const closedTier = tier('closed', [
    limit({ name: 'requests_per_minute', kind: 'rate', limit: 1_000 }),
    limit({ name: 'concurrent_requests', kind: 'concurrency', limit: 100 }),
  ]);

  test('a reservation Redis made in time for a check its authority had already refused is cancelled', async (t) => {
    // Redis's own timeout is long: the late answer arrives, and shows the reservation it made.
    const redis = createRedisClient(server.url, { commandTimeoutMs: 5_000 });
    await redis.connect();
    const store = new RedisStore({ redis });
    const harness = makeAuthority(store, { now: () => Date.now() }, policyWith([closedTier]));
    t.after(async () => {
      harness.authority.close();
      await store.close();
    });
    const principal = freshPrincipal('closed');
    const deadlineMs = Date.now() + 1_000;
    server.pause();
    const decision = harness.authority.check(checkInput(principal), deadlineMs);
    // The reserve is on the wire; Redis runs it at once, well before the deadline...
    await new Promise((resolve) => setImmediate(resolve));
    await server.resume();
    // ...but the authority is too busy to read the answer until its deadline has passed.
    while (Date.now() < deadlineMs + 100) {
      // busy, as a saturated authority is
    }
    assert.equal((await decision).code, 'STORE_UNAVAILABLE');
    await eventually(
      async () => {
        const usage = await harness.authority.usage({ principal });
        return usage.limits.every((l) => l.used === 0) ? true : undefined;
      },
      () => 'the late reservation was never cancelled',
    );
    const cancels = await harness.metrics.registry.getSingleMetricAsString(
      'quotad_late_reservation_cancels_total',
    );
    assert.match(cancels, /result="cancelled"} 1$/m);
  });
});
