import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '../../src/core/errors.js';
import {
  formatOverrideValue,
  limitsWithOverrides,
  parseOverrideValue,
  resolveOverrideName,
} from '../../src/core/limit-overrides.js';
import { limit, tier } from '../../harness/policy.js';

const pro = tier('pro', [
  limit({ name: 'requests_per_minute', kind: 'rate', limit: 60 }),
  limit({ name: 'tokens_per_minute', kind: 'rate', unit: 'tokens', limit: 40_000 }),
  limit({ name: 'tokens_per_day', kind: 'budget', unit: 'tokens', limit: 100_000 }),
  limit({ name: 'spend_per_day', kind: 'budget', unit: 'usd_micros', limit: 50_000_000 }),
]);

test('short names find the tier limit they describe', () => {
  assert.equal(resolveOverrideName(pro, 'f', 'rpm').name, 'requests_per_minute');
  assert.equal(resolveOverrideName(pro, 'f', 'tpm').name, 'tokens_per_minute');
  assert.equal(resolveOverrideName(pro, 'f', 'tpd').name, 'tokens_per_day');
  assert.equal(resolveOverrideName(pro, 'f', 'usd_per_day').name, 'spend_per_day');
  assert.equal(resolveOverrideName(pro, 'f', 'spend_per_day').name, 'spend_per_day');
});

test('a name the tier lacks is INVALID_ARGUMENT listing the limits it has', () => {
  assert.throws(
    () => resolveOverrideName(pro, 'set[0].name', 'rph'),
    (error: Error) =>
      error instanceof InvalidArgumentError &&
      error.field === 'set[0].name' &&
      error.reason.includes('requests_per_minute, tokens_per_minute'),
  );
});

test('amounts parse as the policy writes them: whole numbers, or dollars for spend', () => {
  const spend = resolveOverrideName(pro, 'f', 'spend_per_day');
  assert.equal(parseOverrideValue(spend, 'f', '5.00'), 5_000_000);
  assert.equal(formatOverrideValue(spend, 5_000_000), '5.00');
  assert.equal(parseOverrideValue(resolveOverrideName(pro, 'f', 'rpm'), 'f', '100'), 100);
  assert.throws(
    () => parseOverrideValue(resolveOverrideName(pro, 'f', 'rpm'), 'f', '1.5'),
    InvalidArgumentError,
  );
  assert.throws(() => parseOverrideValue(spend, 'f', 'five'), InvalidArgumentError);
});

test('overrides replace only the named limits; with none the tier limits are returned as they are', () => {
  assert.equal(limitsWithOverrides(pro, {}), pro.limits);
  const limits = limitsWithOverrides(pro, { requests_per_minute: 5, no_such_limit: 1 });
  assert.deepEqual(
    limits.map((l) => l.limit),
    [5, 40_000, 100_000, 50_000_000],
  );
});
