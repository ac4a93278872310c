import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { periodBounds } from '../../src/core/calendar.js';
import { ManualClock } from '../../src/core/clock.js';
import type { ReserveCommand } from '../../src/core/quota.js';
import type { QuotaStore } from '../../src/store/store.js';
import { checkInput, freshPrincipal, makeAuthority, usageInput } from '../../harness/authority.js';
import { limit, policyWith, tier } from '../../harness/policy.js';

/** Opens a store on the given clock; the suite closes it. */
export type StoreFactory = (clock: ManualClock) => Promise<QuotaStore>;

const MINUTE = 60_000;
/** 2026-11-22T10:00:00.000Z, a whole minute, so window positions are easy to reason about. */
const START = Date.UTC(2026, 10, 22, 10, 0, 0);

const freeTier = tier(
  'free',
  [limit({ name: 'requests_per_minute', kind: 'rate', limit: 10, windowMs: MINUTE })],
  {
    maxOutputTokens: 500,
  },
);
const budgetTier = tier('budget', [
  limit({ name: 'tokens_per_day', kind: 'budget', unit: 'tokens', limit: 10_000, period: 'day' }),
]);
const threeLimitTier = tier('three', [
  limit({ name: 'requests_per_minute', kind: 'rate', limit: 100 }),
  limit({ name: 'tokens_per_minute', kind: 'rate', unit: 'tokens', limit: 1_000 }),
  limit({ name: 'usd_per_day', kind: 'budget', unit: 'usd_micros', limit: 5_000_000 }),
]);
const concurrencyTier = tier('single', [limit({ name: 'concurrent', kind: 'concurrency', limit: 1 })]);
const newYorkTier = tier('ny', [
  limit({
    name: 'tokens_per_day',
    kind: 'budget',
    unit: 'tokens',
    limit: 1_000,
    timeZone: 'America/New_York',
  }),
]);
const shadowTier = tier('shadow', [
  limit({ name: 'requests_per_minute', kind: 'rate', limit: 100 }),
  limit({ name: 'trial_rpm', kind: 'rate', limit: 1, shadow: true }),
]);
const orgTier = tier('team', [limit({ name: 'org_requests', kind: 'rate', limit: 3, scope: 'org' })]);
const policy = policyWith(
  [freeTier, budgetTier, threeLimitTier, concurrencyTier, newYorkTier, shadowTier, orgTier],
  {
    leaseMs: 5 * MINUTE,
    idempotencyWindowMs: 60 * MINUTE,
  },
);

/** The behaviour every QuotaStore must show, driven through the authority with a clock the test moves. */
export function describeQuotaContract(storeName: string, openStore: StoreFactory): void {
  describe(`quota contract on ${storeName}`, () => {
    async function setup(startMs = START) {
      const clock = new ManualClock(startMs);
      const store = await openStore(clock);
      const harness = makeAuthority(store, clock, policy);
      return { clock, store, ...harness };
    }

    test('an admitted request reports every limit with what remains after its charge', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const decision = await authority.check(checkInput(freshPrincipal('three')));
      assert.equal(decision.allowed, true);
      assert.deepEqual(
        decision.limits.map((l) => [l.spec.name, l.used, l.remaining]),
        [
          ['requests_per_minute', 1, 99],
          ['tokens_per_minute', 300, 700],
          ['usd_per_day', 500, 4_999_500],
        ],
      );
      assert.deepEqual(decision.reservation, {
        expiresAtMs: START + 5 * MINUTE,
        tokens: 300,
        usdMicros: 500,
      });
    });

    test('500 concurrent checks of 300 tokens against a 10,000-token budget admit exactly 33', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const decisions = await Promise.all(
        Array.from({ length: 500 }, () =>
          authority.check(checkInput(principal, { inputTokens: 100, maxOutputTokens: 200 })),
        ),
      );
      const admitted = decisions.filter((d) => d.allowed);
      assert.equal(admitted.length, 33);
      const reserved = admitted.reduce((sum, d) => sum + (d.reservation?.tokens ?? 0), 0);
      assert.ok(reserved <= 10_000, `reserved ${reserved} tokens of 10,000`);
      const usage = await authority.usage({ principal });
      assert.equal(usage.tokensUsed, 9_900);
    });

    test('a request that would break one of three limits charges none of them', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('three');
      await authority.check(checkInput(principal, { inputTokens: 400, maxOutputTokens: 400 }));
      const before = await authority.usage({ principal });
      const denied = await authority.check(checkInput(principal, { inputTokens: 100, maxOutputTokens: 200 }));
      assert.equal(denied.allowed, false);
      assert.deepEqual(denied.deniedBy, ['tokens_per_minute']);
      const after = await authority.usage({ principal });
      assert.deepEqual(
        after.limits.map((l) => l.used),
        before.limits.map((l) => l.used),
      );
    });

    test('settling below the estimate gives the difference back', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const check = checkInput(freshPrincipal('budget'), { inputTokens: 100, maxOutputTokens: 200 });
      await authority.check(check);
      const settled = await authority.record(usageInput(check, { inputTokens: 100, outputTokens: 50 }));
      assert.equal(settled.status, 'settled');
      assert.deepEqual(settled.charged, { inputTokens: 100, outputTokens: 50, usdMicros: 200 });
      assert.equal(settled.limits[0]?.used, 150);
    });

    test('settling above the estimate charges the excess, even past the limit', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal, { inputTokens: 100, maxOutputTokens: 9_000 });
      await authority.check(check);
      await authority.record(usageInput(check, { inputTokens: 2_000, outputTokens: 9_000 }));
      assert.equal((await authority.usage({ principal })).tokensUsed, 11_000);
      const next = await authority.check(checkInput(principal, { inputTokens: 1, maxOutputTokens: 1 }));
      assert.equal(next.allowed, false);
    });

    test('the same RecordUsage sent 50 times at once charges once', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      await authority.check(check);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => authority.record(usageInput(check, { outputTokens: 20 }))),
      );
      assert.equal(results.filter((r) => r.status === 'settled').length, 1);
      assert.equal(results.filter((r) => r.status === 'duplicate').length, 49);
      assert.ok(results.every((r) => r.charged.outputTokens === 20));
      assert.equal((await authority.usage({ principal })).tokensUsed, 120);
    });

    test('a CheckQuota retried 50 times with the same request_id charges once', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      const decisions = await Promise.all(Array.from({ length: 50 }, () => authority.check(check)));
      assert.ok(decisions.every((d) => d.allowed));
      assert.equal(decisions.filter((d) => !d.duplicate).length, 1);
      const first = decisions.find((d) => !d.duplicate);
      assert.ok(decisions.every((d) => d.reservation?.expiresAtMs === first?.reservation?.expiresAtMs));
      assert.equal((await authority.usage({ principal })).tokensUsed, 300);
    });

    test('a denied request is not remembered: the same request_id is decided afresh later', async (t) => {
      const { authority, store, clock } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('free');
      for (let i = 0; i < 10; i++) await authority.check(checkInput(principal));
      const retried = checkInput(principal);
      const denied = await authority.check(retried);
      assert.equal(denied.allowed, false);
      clock.advance(denied.retryAfterMs);
      const admitted = await authority.check(retried);
      assert.equal(admitted.allowed, true);
      assert.equal(admitted.duplicate, false);
    });

    test('a dry run decides and reports but charges and remembers nothing', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal, { dryRun: true });
      const dry = await authority.check(check);
      assert.equal(dry.allowed, true);
      assert.equal(dry.reservation, undefined);
      assert.equal((await authority.usage({ principal })).tokensUsed, 0);
      const real = await authority.check({ ...check, dryRun: false });
      assert.equal(real.duplicate, false);
    });

    test("an unsettled reservation's concurrency slot returns when its lease ends", async (t) => {
      const { authority, store, clock, metrics } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('single');
      assert.equal((await authority.check(checkInput(principal))).allowed, true);
      const blocked = await authority.check(checkInput(principal));
      assert.equal(blocked.allowed, false);
      assert.ok(blocked.retryAfterMs > 0 && blocked.retryAfterMs <= 1_000);
      clock.advance(5 * MINUTE);
      assert.equal((await authority.check(checkInput(principal))).allowed, true);
      const expired = await metrics.registry.getSingleMetricAsString('quotad_reservations_expired_total');
      assert.match(expired, /quotad_reservations_expired_total 1$/m);
    });

    test('settling releases the concurrency slot at once', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('single');
      const first = checkInput(principal);
      await authority.check(first);
      await authority.record(usageInput(first));
      assert.equal((await authority.check(checkInput(principal))).allowed, true);
    });

    test('the 11th request in a minute is denied, and admitted after exactly retry_after_ms', async (t) => {
      const { authority, store, clock } = await setup(START + 15_000);
      t.after(() => store.close());
      const principal = freshPrincipal('free');
      for (let i = 0; i < 10; i++) assert.equal((await authority.check(checkInput(principal))).allowed, true);
      const denied = await authority.check(checkInput(principal));
      assert.equal(denied.allowed, false);
      assert.equal(denied.code, 'OVER_LIMIT');
      assert.ok(denied.retryAfterMs > 0);
      clock.advance(denied.retryAfterMs - 1);
      assert.equal((await authority.check(checkInput(principal))).allowed, false);
      clock.advance(1);
      assert.equal((await authority.check(checkInput(principal))).allowed, true);
    });

    test('two principals have independent counters', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const alice = freshPrincipal('free');
      const bob = freshPrincipal('free', alice.org);
      for (let i = 0; i < 10; i++) await authority.check(checkInput(alice));
      assert.equal((await authority.check(checkInput(alice))).allowed, false);
      assert.equal((await authority.check(checkInput(bob))).allowed, true);
    });

    test('an org-scoped limit is shared by every subject of the org', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const first = freshPrincipal('team');
      const decisions = [];
      for (let i = 0; i < 4; i++)
        decisions.push(await authority.check(checkInput(freshPrincipal('team', first.org))));
      assert.deepEqual(
        decisions.map((d) => d.allowed),
        [true, true, true, false],
      );
    });

    test('a shadow limit reports its breach but never denies', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('shadow');
      await authority.check(checkInput(principal));
      const second = await authority.check(checkInput(principal));
      assert.equal(second.allowed, true);
      const trial = second.limits.find((l) => l.spec.name === 'trial_rpm');
      assert.equal(trial?.exceeded, true);
      assert.deepEqual(second.shadowExceeded, ['trial_rpm']);
    });

    test('a calendar budget resets at midnight in its own time zone', async (t) => {
      // 23:30 in New York (EST, UTC-5) is 04:30 UTC the next day.
      const beforeMidnight = Date.UTC(2026, 10, 23, 4, 30);
      const { authority, store, clock } = await setup(beforeMidnight);
      t.after(() => store.close());
      const principal = freshPrincipal('ny');
      const spent = checkInput(principal, { inputTokens: 500, maxOutputTokens: 500 });
      await authority.check(spent);
      await authority.record(usageInput(spent));
      const denied = await authority.check(checkInput(principal, { inputTokens: 1, maxOutputTokens: 1 }));
      assert.equal(denied.allowed, false);
      assert.equal(denied.retryAfterMs, 30 * MINUTE);
      clock.advance(30 * MINUTE - 1);
      assert.equal(
        (await authority.check(checkInput(principal, { inputTokens: 1, maxOutputTokens: 1 }))).allowed,
        false,
      );
      clock.advance(1);
      const next = await authority.check(checkInput(principal, { inputTokens: 1, maxOutputTokens: 1 }));
      assert.equal(next.allowed, true);
      assert.equal(next.limits[0]?.periodStartMs, Date.UTC(2026, 10, 23, 5, 0));
    });

    test('a settlement after midnight moves the budget of the day it was charged to', async (t) => {
      const beforeMidnight = Date.UTC(2026, 10, 22, 23, 59);
      const { authority, store, clock } = await setup(beforeMidnight);
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal, { inputTokens: 1_000, maxOutputTokens: 1_000 });
      await authority.check(check);
      clock.advance(2 * MINUTE);
      await authority.check(checkInput(principal, { inputTokens: 100, maxOutputTokens: 100 }));
      await authority.record(usageInput(check, { inputTokens: 1_000, outputTokens: 0 }));
      assert.equal((await authority.usage({ principal })).tokensUsed, 200);
    });

    test('a settlement in the next window corrects the window the request was counted in', async (t) => {
      const { authority, store, clock } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('three');
      const check = checkInput(principal, { inputTokens: 100, maxOutputTokens: 900 });
      await authority.check(check);
      clock.advance(MINUTE);
      await authority.record(usageInput(check, { inputTokens: 100, outputTokens: 0 }));
      const tokens = (await authority.usage({ principal })).limits.find(
        (l) => l.spec.name === 'tokens_per_minute',
      );
      // At the start of the next window the previous one still weighs fully: 100 tokens, not 1,000.
      assert.equal(tokens?.used, 100);
    });

    test('a failed upstream call refunds the request and its tokens', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('three');
      const check = checkInput(principal);
      await authority.check(check);
      const settled = await authority.record(
        usageInput(check, { inputTokens: 0, outputTokens: 0, outcome: 'failed' }),
      );
      assert.deepEqual(
        settled.limits.map((l) => l.used),
        [0, 0, 0],
      );
    });

    test('usage without a reservation is charged directly, once', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const report = usageInput(checkInput(principal), { inputTokens: 70, outputTokens: 30 });
      const first = await authority.record(report);
      assert.equal(first.status, 'charged_without_reservation');
      assert.deepEqual(first.reserved, { tokens: 0, usdMicros: 0 });
      const again = await authority.record(report);
      assert.equal(again.status, 'duplicate');
      assert.equal((await authority.usage({ principal })).tokensUsed, 100);
    });

    test('a settlement after the lease ended still settles by the difference, marked late', async (t) => {
      const { authority, store, clock } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      await authority.check(check);
      clock.advance(5 * MINUTE);
      const settled = await authority.record(usageInput(check, { outputTokens: 0 }));
      assert.equal(settled.status, 'settled');
      assert.equal(settled.late, true);
      assert.equal((await authority.usage({ principal })).tokensUsed, 100);
    });

    test('a request_id is forgotten after the idempotency window and counts as new', async (t) => {
      const { authority, store, clock } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      await authority.check(check);
      clock.advance(5 * MINUTE + 60 * MINUTE);
      const again = await authority.check(check);
      assert.equal(again.duplicate, false);
      assert.equal((await authority.usage({ principal })).tokensUsed, 600);
    });

    test('a request with no output (an embedding) reserves its input tokens only', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('free');
      const decision = await authority.check(
        checkInput(principal, { inputTokens: 40, maxOutputTokens: 0, noOutput: true }),
      );
      assert.equal(decision.code, 'OK');
      assert.equal(decision.reservation?.tokens, 40);
    });

    test('a reserve that reaches the store after its deadline charges nothing and says so', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('free');
      const late: ReserveCommand = {
        principal,
        requestId: 'reached-the-store-too-late',
        mode: 'reserve',
        leaseMs: 5 * MINUTE,
        idempotencyWindowMs: 60 * MINUTE,
        reservedTokens: 300,
        reservedMicros: 0,
        limits: [{ spec: freeTier.limits[0] as (typeof freeTier.limits)[number], cost: 1 }],
        deadlineMs: Date.now() - 1,
      };
      const result = await store.reserve(late);
      assert.equal(result.outcome, 'expired');
      assert.equal((await authority.usage({ principal })).limits[0]?.used, 0);
    });

    test("a signed request's nonce: of 200 concurrent reserves with it only one is admitted; a refusal neither charges nor consumes it", async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('free');
      const spec = freeTier.limits[0] as (typeof freeTier.limits)[number];
      const command = (requestId: string, cost: number): ReserveCommand => ({
        principal,
        requestId,
        mode: 'reserve',
        leaseMs: 5 * MINUTE,
        idempotencyWindowMs: 60 * MINUTE,
        reservedTokens: 1,
        reservedMicros: 0,
        limits: [{ spec, cost }],
        deadlineMs: 0,
        nonce: { value: 'n0nce-0123456789abcdef', ttlMs: 10 * MINUTE },
      });
      // Over the limit: denied, and the nonce stays unused.
      assert.equal((await store.reserve(command('too-big', 11))).outcome, 'denied');
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => store.reserve(command(`copy-${i}`, 1))),
      );
      const outcomes = results.map((result) => result.outcome);
      assert.deepEqual(
        [outcomes.filter((o) => o === 'admitted').length, outcomes.filter((o) => o === 'replayed').length],
        [1, 199],
      );
      assert.equal((await authority.usage({ principal })).limits[0]?.used, 1);
    });

    test('a signed reserve that crosses a budget threshold consumes its nonce and raises the event once; its replay raises none', async (t) => {
      const { authority, store, clock } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const budget = budgetTier.limits[0] as (typeof budgetTier.limits)[number];
      const spec = { ...budget, alertThresholds: [0.5] };
      const bounds = periodBounds(spec.period, spec.timeZone, clock.now());
      const command = (requestId: string, nonce: string, cost: number): ReserveCommand => ({
        principal,
        requestId,
        mode: 'reserve',
        leaseMs: 5 * MINUTE,
        idempotencyWindowMs: 60 * MINUTE,
        reservedTokens: cost,
        reservedMicros: 0,
        limits: [{ spec, cost, bounds }],
        deadlineMs: 0,
        nonce: { value: nonce, ttlMs: 10 * MINUTE },
        events: { keyId: 'key_contract', deliver: false },
      });
      const first = await store.reserve(command('cross', 'n0nce-events-000000001', 6_000));
      assert.deepEqual(
        [first.outcome, (first.raised ?? []).map((e) => [e.type, e.limitName, e.threshold])],
        ['admitted', [['budget.threshold', 'tokens_per_day', '0.5']]],
      );
      const replay = await store.reserve(command('replay', 'n0nce-events-000000001', 1));
      assert.deepEqual([replay.outcome, replay.raised ?? []], ['replayed', []]);
      const next = await store.reserve(command('next', 'n0nce-events-000000002', 1));
      assert.deepEqual([next.outcome, next.raised ?? []], ['admitted', []]);
      assert.equal((await authority.usage({ principal })).limits[0]?.used, 6_001);
    });

    test('a budget held by requests in flight, not spent, is refused with a short retry and admits once they settle', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const inFlight = [];
      for (let i = 0; i < 33; i++) {
        const check = checkInput(principal, { inputTokens: 100, maxOutputTokens: 200 });
        assert.equal((await authority.check(check)).allowed, true);
        inFlight.push(check);
      }
      const next = checkInput(principal, { inputTokens: 100, maxOutputTokens: 200 });
      const held = await authority.check(next);
      assert.equal(held.allowed, false);
      assert.deepEqual(
        held.limits.map((l) => ({ used: l.used, reserved: l.reserved, held: l.held })),
        [{ used: 9_900, reserved: 9_900, held: true }],
      );
      assert.ok(held.retryAfterMs > 0 && held.retryAfterMs <= 1_000, `retry in ${held.retryAfterMs} ms`);
      assert.match(held.reason, /held by requests in flight/);
      for (const check of inFlight) await authority.record(usageInput(check, { outputTokens: 0 }));
      assert.equal((await authority.check(next)).allowed, true);
    });

    test('once every lease holding a budget has ended, what they reserved counts as spent', async (t) => {
      const { authority, store, clock } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      for (let i = 0; i < 33; i++) await authority.check(checkInput(principal));
      clock.advance(5 * MINUTE);
      const spent = await authority.check(checkInput(principal));
      assert.equal(spent.allowed, false);
      assert.deepEqual(
        spent.limits.map((l) => ({ reserved: l.reserved, held: l.held })),
        [{ reserved: 0, held: false }],
      );
      assert.equal(spent.retryAfterMs, (spent.limits[0]?.periodEndMs ?? 0) - clock.now());
    });

    test('a failed settlement that charged nothing frees the request_id: a retry under it is decided afresh, once', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      await authority.check(check);
      await authority.record(usageInput(check, { inputTokens: 0, outputTokens: 0, outcome: 'failed' }));
      const retried = await authority.check(check);
      assert.deepEqual([retried.allowed, retried.duplicate], [true, false]);
      assert.equal((await authority.check(check)).duplicate, true);
      assert.equal((await authority.usage({ principal })).tokensUsed, 300);
    });

    test('the cancel of a check that never reserved leaves its request_id free', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      const cancel = usageInput(check, { inputTokens: 0, outputTokens: 0, outcome: 'failed' });
      assert.equal((await authority.record(cancel)).status, 'charged_without_reservation');
      assert.equal((await authority.record(cancel)).status, 'duplicate');
      const decided = await authority.check(check);
      assert.deepEqual([decided.allowed, decided.duplicate], [true, false]);
    });

    test('usage reported under a freed request_id is charged, as without a reservation', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('budget');
      const check = checkInput(principal);
      await authority.check(check);
      await authority.record(usageInput(check, { inputTokens: 0, outputTokens: 0, outcome: 'failed' }));
      const reported = await authority.record(usageInput(check, { inputTokens: 40, outputTokens: 2 }));
      assert.equal(reported.status, 'charged_without_reservation');
      assert.equal((await authority.usage({ principal })).tokensUsed, 42);
    });

    test('a request larger than a limit is refused before the store, with no retry time', async (t) => {
      const { authority, store } = await setup();
      t.after(() => store.close());
      const principal = freshPrincipal('ny');
      const decision = await authority.check(
        checkInput(principal, { inputTokens: 900, maxOutputTokens: 200 }),
      );
      assert.equal(decision.code, 'REQUEST_TOO_LARGE');
      assert.equal(decision.retryAfterMs, 0);
      assert.equal((await authority.usage({ principal })).tokensUsed, 0);
    });
  });
}
