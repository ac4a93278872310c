import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { Clock } from '../../src/core/clock.js';
import { reservationKey } from '../../src/store/keys.js';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { checkInput, freshPrincipal, makeAuthority } from '../../harness/authority.js';
import { eventually } from '../../harness/eventually.js';
import { limit, policyWith, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const clock: Clock = { now: () => Date.now() };
const policy = policyWith([
  tier('budgeted', [limit({ name: 'tokens_per_day', kind: 'budget', unit: 'tokens', limit: 1_000_000 })]),
]);

let master: TestRedisServer;
let replica: TestRedisServer;
let lonely: TestRedisServer;
let replicaClient: Redis;

before(async () => {
  [master, replica, lonely] = await Promise.all([
    TestRedisServer.start(),
    TestRedisServer.start(),
    TestRedisServer.start(),
  ]);
  replicaClient = replica.client();
  await replicaClient.replicaof('127.0.0.1', String(master.port));
  await eventually(
    async () => (/master_link_status:up/.test(await replicaClient.info('replication')) ? true : undefined),
    () => 'the replica never synced',
  );
});
after(async () => {
  replicaClient.disconnect();
  await Promise.all([master.stop(), replica.stop(), lonely.stop()]);
});

async function budgetStore(url: string, unconfirmed: { count: number }, waitMs = 100) {
  const redis = createRedisConnection({ mode: 'standalone', url }, { commandTimeoutMs: 1_000 });
  await redis.connect();
  return new RedisStore({
    redis,
    budgetWaitReplicas: 1,
    budgetWaitTimeoutMs: waitMs,
    onBudgetUnconfirmed: () => (unconfirmed.count += 1),
  });
}

test('with budget WAIT, a check charging a budget is answered only once the replica holds its charge', async (t) => {
  const unconfirmed = { count: 0 };
  const store = await budgetStore(master.url, unconfirmed);
  const { authority } = makeAuthority(store, clock, policy, 'silent');
  t.after(async () => {
    authority.close();
    await store.close();
  });
  const principal = freshPrincipal('budgeted');
  const checks = Array.from({ length: 200 }, () => checkInput(principal));
  const decisions = await Promise.all(
    checks.map(async (check) => {
      const decision = await authority.check(check);
      // Read from the replica the moment the answer is out: the reservation (same script) must be there.
      const held = await replicaClient.exists(reservationKey(principal, check.requestId));
      return { allowed: decision.allowed, held };
    }),
  );
  assert.ok(decisions.every((decision) => decision.allowed));
  assert.deepEqual(
    decisions.filter((decision) => decision.held !== 1),
    [],
    'every admitted charge was on the replica when answered',
  );
  assert.equal(unconfirmed.count, 0);
});

test('with budget WAIT, a charge the master made is not answered while the replica cannot confirm it', async (t) => {
  const unconfirmed = { count: 0 };
  const store = await budgetStore(master.url, unconfirmed, 10_000);
  const { authority } = makeAuthority(store, clock, policy, 'silent');
  const masterClient = master.client();
  t.after(async () => {
    replica.thaw();
    masterClient.disconnect();
    authority.close();
    await store.close();
  });
  const principal = freshPrincipal('budgeted');
  const check = checkInput(principal);
  replica.freeze();
  let answered = false;
  const decision = authority.check(check).finally(() => (answered = true));
  await eventually(
    async () =>
      (await masterClient.exists(reservationKey(principal, check.requestId))) === 1 ? true : undefined,
    () => 'the master never ran the check',
    { intervalMs: 10 },
  );
  await masterClient.ping();
  assert.equal(answered, false, 'the charge was answered before a replica held it');
  replica.thaw();
  assert.equal((await decision).allowed, true);
  assert.equal(unconfirmed.count, 0);
});

test('with budget WAIT and no replica to confirm, the charge is answered after the wait and reported unconfirmed', async (t) => {
  const unconfirmed = { count: 0 };
  const store = await budgetStore(lonely.url, unconfirmed);
  const { authority } = makeAuthority(store, clock, policy, 'silent');
  t.after(async () => {
    authority.close();
    await store.close();
  });
  const decision = await authority.check(checkInput(freshPrincipal('budgeted')));
  assert.equal(decision.allowed, true);
  assert.equal(decision.degraded, false);
  assert.equal(unconfirmed.count, 1);
});
