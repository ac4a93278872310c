import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parsePolicy } from '../../src/policy/load.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

test("the README's example policy is a valid policy", () => {
  const example = /```yaml\n([\s\S]*?)```/.exec(README)?.[1];
  assert.ok(example, 'README has a yaml example');
  const policy = parsePolicy(example, 'README.md');
  assert.deepEqual(
    policy.tiers.get('free')?.limits.map((l) => l.name),
    ['requests_per_minute', 'tokens_per_minute', 'tokens_per_day', 'spend_per_day', 'concurrent_requests'],
  );
});
