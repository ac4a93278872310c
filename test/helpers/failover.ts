import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Clock } from '../../src/core/clock.js';
import { sha256 } from '../../src/keys/api-key.js';
import type { RedisConnection } from '../../src/store/redis/connection.js';
import { RedisKeyStore } from '../../src/store/redis/redis-key-store.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { checkInput, makeAuthority } from '../../harness/authority.js';
import { eventually } from '../../harness/eventually.js';
import { limit, policyWith, tier } from '../../harness/policy.js';

const systemClock: Clock = { now: () => Date.now() };
/** Each call's deadline: what a gateway's short authority timeout would give. */
const CALL_DEADLINE_MS = 300;
/** Scheduling slack on a shared 2-core machine between the deadline passing and the promise settling. */
const SETTLE_SLACK_MS = 100;
const WORKERS = 40;
const ORGS = 30;

const policy = policyWith([
  tier('steady', [
    limit({ name: 'requests_per_minute', kind: 'rate', limit: 10_000_000, onStoreFailure: 'open' }),
    // Exact and not windowed, so a charge lost in the failover shows as a count that went back.
    limit({
      name: 'tokens_per_day',
      kind: 'budget',
      unit: 'tokens',
      limit: 1_000_000_000_000,
      onStoreFailure: 'open',
    }),
  ]),
]);

export interface FailoverSetup {
  connect(): Promise<RedisConnection>;
  /** An org whose keys live on the master that `killMaster` kills. */
  orgOnKilledMaster: string;
  /** SIGKILLs the master (of the registry's shard, on Cluster). */
  killMaster(): Promise<void>;
  /** How long the topology takes to promote a replica, at most, by its own settings. */
  failoverBoundMs: number;
}

/** Tokens each check reserves: checkInput's 100 input + 200 output. */
const TOKENS_PER_CHECK = 300;

interface Outcome {
  startedAt: number;
  tookMs: number;
  degraded: boolean;
  error?: string;
}

/**
 * Kills a master under steady concurrent load and checks what the issue promises: every call answered
 * within its deadline, Redis deciding again within the failover time plus a few seconds, and a key
 * revoked (and confirmed by a replica) just before the kill still revoked after it.
 */
export async function killMasterUnderLoad(t: TestContext, setup: FailoverSetup): Promise<void> {
  // The authority logs connection errors through its own listener; here they are expected and dropped.
  const connect = async () => (await setup.connect()).on('error', () => undefined);
  const store = new RedisStore({ redis: await connect() });
  const keyStore = new RedisKeyStore({
    redis: await connect(),
    ownsClient: true,
    writeReplicas: 1,
    writeReplicaTimeoutMs: 800,
  });
  t.after(async () => {
    await keyStore.close();
    await store.close();
  });
  const { authority, keys } = makeAuthority(store, systemClock, policy, 'silent', keyStore);
  t.after(() => authority.close());

  const { record, secret } = await keys.create({
    name: 'about to be revoked',
    owner: 'failover test',
    org: setup.orgOnKilledMaster,
    tier: 'steady',
    expiresInMs: 0,
  });
  await keys.revoke(record.id);

  const outcomes: Outcome[] = [];
  let running = true;
  let killedAt = Infinity;
  /** Per subject on the killed shard: the budget Redis reported before the kill, and first after it. */
  const before = new Map<string, number>();
  const after = new Map<string, number>();
  const worker = async (index: number) => {
    while (running) {
      const org = index % ORGS === 0 ? setup.orgOnKilledMaster : `failover-org-${index % ORGS}`;
      const startedAt = Date.now();
      try {
        const decision = await authority.check(
          checkInput({ subject: `user-${index}`, org, tier: 'steady' }),
          startedAt + CALL_DEADLINE_MS,
        );
        outcomes.push({ startedAt, tookMs: Date.now() - startedAt, degraded: decision.degraded });
        const used = decision.limits.find((each) => each.spec.name === 'tokens_per_day')?.used;
        if (org === setup.orgOnKilledMaster && !decision.degraded && used !== undefined) {
          const subject = `user-${index}`;
          if (startedAt < killedAt) before.set(subject, Math.max(before.get(subject) ?? 0, used));
          else if (!after.has(subject)) after.set(subject, used - TOKENS_PER_CHECK);
        }
      } catch (error) {
        outcomes.push({
          startedAt,
          tookMs: Date.now() - startedAt,
          degraded: true,
          error: (error as Error).message,
        });
      }
      // A store that refuses at once answers without I/O: yield, as calls arriving over sockets would.
      await nextTurn();
    }
  };
  const workers = Array.from({ length: WORKERS }, (_, index) => worker(index));
  await eventually(
    async () => (outcomes.filter((each) => !each.degraded).length >= 200 ? true : undefined),
    () => 'the load never got Redis answers before the kill',
  );

  killedAt = Date.now();
  await setup.killMaster();
  const recoveredAt = await eventually(
    async () => {
      const decision = await authority.check(
        checkInput({ subject: 'probe', org: setup.orgOnKilledMaster, tier: 'steady' }),
        Date.now() + CALL_DEADLINE_MS,
      );
      return decision.degraded ? undefined : Date.now();
    },
    () => 'Redis never decided again after the master was killed',
    { timeoutMs: setup.failoverBoundMs + 10_000, intervalMs: 50 },
  );
  // Steady load on the recovered store for a moment, then stop.
  const seen = outcomes.length;
  await eventually(
    async () => (outcomes.length >= seen + 200 ? true : undefined),
    () => 'the load stopped after the failover',
  );
  running = false;
  await Promise.all(workers);

  // A check that started before the kill but was answered after it may have charged after the last
  // count seen: the count may only be lower by what was lost, so this counts lost charges at most.
  let lostCharges = 0;
  for (const [subject, seen] of before) {
    const first = after.get(subject);
    if (first !== undefined && first < seen) lostCharges += (seen - first) / TOKENS_PER_CHECK;
  }
  const errors = outcomes.filter((each) => each.error !== undefined);
  const late = outcomes.filter((each) => each.tookMs > CALL_DEADLINE_MS + SETTLE_SLACK_MS);
  const degraded = outcomes.filter((each) => each.degraded && each.startedAt >= killedAt).length;
  t.diagnostic(
    `${outcomes.length} calls, ${degraded} decided by on_store_failure after the kill, Redis deciding again ${recoveredAt - killedAt} ms after it, slowest ${Math.max(...outcomes.map((each) => each.tookMs))} ms, charges lost on the killed shard ${lostCharges} (of ${[...before.values()].reduce((sum, used) => sum + used / TOKENS_PER_CHECK, 0)} acknowledged there)`,
  );
  assert.deepEqual(
    errors.map((each) => each.error),
    [],
    'every call is answered',
  );
  assert.deepEqual(
    late.map((each) => each.tookMs),
    [],
    'no call takes longer than its deadline',
  );
  assert.ok(
    recoveredAt - killedAt <= setup.failoverBoundMs + 5_000,
    `Redis decides again within the failover time plus 5 s (took ${recoveredAt - killedAt} ms)`,
  );

  const stored = await keyStore.findKeyBySecret(sha256(secret).toString('hex'));
  assert.notEqual(stored?.revokedMs ?? null, null, 'the key revoked before the kill is still revoked');
  const auth = await keys.authenticate(sha256(secret));
  assert.equal(auth.code, 'KEY_REVOKED');
}
