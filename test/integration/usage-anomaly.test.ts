import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import type { AlertsSpec, Policy } from '../../src/core/policy.js';
import type { Principal } from '../../src/core/quota.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import type { QuotaStore } from '../../src/store/store.js';
import { checkInput, freshPrincipal, makeAuthority, type TestAuthority } from '../../harness/authority.js';
import { limit, policyWith, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const MINUTE = 60_000;
const COOLDOWN = 15 * MINUTE;

const alerts: AlertsSpec = {
  budgetThresholds: [],
  webhook: undefined,
  anomaly: {
    factor: 5,
    intervalMs: MINUTE,
    halfLifeMs: 10 * MINUTE,
    minHistoryMs: 10 * MINUTE,
    minRequests: 10,
    minTokens: 1_000_000_000,
    cooldownMs: COOLDOWN,
    actions: new Map([['guarded', 'block']]),
  },
};
const roomy = [limit({ name: 'requests_per_minute', kind: 'rate', limit: 10_000, windowMs: MINUTE })];
const policy: Policy = policyWith([tier('free', roomy), tier('guarded', roomy)], { alerts });

async function steadyThenSpike(authority: TestAuthority, clock: ManualClock, principal: Principal) {
  // Two requests a minute for half an hour: the baseline.
  for (let step = 0; step < 60; step++) {
    assert.equal((await authority.authority.check(checkInput(principal))).allowed, true);
    clock.advance(MINUTE / 2);
  }
  // Then 40 in one minute: 20 times the baseline.
  const answers = [];
  for (let i = 0; i < 40; i++) {
    answers.push(await authority.authority.check(checkInput(principal)));
    clock.advance(1_000);
  }
  return answers;
}

for (const kind of ['memory', 'redis'] as const) {
  describe(`usage anomalies on the ${kind} store`, () => {
    let redis: TestRedisServer | undefined;
    let store: QuotaStore;
    let clock: ManualClock;
    let quota: TestAuthority;

    before(async () => {
      clock = new ManualClock(Date.UTC(2026, 5, 1, 9));
      if (kind === 'redis') {
        redis = await TestRedisServer.start();
        const connection = createRedisClient(redis.url, { commandTimeoutMs: 2_000 });
        await connection.connect();
        store = new RedisStore({ redis: connection, clock });
      } else {
        store = new MemoryStore({ clock, sweepIntervalMs: 0 });
      }
      quota = makeAuthority(store, clock, policy);
    });

    after(async () => {
      await store.close();
      await redis?.stop();
    });

    test('steady traffic raises no anomaly, and a spike raises exactly one', async () => {
      const principal = freshPrincipal('free');
      const spike = await steadyThenSpike(quota, clock, principal);
      const events = await store.events.list({ org: principal.org, limit: 100 });
      assert.deepEqual(
        {
          allowed: spike.every((answer) => answer.allowed),
          events: events.map(({ event, state }) => [
            event.type,
            event.anomaly?.measure,
            event.anomaly?.action,
            state,
          ]),
        },
        { allowed: true, events: [['usage.anomaly', 'requests', 'alert', 'recorded']] },
      );
    });

    test('a block denies the subject, naming the anomaly, until the cool-down ends', async () => {
      const principal = freshPrincipal('guarded');
      const spike = await steadyThenSpike(quota, clock, principal);
      const denied = spike.filter((answer) => !answer.allowed);
      const first = denied[0];
      assert.ok(first, 'the spike was never blocked');
      const [event] = await store.events.list({ org: principal.org, limit: 10 });
      const blockedUntil = event?.event.anomaly?.blockedUntilMs ?? 0;
      const probe = await quota.authority.check(checkInput(principal));
      clock.set(blockedUntil - 1);
      const justBefore = await quota.authority.check(checkInput(principal));
      clock.set(blockedUntil);
      const after = await quota.authority.check(checkInput(principal));
      assert.deepEqual(
        {
          code: first.code,
          deniedBy: first.deniedBy,
          reason: /usage anomaly/.test(first.reason),
          retryAfter: probe.retryAfterMs > 0 && probe.retryAfterMs <= COOLDOWN,
          justBefore: justBefore.allowed,
          after: after.allowed,
        },
        {
          code: 'OVER_LIMIT',
          deniedBy: ['usage_anomaly'],
          reason: true,
          retryAfter: true,
          justBefore: false,
          after: true,
        },
      );
    });
  });
}
