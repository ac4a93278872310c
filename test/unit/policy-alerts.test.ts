import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Policy } from '../../src/core/policy.js';
import { parsePolicy } from '../../src/policy/load.js';
import { PolicyError } from '../../src/policy/policy-error.js';

// Line numbers in the expectations below count from the first line of this text.
const BASE = `version: 1
models:
  gpt-4o-mini:
    input_per_million: "0.15"
    output_per_million: "0.60"
tiers:
  free:
    max_output_tokens: 500
    limits:
      - name: spend_per_day
        type: budget
        unit: usd
        limit: "1.00"
        period: day
      - name: tokens_per_day
        type: budget
        unit: tokens
        limit: 10000
        period: day
        alert_thresholds: [0.9]
      - name: tokens_per_month
        type: budget
        unit: tokens
        limit: 100000
        period: month
        alert_thresholds: []
      - name: requests_per_minute
        type: rate
        unit: requests
        limit: 10
        window: 1m
`;

function thresholdsOf(policy: Policy, name: string): readonly number[] | undefined {
  return policy.tiers.get('free')?.limits.find((spec) => spec.name === name)?.alertThresholds;
}

function rejectionOf(text: string): string {
  try {
    parsePolicy(text, 'policy.yaml');
  } catch (error) {
    assert.ok(error instanceof PolicyError, `expected a PolicyError, got ${String(error)}`);
    return error.message;
  }
  assert.fail('the policy was accepted');
}

describe('the alerts section', () => {
  test('gives every budget limit the default thresholds 0.5, 0.8 and 1.0 when alerts says nothing', () => {
    const policy = parsePolicy(`${BASE}alerts: {}\n`, 'policy.yaml');
    assert.deepEqual(thresholdsOf(policy, 'spend_per_day'), [0.5, 0.8, 1]);
  });

  test('lets a budget limit override the list with its own alert_thresholds', () => {
    const policy = parsePolicy(`${BASE}alerts:\n  budget_thresholds: [0.25, 0.75]\n`, 'policy.yaml');
    assert.deepEqual(
      ['spend_per_day', 'tokens_per_day', 'tokens_per_month'].map((name) => thresholdsOf(policy, name)),
      [[0.25, 0.75], [0.9], undefined],
    );
  });

  test('gives rate limits no thresholds', () => {
    const policy = parsePolicy(`${BASE}alerts: {}\n`, 'policy.yaml');
    assert.equal(thresholdsOf(policy, 'requests_per_minute'), undefined);
  });

  test('without an alerts section, only limits that set alert_thresholds have thresholds', () => {
    const policy = parsePolicy(BASE, 'policy.yaml');
    assert.deepEqual(
      ['spend_per_day', 'tokens_per_day'].map((name) => thresholdsOf(policy, name)),
      [undefined, [0.9]],
    );
  });

  test('reads the webhook with its delivery defaults: 10 s timeout, 8 in flight, retried for an hour', () => {
    const text = `${BASE}alerts:\n  webhook:\n    url: https://hooks.example.com/quotad\n    secret_env: QUOTAD_WEBHOOK_SECRET\n`;
    assert.deepEqual(parsePolicy(text, 'policy.yaml').alerts?.webhook, {
      url: 'https://hooks.example.com/quotad',
      secretEnv: 'QUOTAD_WEBHOOK_SECRET',
      timeoutMs: 10_000,
      maxInFlight: 8,
      retryForMs: 3_600_000,
    });
  });

  test('fills the anomaly defaults: factor 5 over 1m intervals, 1h of history, a 15m cool-down, alert only', () => {
    const text = `${BASE}alerts:\n  anomaly:\n    action:\n      free: block\n`;
    const anomaly = parsePolicy(text, 'policy.yaml').alerts?.anomaly;
    assert.deepEqual(anomaly && { ...anomaly, actions: Object.fromEntries(anomaly.actions) }, {
      factor: 5,
      intervalMs: 60_000,
      halfLifeMs: 3_600_000,
      minHistoryMs: 3_600_000,
      minRequests: 20,
      minTokens: 20_000,
      cooldownMs: 900_000,
      actions: { free: 'block' },
    });
  });

  test('leaves anomaly detection off when alerts.anomaly is absent', () => {
    assert.equal(parsePolicy(`${BASE}alerts: {}\n`, 'policy.yaml').alerts?.anomaly, undefined);
  });
});

describe('a malformed alerts section', () => {
  test('is rejected at the line of a threshold that is not a fraction', () => {
    const message = rejectionOf(`${BASE}alerts:\n  budget_thresholds: [0.5, -0.2]\n`);
    assert.match(message, /^policy\.yaml:33:\d+ alerts\.budget_thresholds\[1\]: expected a fraction/);
  });

  test('is rejected at the line of thresholds out of order', () => {
    const message = rejectionOf(`${BASE}alerts:\n  budget_thresholds: [0.8, 0.5]\n`);
    assert.match(
      message,
      /^policy\.yaml:33:\d+ alerts\.budget_thresholds\[1\]: expected fractions in ascending order/,
    );
  });

  test('is rejected when alert_thresholds is on a rate limit', () => {
    const text = BASE.replace(
      '        window: 1m\n',
      '        window: 1m\n        alert_thresholds: [0.5]\n',
    );
    const message = rejectionOf(text);
    assert.match(
      message,
      /^policy\.yaml:32:\d+ tiers\.free\.limits\[3\]\.alert_thresholds: only budget limits/,
    );
  });

  test('is rejected when the webhook holds its secret instead of naming a variable', () => {
    const text = `${BASE}alerts:\n  webhook:\n    url: https://hooks.example.com/q\n    secret: s3cr3t\n`;
    assert.match(rejectionOf(text), /^policy\.yaml:35:\d+ alerts\.webhook\.secret: unknown key/m);
  });

  test('is rejected at the line of a webhook URL that is not http or https', () => {
    const text = `${BASE}alerts:\n  webhook:\n    url: ftp://hooks.example.com\n    secret_env: S\n`;
    assert.match(
      rejectionOf(text),
      /^policy\.yaml:34:\d+ alerts\.webhook\.url: expected an http:\/\/ or https:\/\/ URL/,
    );
  });

  test('is rejected when an anomaly action names a tier that does not exist', () => {
    const text = `${BASE}alerts:\n  anomaly:\n    action:\n      gold: block\n`;
    assert.match(
      rejectionOf(text),
      /^policy\.yaml:35:\d+ alerts\.anomaly\.action\.gold: unknown tier "gold"/,
    );
  });

  test('is rejected when an anomaly action is neither alert nor block', () => {
    const text = `${BASE}alerts:\n  anomaly:\n    action:\n      free: ban\n`;
    assert.match(
      rejectionOf(text),
      /^policy\.yaml:35:\d+ alerts\.anomaly\.action\.free: expected one of: alert, block/,
    );
  });

  test('is rejected at the line of an anomaly factor of 1 or less', () => {
    const text = `${BASE}alerts:\n  anomaly:\n    factor: 1\n`;
    assert.match(
      rejectionOf(text),
      /^policy\.yaml:34:\d+ alerts\.anomaly\.factor: expected a number above 1/,
    );
  });
});
