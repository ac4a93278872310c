import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { ManualClock } from '../../src/core/clock.js';
import type { QuotaAuthority } from '../../src/authority/quota-authority.js';
import type { LimitSpec } from '../../src/core/policy.js';
import type { Principal } from '../../src/core/quota.js';
import { countersKey, limitKey, reservationKey } from '../../src/store/keys.js';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import { checkInput, freshPrincipal, makeAuthority, usageInput } from '../../harness/authority.js';
import { limit, policyWith, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Four limits of every kind and scope: a rate, a budget, a concurrency limit and an org-wide budget. */
const limits = [
  limit({ name: 'requests_per_minute', kind: 'rate', limit: 1_000 }),
  limit({ name: 'tokens_per_day', kind: 'budget', unit: 'tokens', limit: 10_000_000 }),
  limit({ name: 'concurrent', kind: 'concurrency', limit: 100 }),
  limit({ name: 'org_usd_per_day', kind: 'budget', unit: 'usd_micros', limit: 100_000_000, scope: 'org' }),
];
const policy = policyWith([tier('layout', limits)], {
  leaseMs: 5 * MINUTE,
  idempotencyWindowMs: 60 * MINUTE,
});

let server: TestRedisServer;
/** The test's own connection, for looking at what the store wrote and what Redis counted. */
let inspect: Redis;

before(async () => {
  server = await TestRedisServer.start();
  inspect = server.client();
});
after(async () => {
  await inspect.quit();
  await server.stop();
});

async function openAuthority(t: { after(fn: () => Promise<void>): void }) {
  const clock = new ManualClock(Date.now());
  const redis = createRedisClient(server.url, { commandTimeoutMs: 2_000 });
  await redis.connect();
  const store = new RedisStore({ redis, clock });
  t.after(() => store.close());
  return { redis, clock, ...makeAuthority(store, clock, policy) };
}

/** The hash tag Redis Cluster hashes a key by: from the first `{` to the next `}`, when not empty. */
function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  const close = open === -1 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

async function allKeys(): Promise<Set<string>> {
  const keys = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await inspect.scan(cursor, 'COUNT', 1_000);
    for (const key of batch) keys.add(key);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

/** The keys that exist after `run` and did not before it. */
async function keysWrittenBy(run: () => Promise<void>): Promise<string[]> {
  const existing = await allKeys();
  await run();
  return [...(await allKeys())].filter((key) => !existing.has(key)).sort();
}

/** What a layout test checks of a key: its hash tag, and whether it has a time to live. */
async function layoutOf(keys: readonly string[]) {
  return Promise.all(
    keys.map(async (key) => ({ key, tag: hashTag(key), expires: (await inspect.pttl(key)) > 0 })),
  );
}

/** The keys a principal's counters live in: a hash per scope (subject, org) for rates and budgets, a set of leases per concurrency limit. */
function counterKeys(principal: Principal): string[] {
  const keys = limits.map((spec) =>
    spec.kind === 'concurrency' ? limitKey(principal, spec) : countersKey(principal, spec),
  );
  return [...new Set(keys)];
}

function expectedLayout(principal: Principal, keys: readonly string[]) {
  return [...keys].sort().map((key) => ({ key, tag: `org:${principal.org}`, expires: true }));
}

/** `calls` per command from INFO commandstats (`cmdstat_evalsha:calls=3,...`). */
async function commandCalls(): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const match of (await inspect.info('commandstats')).matchAll(/^cmdstat_(\S+?):calls=(\d+)/gm)) {
    calls.set(match[1] as string, Number(match[2]));
  }
  return calls;
}

/** Script runs so far: EVALSHA, plus EVAL for a connection's first call or a resend after NOSCRIPT. */
async function scriptCalls(): Promise<number> {
  const calls = await commandCalls();
  return (calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0);
}

async function commandsProcessed(): Promise<number> {
  const match = /^total_commands_processed:(\d+)/m.exec(await inspect.info('stats'));
  return Number(match?.[1]);
}

/** Redis TIME in milliseconds, as the scripts compute it. */
async function redisTimeMs(): Promise<number> {
  const [seconds, micros] = await inspect.time();
  return Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
}

interface Observed {
  /** Commands sent by the store's connection, by name. */
  fromStore: string[];
  /** Commands run by scripts inside Redis. */
  insideScripts: number;
  /** Growth of total_commands_processed, read by INFO before and after `run`. */
  processed: number;
}

/** Watches `run` with MONITOR, which tells a client's commands from those a script runs (source `lua`). */
async function observe(store: Redis, run: () => Promise<void>): Promise<Observed> {
  const monitor = await inspect.monitor();
  const storeAddress = `127.0.0.1:${store.stream.localPort}`;
  const marker = `observed-${process.pid}-${Math.random()}`;
  const observed: Observed = { fromStore: [], insideScripts: 0, processed: 0 };
  const done = new Promise<void>((resolve) => {
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source === 'lua') observed.insideScripts += 1;
      else if (source === storeAddress) observed.fromStore.push(String(args[0]).toLowerCase());
      else if (args[1] === marker) resolve();
    });
  });
  const before = await commandsProcessed();
  await run();
  // This INFO's own count is not in its answer; the first one's is.
  observed.processed = (await commandsProcessed()) - before - 1;
  await inspect.echo(marker);
  await done;
  monitor.removeAllListeners('monitor');
  monitor.disconnect();
  return observed;
}

/**
 * Rewrites a reservation record as the layout before December 2026 wrote it: every charge a line of one
 * field `ch`, naming its counter by full key (a rate or budget counter by its key before the counters
 * hash), instead of a field each naming its counters hash by scope and its field, or its lease set by a key
 * relative to the reservation's.
 */
async function rewriteAsEarlierLayout(key: string): Promise<void> {
  const fields = await inspect.hgetall(key);
  const prefix = key.slice(0, key.indexOf(':res:'));
  const subject = key.slice(prefix.length + ':res:'.length).split(':')[0] as string;
  const numbered = Object.keys(fields).filter((field) => /^\d+$/.test(field));
  assert.ok(numbered.length > 0, `no charge fields in ${JSON.stringify(fields)}`);
  const segment: Record<string, string> = { r: 'rate', b: 'budget' };
  const lines = numbered
    .sort((a, b) => Number(a) - Number(b))
    .map((field) => {
      const parts = (fields[field] as string).split('\t');
      if (parts.length === 6) {
        const [kind, scope, counter, ...rest] = parts as [string, string, string, ...string[]];
        const at = scope === 'o' ? 'org' : `s:${subject}`;
        return [kind, `${prefix}:${segment[kind]}:${at}:${counter.slice(1)}`, ...rest].join('\t');
      }
      const [kind, at, ...rest] = parts;
      const full = at?.startsWith(':') ? prefix + at.replace(':~:', `:s:${subject}:`) : at;
      return [kind, full, ...rest].join('\t');
    });
  await inspect.hdel(key, ...numbered);
  await inspect.hset(key, 'ch', lines.join('\n'));
}

/** A principal's usage as a test compares it: each limit's name, amount used and amount held. */
async function usageOf(
  authority: QuotaAuthority,
  principal: Principal,
  kinds = ['rate', 'budget', 'concurrency'],
) {
  return (await authority.usage({ principal })).limits
    .filter((l) => kinds.includes(l.spec.kind))
    .map((l) => ({ name: l.spec.name, used: l.used, reserved: l.reserved }));
}

/** The field of a rate or budget limit in its counters hash. */
function fieldOf(spec: LimitSpec): string {
  return `${spec.kind === 'rate' ? 'R' : 'B'}${spec.name}`;
}

/** The kinds of limit kept in counters hashes. */
const COUNTERS = ['rate', 'budget'];

const ratesAndBudgets = limits.filter((spec) => spec.kind !== 'concurrency');

/**
 * Writes a principal's rate and budget counters into a key per limit, as the layout before one hash per
 * principal kept them (`…:rate:s:<subject>:<limit>`, a hash {w, c, p}; `…:budget:…`, a hash {<start>:
 * charged, h<start>: held, e<start>: the holds' latest lease end}), and takes them out of their hashes
 * unless `copy` (as if an authority of that version had charged the same again).
 */
async function writeCountersAsEarlierLayout(principal: Principal, { copy = false } = {}): Promise<void> {
  for (const spec of ratesAndBudgets) {
    const hash = countersKey(principal, spec);
    const [latest, before] = await inspect.hmget(hash, fieldOf(spec), `P${spec.name}`);
    assert.ok(latest, `no ${fieldOf(spec)} in ${hash}`);
    const [first, second, third, fourth] = latest.split(' ') as [string, string, string?, string?];
    const fields: Record<string, string> =
      spec.kind === 'rate' ? { w: first, c: second, p: third as string } : { [first]: second };
    if (spec.kind === 'budget' && third !== undefined) {
      fields[`h${first}`] = third;
      fields[`e${first}`] = String(Number(first) + Number(fourth));
    }
    if (before) {
      const [start, charged] = before.split(' ') as [string, string];
      fields[start] = charged;
    }
    if (!copy) await inspect.hdel(hash, fieldOf(spec), `P${spec.name}`);
    await inspect.hset(limitKey(principal, spec), fields);
    await inspect.pexpire(limitKey(principal, spec), 2 * DAY);
  }
}

/** How many of a principal's earlier-layout counter keys exist. */
async function earlierLayoutKeys(principal: Principal): Promise<number> {
  return inspect.exists(...ratesAndBudgets.map((spec) => limitKey(principal, spec)));
}

describe('Redis layout', () => {
  test('every key a reservation and its settlement write is under the org hash tag and expires', async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    const settled = checkInput(principal);
    const held = checkInput(principal);
    const unreserved = checkInput(principal);
    const written = await keysWrittenBy(async () => {
      await authority.check(settled);
      await authority.check(held);
      await authority.record(usageInput(settled, { outputTokens: 50 }));
      await authority.record(usageInput(unreserved));
    });
    const counters = counterKeys(principal);
    const reservations = [settled, held, unreserved].map((c) => reservationKey(principal, c.requestId));
    assert.deepEqual(await layoutOf(written), expectedLayout(principal, [...counters, ...reservations]));
  });

  const N = 25;

  test(`${N} CheckQuota calls over four limits run ${N} scripts`, async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    await authority.check(checkInput(principal));
    const before = await scriptCalls();
    for (let i = 0; i < N; i++) await authority.check(checkInput(principal));
    assert.equal((await scriptCalls()) - before, N);
  });

  test(`${N} RecordUsage calls over four limits run ${N} scripts`, async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    const checks = Array.from({ length: N }, () => checkInput(principal));
    for (const check of checks) await authority.check(check);
    const before = await scriptCalls();
    for (const check of checks) await authority.record(usageInput(check, { outputTokens: 10 }));
    assert.equal((await scriptCalls()) - before, N);
  });

  test(`${N} usage reports over four limits run ${N} scripts`, async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    await authority.usage({ principal });
    const before = await scriptCalls();
    for (let i = 0; i < N; i++) await authority.usage({ principal });
    assert.equal((await scriptCalls()) - before, N);
  });

  test('each CheckQuota and RecordUsage is one command on the wire: an EVALSHA', async (t) => {
    const { authority, redis } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    // A connection's first call of each script sends it whole (EVAL); later calls name it by its hash.
    const first = checkInput(principal);
    await authority.check(first);
    await authority.record(usageInput(first));
    const observed = await observe(redis, async () => {
      for (let i = 0; i < 5; i++) {
        const check = checkInput(principal);
        await authority.check(check);
        await authority.record(usageInput(check));
      }
    });
    assert.deepEqual(observed.fromStore, Array<string>(10).fill('evalsha'));
  });

  test('total_commands_processed grows by each call and every command its script runs, so it does not count round trips', async (t) => {
    const { authority, redis } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    await authority.check(checkInput(principal));
    const observed = await observe(redis, async () => {
      for (let i = 0; i < 5; i++) await authority.check(checkInput(principal));
    });
    assert.equal(observed.processed, observed.fromStore.length + observed.insideScripts);
  });

  test('without an injected clock the scripts decide at Redis TIME', async (t) => {
    const redis = createRedisClient(server.url, { commandTimeoutMs: 2_000 });
    await redis.connect();
    const store = new RedisStore({ redis });
    t.after(() => store.close());
    const earliest = await redisTimeMs();
    const result = await store.reserve({
      principal: freshPrincipal('layout'),
      requestId: 'at-redis-time',
      mode: 'reserve',
      leaseMs: MINUTE,
      idempotencyWindowMs: MINUTE,
      reservedTokens: 0,
      reservedMicros: 0,
      limits: [{ spec: limit({ name: 'requests_per_minute', kind: 'rate', limit: 10 }), cost: 1 }],
      deadlineMs: 0,
    });
    const latest = await redisTimeMs();
    assert.equal(result.outcome, 'admitted');
    assert.ok(
      earliest <= result.nowMs && result.nowMs <= latest,
      `decided at ${result.nowMs}, outside Redis TIME [${earliest}, ${latest}] (Date.now() ${Date.now()})`,
    );
  });

  test('after SCRIPT FLUSH, as after a Redis restart, the next check succeeds by resending the script', async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    await authority.check(checkInput(principal));
    await inspect.script('FLUSH');
    const evalsBefore = (await commandCalls()).get('eval') ?? 0;
    const decision = await authority.check(checkInput(principal));
    const resent = ((await commandCalls()).get('eval') ?? 0) - evalsBefore;
    assert.deepEqual(
      { code: decision.code, degraded: decision.degraded, resent },
      { code: 'OK', degraded: false, resent: 1 },
    );
  });

  test('a reservation record over four limits is a listpack hash of at most 400 bytes', async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    const check = checkInput(principal);
    await authority.check(check);
    const key = reservationKey(principal, check.requestId);
    const [encoding, bytes] = await Promise.all([
      inspect.object('ENCODING', key),
      inspect.memory('USAGE', key),
    ]);
    assert.equal(encoding, 'listpack');
    assert.ok(Number(bytes) <= 400, `MEMORY USAGE ${bytes} B`);
  });

  test('a reservation the earlier layout wrote (one ch field, full key names) settles as one written now', async (t) => {
    const { authority } = await openAuthority(t);
    const now = freshPrincipal('layout');
    const before = freshPrincipal('layout');
    const checks = [now, before].map((principal) => checkInput(principal));
    for (const check of checks) await authority.check(check);
    await rewriteAsEarlierLayout(reservationKey(before, checks[1]!.requestId));
    for (const check of checks) await authority.record(usageInput(check, { outputTokens: 7 }));
    const [settledNow, settledBefore] = await Promise.all(
      [now, before].map(async (principal) =>
        (await authority.usage({ principal })).limits.map((l) => ({
          name: l.spec.name,
          used: l.used,
          reserved: l.reserved,
        })),
      ),
    );
    assert.deepEqual(settledBefore, settledNow);
  });

  test("a subject's rate and budget counters are one listpack hash, a field each, and its org's another", async (t) => {
    const { authority } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    await authority.check(checkInput(principal));
    const [subject, org] = (['subject', 'org'] as const).map((scope) =>
      countersKey(principal, limit({ name: 'any', kind: 'rate', limit: 1, scope })),
    ) as [string, string];
    const layout = async (key: string) => ({
      fields: (await inspect.hkeys(key)).sort(),
      encoding: await inspect.object('ENCODING', key),
    });
    assert.deepEqual(
      { subject: await layout(subject), org: await layout(org) },
      {
        subject: { fields: ['Btokens_per_day', 'Rrequests_per_minute'], encoding: 'listpack' },
        org: { fields: ['Borg_usd_per_day'], encoding: 'listpack' },
      },
    );
  });

  test("a rate limit's next window does not shorten the time to live its hash's budget needs", async (t) => {
    const { authority, clock } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    await authority.check(checkInput(principal));
    clock.advance(2 * MINUTE);
    await authority.check(checkInput(principal));
    const budget = (await authority.usage({ principal })).limits.find(
      (l) => l.spec.name === 'tokens_per_day',
    );
    const needed = (budget?.periodEndMs ?? 0) - clock.now();
    const ttl = await inspect.pttl(countersKey(principal, limits[0] as LimitSpec));
    assert.ok(ttl >= needed, `PTTL ${ttl} ms, the budget's period ends in ${needed} ms`);
  });

  test("a budget's period before is kept while a settlement can still reach it, and dropped after", async (t) => {
    const { authority, clock } = await openAuthority(t);
    const principal = freshPrincipal('layout');
    const hash = countersKey(principal, limits[0] as LimitSpec);
    const fields = async () => (await inspect.hkeys(hash)).filter((f) => f.endsWith('tokens_per_day')).sort();
    const midnight = Math.ceil((clock.now() + 1) / DAY) * DAY;
    clock.set(midnight - 1_000);
    const lastOfDay = checkInput(principal);
    await authority.check(lastOfDay);
    clock.set(midnight + 1_000);
    await authority.check(checkInput(principal));
    const afterMidnight = await fields();
    // A reservation of the day before settles until its lease and the idempotency window have passed.
    clock.set(midnight + policy.leaseMs + policy.idempotencyWindowMs);
    await authority.check(checkInput(principal));
    assert.deepEqual(
      { afterMidnight, afterTheLastSettlement: await fields() },
      { afterMidnight: ['Btokens_per_day', 'Ptokens_per_day'], afterTheLastSettlement: ['Btokens_per_day'] },
    );
  });

  describe('counters the layout before wrote, a key per limit', () => {
    test('count as they are: usage reads them where they are', async (t) => {
      const { authority } = await openAuthority(t);
      const [now, before] = [freshPrincipal('layout'), freshPrincipal('layout')];
      for (const principal of [now, before]) {
        const check = checkInput(principal);
        await authority.check(check);
        await authority.record(usageInput(check, { outputTokens: 30 }));
        await authority.check(checkInput(principal));
      }
      await writeCountersAsEarlierLayout(before);
      assert.deepEqual(await usageOf(authority, before), await usageOf(authority, now));
    });

    test('are folded into the hash by the next check, which counts them, and then deleted', async (t) => {
      const { authority } = await openAuthority(t);
      const [now, before] = [freshPrincipal('layout'), freshPrincipal('layout')];
      for (const principal of [now, before]) await authority.check(checkInput(principal));
      await writeCountersAsEarlierLayout(before);
      for (const principal of [now, before]) await authority.check(checkInput(principal));
      assert.deepEqual(
        { usage: await usageOf(authority, before), earlierKeys: await earlierLayoutKeys(before) },
        { usage: await usageOf(authority, now), earlierKeys: 0 },
      );
    });

    test('a reservation charged to them settles there as one charged to the hash does', async (t) => {
      const { authority } = await openAuthority(t);
      const [now, before] = [freshPrincipal('layout'), freshPrincipal('layout')];
      const checks = [now, before].map((principal) => checkInput(principal));
      for (const check of checks) await authority.check(check);
      await writeCountersAsEarlierLayout(before);
      for (const check of checks) await authority.record(usageInput(check, { outputTokens: 7 }));
      assert.deepEqual(await usageOf(authority, before), await usageOf(authority, now));
    });

    test("what an earlier version's authority charges during a rollout is added to the hash, not lost", async (t) => {
      const { authority } = await openAuthority(t);
      const [both, hashOnly] = [freshPrincipal('layout'), freshPrincipal('layout')];
      await authority.check(checkInput(both));
      // An authority of the earlier version charges `both` the same again, in its per-limit keys (its
      // concurrency lease is not copied: leases kept their layout).
      await writeCountersAsEarlierLayout(both, { copy: true });
      for (let i = 0; i < 2; i++) await authority.check(checkInput(hashOnly));
      const counted = {
        usage: await usageOf(authority, both, COUNTERS),
        expected: await usageOf(authority, hashOnly, COUNTERS),
      };
      await authority.check(checkInput(both));
      await authority.check(checkInput(hashOnly));
      assert.deepEqual(
        {
          beforeFold: counted.usage,
          afterFold: await usageOf(authority, both, COUNTERS),
          earlierKeys: await earlierLayoutKeys(both),
        },
        {
          beforeFold: counted.expected,
          afterFold: await usageOf(authority, hashOnly, COUNTERS),
          earlierKeys: 0,
        },
      );
    });
  });

  test('subject "a:b" with request_id "c" and subject "a" with request_id "b:c" are two reservations', async (t) => {
    const { authority } = await openAuthority(t);
    const { org } = freshPrincipal('layout');
    const first = await authority.check(
      checkInput({ subject: 'a:b', org, tier: 'layout' }, { requestId: 'c' }),
    );
    const second = await authority.check(
      checkInput({ subject: 'a', org, tier: 'layout' }, { requestId: 'b:c' }),
    );
    assert.deepEqual(
      [first, second].map((d) => ({ allowed: d.allowed, duplicate: d.duplicate })),
      [
        { allowed: true, duplicate: false },
        { allowed: true, duplicate: false },
      ],
    );
  });

  test('a subject and request_id with colons, braces and spaces keep every key under the org hash tag', async (t) => {
    const { authority } = await openAuthority(t);
    const principal = { ...freshPrincipal('layout'), subject: '{org:other} a:b c' };
    const check = checkInput(principal, { requestId: 'r {1}: x' });
    const written = await keysWrittenBy(async () => {
      await authority.check(check);
    });
    const counters = counterKeys(principal);
    const expected = [...counters, reservationKey(principal, check.requestId)];
    assert.deepEqual(await layoutOf(written), expectedLayout(principal, expected));
  });
});
