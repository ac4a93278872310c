import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { checkInput, freshPrincipal, makeAuthority, usageInput } from '../../harness/authority.js';
import { limit, policyWith, tier } from '../../harness/policy.js';

const policy = policyWith([tier('free', [limit({ name: 'requests_per_minute', kind: 'rate', limit: 10 })])]);

async function decideTwiceAndSettle(logLevel: string): Promise<string[]> {
  const clock = new ManualClock(Date.UTC(2026, 10, 22));
  const { authority, logLines } = makeAuthority(
    new MemoryStore({ clock, sweepIntervalMs: 0 }),
    clock,
    policy,
    logLevel,
  );
  const principal = freshPrincipal('free');
  const first = checkInput(principal);
  await authority.check(first);
  await authority.check(checkInput(principal));
  await authority.record(usageInput(first));
  return logLines;
}

test('at info the decision path logs nothing', async () => {
  assert.deepEqual(await decideTwiceAndSettle('info'), []);
});

test('at debug each decision and each settlement logs exactly one line', async () => {
  const lines = (await decideTwiceAndSettle('debug')).map((line) => JSON.parse(line) as { msg: string });
  assert.deepEqual(
    lines.map((line) => line.msg),
    ['decision', 'decision', 'settlement'],
  );
});
