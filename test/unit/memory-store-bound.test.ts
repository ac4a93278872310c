import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { StoreFullError } from '../../src/core/errors.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { checkInput, freshPrincipal, makeAuthority, usageInput } from '../../harness/authority.js';
import { limit, policyWith, tier } from '../../harness/policy.js';

/** One rate limit: a principal's first request takes two entries (its counter and its reservation). */
const POLICY = policyWith(
  [tier('bounded', [limit({ name: 'rpm', kind: 'rate', limit: 100, windowMs: 60_000 })])],
  { leaseMs: 60_000, idempotencyWindowMs: 60_000 },
);

function boundedAuthority(maxEntries: number) {
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 12));
  const refusals: number[] = [];
  const store = new MemoryStore({
    clock,
    sweepIntervalMs: 0,
    maxEntries,
    onFull: () => refusals.push(clock.now()),
  });
  return { clock, store, refusals, ...makeAuthority(store, clock, POLICY) };
}

test('a request that needs entries past the bound is refused before it changes anything', async () => {
  const { authority, store, refusals } = boundedAuthority(5);
  const first = freshPrincipal('bounded');
  const second = freshPrincipal('bounded');
  assert.equal((await authority.check(checkInput(first))).allowed, true);
  assert.equal((await authority.check(checkInput(second))).allowed, true);
  assert.equal(store.entries, 4);
  const third = freshPrincipal('bounded');
  await assert.rejects(authority.check(checkInput(third)), StoreFullError);
  // A principal already counted needs one entry for its reservation: that still fits; its next does not.
  assert.equal((await authority.check(checkInput(first))).allowed, true);
  await assert.rejects(authority.check(checkInput(first)), StoreFullError);
  await assert.rejects(authority.record(usageInput(checkInput(third))), StoreFullError);
  assert.equal(store.entries, 5);
  assert.equal(refusals.length, 3);
  const usage = await authority.usage({ principal: third });
  assert.equal(usage.limits[0]?.used, 0, 'the refused principal was charged nothing');
});

test('room comes back as entries expire, never by evicting a live one', async () => {
  const { authority, clock, store } = boundedAuthority(4);
  const early = freshPrincipal('bounded');
  const early2 = freshPrincipal('bounded');
  await authority.check(checkInput(early));
  await authority.check(checkInput(early2));
  const late = freshPrincipal('bounded');
  await assert.rejects(authority.check(checkInput(late)), StoreFullError);
  clock.advance(60_000 + 60_000);
  assert.equal((await authority.check(checkInput(late))).allowed, true);
  assert.equal(store.entries, 2, 'the expired entries were swept out to make room');
});
