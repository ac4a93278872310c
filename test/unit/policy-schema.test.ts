import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { LimitSpec, Policy, TierSpec } from '../../src/core/policy.js';
import { loadPolicyFile, parsePolicy } from '../../src/policy/load.js';
import { PolicyError } from '../../src/policy/policy-error.js';

const repoRoot = new URL('../../../', import.meta.url);
const shippedPolicyPath = fileURLToPath(new URL('config/policy.yaml', repoRoot));

// Line numbers in the expectations below count from the first line of this text.
const VALID = `version: 1
timezone: UTC
models:
  gpt-4o-mini:
    input_per_million: "0.15"
    output_per_million: "0.60"
    aliases: [gpt-4o-mini-2024-07-18]
  gpt-4o:
    input_per_million: 2.5
    output_per_million: 10
tiers:
  free:
    models: [gpt-4o-mini]
    max_output_tokens: 500
    limits:
      - name: requests_per_minute
        type: rate
        unit: requests
        limit: 10
        window: 1m
`;

/** VALID with one more limit appended to the free tier; its first key is on line 21. */
function withSecondLimit(limitYaml: string): string {
  const indented = limitYaml
    .trim()
    .split('\n')
    .map((line, index) => (index === 0 ? `      - ${line}` : `        ${line}`))
    .join('\n');
  return `${VALID}${indented}\n`;
}

function rejectionOf(text: string): PolicyError {
  try {
    parsePolicy(text, 'policy.yaml');
  } catch (error) {
    assert.ok(error instanceof PolicyError, `expected a PolicyError, got ${String(error)}`);
    return error;
  }
  assert.fail('the policy was accepted');
}

function firstLine(error: Error): string {
  return error.message.split('\n')[0] ?? '';
}

function tierOf(policy: Policy, name: string): TierSpec {
  const tier = policy.tiers.get(name);
  assert.ok(tier, `tier ${name} is missing`);
  return tier;
}

function limitOf(policy: Policy, tierName: string, limitName: string): LimitSpec {
  const limit = tierOf(policy, tierName).limits.find((spec) => spec.name === limitName);
  assert.ok(limit, `limit ${tierName}.${limitName} is missing`);
  return limit;
}

/** The numbers an operator reads off a tier, for comparing whole tiers at once. */
function seedNumbers(policy: Policy, tierName: string) {
  const tier = tierOf(policy, tierName);
  return {
    maxOutputTokens: tier.maxOutputTokens,
    maxInputTokens: tier.maxInputTokens,
    limits: Object.fromEntries(
      tier.limits.map((spec) => [
        spec.name,
        `${spec.kind} ${spec.limit} ${spec.unit} ${spec.kind === 'rate' ? `${spec.windowMs}ms` : spec.period} ${spec.onStoreFailure}`,
      ]),
    ),
  };
}

describe('the shipped config/policy.yaml', async () => {
  const policy = await loadPolicyFile(shippedPolicyPath);

  test('gives the free tier 10 rpm, 4,000 tpm, 10,000 tokens and $1 a day, 2 concurrent, 500/8,000 caps', () => {
    assert.deepEqual(seedNumbers(policy, 'free'), {
      maxOutputTokens: 500,
      maxInputTokens: 3000,
      limits: {
        requests_per_minute: 'rate 10 requests 60000ms local',
        tokens_per_minute: 'rate 4000 tokens 60000ms local',
        tokens_per_day: 'budget 10000 tokens day closed',
        spend_per_day: 'budget 1000000 usd_micros day closed',
        concurrent_requests: 'concurrency 2 concurrent day open',
      },
    });
  });

  test('gives the pro tier 60 rpm, 40,000 tpm, 100,000 tokens and $50 a day, 10 concurrent, 4,000/32,000 caps', () => {
    assert.deepEqual(seedNumbers(policy, 'pro'), {
      maxOutputTokens: 4000,
      maxInputTokens: 32000,
      limits: {
        requests_per_minute: 'rate 60 requests 60000ms local',
        tokens_per_minute: 'rate 40000 tokens 60000ms local',
        tokens_per_day: 'budget 100000 tokens day closed',
        spend_per_day: 'budget 50000000 usd_micros day closed',
        concurrent_requests: 'concurrency 10 concurrent day open',
      },
    });
  });

  test('gives the enterprise tier 300 rpm, 400,000 tpm, 1,000,000 tokens and $500 a day, 50 concurrent', () => {
    assert.deepEqual(seedNumbers(policy, 'enterprise'), {
      maxOutputTokens: 8000,
      maxInputTokens: 128000,
      limits: {
        requests_per_minute: 'rate 300 requests 60000ms local',
        tokens_per_minute: 'rate 400000 tokens 60000ms local',
        tokens_per_day: 'budget 1000000 tokens day closed',
        spend_per_day: 'budget 500000000 usd_micros day closed',
        concurrent_requests: 'concurrency 50 concurrent day open',
      },
    });
  });

  test('limits the free tier to the four small models and lets pro and enterprise use every model', () => {
    const allowed = {
      free: [...(tierOf(policy, 'free').models ?? [])].sort(),
      pro: tierOf(policy, 'pro').models,
      enterprise: tierOf(policy, 'enterprise').models,
    };
    assert.deepEqual(allowed, {
      free: ['gpt-4.1-mini', 'gpt-4.1-nano', 'gpt-4o-mini', 'text-embedding-3-small'],
      pro: undefined,
      enterprise: undefined,
    });
  });

  test('prices gpt-4o at $2.50 in and $10.00 out per million tokens, in micro-dollars', () => {
    const model = policy.models.get('gpt-4o');
    assert.deepEqual(model, {
      name: 'gpt-4o',
      inputMicrosPerMillion: 2_500_000,
      outputMicrosPerMillion: 10_000_000,
    });
  });

  test('sets the reservation lease to 10m, the idempotency window to 1h, one replica, UTC', () => {
    const { timeZone, leaseMs, idempotencyWindowMs, replicas } = policy;
    assert.deepEqual(
      { timeZone, leaseMs, idempotencyWindowMs, replicas },
      { timeZone: 'UTC', leaseMs: 600_000, idempotencyWindowMs: 3_600_000, replicas: 1 },
    );
  });
});

describe('parsePolicy maps the file to the core Policy', () => {
  test('an alias resolves to the very same model as its canonical name', () => {
    const policy = parsePolicy(VALID, 'policy.yaml');
    assert.equal(policy.models.get('gpt-4o-mini-2024-07-18'), policy.models.get('gpt-4o-mini'));
  });

  test('"0.15" dollars per million becomes exactly 150000 micro-dollars', () => {
    const policy = parsePolicy(VALID, 'policy.yaml');
    assert.equal(policy.models.get('gpt-4o-mini')?.inputMicrosPerMillion, 150_000);
  });

  test('a price written as a YAML number (2.5) is read as the same exact decimal', () => {
    const policy = parsePolicy(VALID, 'policy.yaml');
    assert.equal(policy.models.get('gpt-4o')?.inputMicrosPerMillion, 2_500_000);
  });

  test('a tier naming a model by its alias is allowed the canonical model', () => {
    const policy = parsePolicy(
      VALID.replace('models: [gpt-4o-mini]', 'models: [gpt-4o-mini-2024-07-18]'),
      'p',
    );
    assert.deepEqual(tierOf(policy, 'free').models, new Set(['gpt-4o-mini']));
  });

  test('a tier with models "*" allows every model (undefined)', () => {
    const policy = parsePolicy(VALID.replace('models: [gpt-4o-mini]', 'models: "*"'), 'policy.yaml');
    assert.equal(tierOf(policy, 'free').models, undefined);
  });

  test('omitted reservation, replicas and max_input_tokens take their defaults', () => {
    const policy = parsePolicy(VALID, 'policy.yaml');
    const { leaseMs, idempotencyWindowMs, replicas } = policy;
    assert.deepEqual(
      { leaseMs, idempotencyWindowMs, replicas, maxInputTokens: tierOf(policy, 'free').maxInputTokens },
      { leaseMs: 600_000, idempotencyWindowMs: 3_600_000, replicas: 1, maxInputTokens: 0 },
    );
  });

  test('a rate limit on requests becomes kind rate, unit requests, measure requests, with its window', () => {
    const spec = limitOf(parsePolicy(VALID, 'policy.yaml'), 'free', 'requests_per_minute');
    assert.deepEqual(spec, {
      name: 'requests_per_minute',
      kind: 'rate',
      unit: 'requests',
      measure: 'requests',
      limit: 10,
      windowMs: 60_000,
      period: 'day',
      timeZone: 'UTC',
      scope: 'subject',
      shadow: false,
      onStoreFailure: 'closed',
    });
  });

  test('a token budget counting input, per org, in shadow, keeps its own time zone and period', () => {
    const text = withSecondLimit(`name: input_per_week
type: budget
unit: tokens
count: input
limit: 5000
period: week
timezone: Europe/Berlin
per: org
shadow: true
on_store_failure: open`);
    const spec = limitOf(parsePolicy(text, 'policy.yaml'), 'free', 'input_per_week');
    assert.deepEqual(spec, {
      name: 'input_per_week',
      kind: 'budget',
      unit: 'tokens',
      measure: 'input',
      limit: 5000,
      windowMs: 0,
      period: 'week',
      timeZone: 'Europe/Berlin',
      scope: 'org',
      shadow: true,
      onStoreFailure: 'open',
    });
  });

  test('a usd budget without a time zone takes the policy time zone and counts micro-dollars', () => {
    const text = withSecondLimit(`name: spend_per_month
type: budget
unit: usd
limit: "12.345678"
period: month`).replace('timezone: UTC', 'timezone: America/New_York');
    const spec = limitOf(parsePolicy(text, 'policy.yaml'), 'free', 'spend_per_month');
    const { unit, measure, limit, timeZone } = spec;
    assert.deepEqual(
      { unit, measure, limit, timeZone },
      { unit: 'usd_micros', measure: 'usd', limit: 12_345_678, timeZone: 'America/New_York' },
    );
  });

  test('a concurrency limit becomes unit concurrent, measured by lease', () => {
    const text = withSecondLimit(`name: in_flight
type: concurrency
limit: 3`);
    const { kind, unit, measure, limit, windowMs } = limitOf(parsePolicy(text, 'p'), 'free', 'in_flight');
    assert.deepEqual(
      { kind, unit, measure, limit, windowMs },
      { kind: 'concurrency', unit: 'concurrent', measure: 'lease', limit: 3, windowMs: 0 },
    );
  });
});

describe('parsePolicy rejects a malformed policy, naming the file, line:column, path and reason', () => {
  test('a window that is not a duration', () => {
    const error = rejectionOf(
      withSecondLimit(`name: tokens_per_minute
type: rate
unit: tokens
limit: 100
window: 1 minute`),
    );
    assert.equal(
      firstLine(error),
      'policy.yaml:25:17 tiers.free.limits[1].window: expected a duration like 30s, 1m, 24h',
    );
  });

  test('a rate window longer than a day', () => {
    const error = rejectionOf(VALID.replace('window: 1m', 'window: 2d'));
    assert.equal(
      firstLine(error),
      'policy.yaml:20:17 tiers.free.limits[0].window: expected a window between 1s and 1d',
    );
  });

  test('an unknown key, pointing at the key itself', () => {
    const error = rejectionOf(VALID.replace('        window: 1m', '        window: 1m\n        windw: 2m'));
    assert.match(
      firstLine(error),
      /^policy\.yaml:21:9 tiers\.free\.limits\[0\]\.windw: unknown key; expected one of: /,
    );
  });

  test('a limit name used twice in one tier', () => {
    const error = rejectionOf(
      withSecondLimit(`name: requests_per_minute
type: concurrency
limit: 1`),
    );
    assert.equal(
      firstLine(error),
      'policy.yaml:21:15 tiers.free.limits[1].name: duplicate limit name "requests_per_minute" in this tier',
    );
  });

  test('a tier model that no model or alias defines', () => {
    const error = rejectionOf(VALID.replace('models: [gpt-4o-mini]', 'models: [gpt-4o-mini, gpt-5]'));
    assert.equal(
      firstLine(error),
      'policy.yaml:13:27 tiers.free.models[1]: unknown model "gpt-5"; define it under models',
    );
  });

  test('an alias that already names another model', () => {
    const error = rejectionOf(
      VALID.replace('output_per_million: 10', 'output_per_million: 10\n    aliases: [gpt-4o-mini]'),
    );
    assert.equal(
      firstLine(error),
      'policy.yaml:11:15 models.gpt-4o.aliases[0]: "gpt-4o-mini" already names model "gpt-4o-mini"',
    );
  });

  test('a time zone the runtime does not know', () => {
    const error = rejectionOf(VALID.replace('timezone: UTC', 'timezone: Mars/Olympus_Mons'));
    assert.equal(
      firstLine(error),
      'policy.yaml:2:11 timezone: expected an IANA time zone like UTC or Europe/Berlin',
    );
  });

  test('a dollar amount with 7 decimals, which micro-dollars cannot hold exactly', () => {
    const error = rejectionOf(VALID.replace('"0.15"', '"0.1500001"'));
    assert.equal(
      firstLine(error),
      'policy.yaml:5:24 models.gpt-4o-mini.input_per_million: expected a dollar amount with at most 6 decimals, like "2.50"',
    );
  });

  test('a rate limit whose limit × window exceeds 2^50', () => {
    const error = rejectionOf(VALID.replace('limit: 10\n', 'limit: 20000000000\n'));
    assert.match(
      firstLine(error),
      /^policy\.yaml:19:16 tiers\.free\.limits\[0\]\.limit: limit × window .* is above 2\^50/,
    );
  });

  test('an output cap above 10,000,000 tokens, which no request could be checked against', () => {
    const error = rejectionOf(VALID.replace('max_output_tokens: 500', 'max_output_tokens: 4294967297'));
    assert.equal(
      firstLine(error),
      'policy.yaml:14:24 tiers.free.max_output_tokens: expected an integer <= 10000000',
    );
  });

  test('a missing required key, at the line of the mapping that lacks it', () => {
    const error = rejectionOf(VALID.replace('    max_output_tokens: 500\n', ''));
    assert.equal(firstLine(error), 'policy.yaml:12:3 tiers.free.max_output_tokens: required');
  });

  test('a key that belongs to another limit type', () => {
    const error = rejectionOf(VALID.replace('window: 1m', 'window: 1m\n        period: day'));
    assert.equal(
      firstLine(error),
      'policy.yaml:21:17 tiers.free.limits[0].period: only budget limits have a period and time zone',
    );
  });

  test('every problem is listed, one a line, in file order', () => {
    const text = VALID.replace('timezone: UTC', 'timezone: Nowhere').replace('window: 1m', 'window: soon');
    assert.deepEqual(
      rejectionOf(text).problems.map((problem) => `${problem.line} ${problem.path}`),
      ['2 timezone', '20 tiers.free.limits[0].window'],
    );
  });

  test('a YAML syntax error, at its line', () => {
    const error = rejectionOf(VALID.replace('    models: [gpt-4o-mini]', '    models: [gpt-4o-mini'));
    assert.match(firstLine(error), /^policy\.yaml:14:\d+ YAML syntax: /);
  });

  test('an unreadable file, naming the file', async () => {
    await assert.rejects(loadPolicyFile('/nonexistent/policy.yaml'), (error: unknown) => {
      assert.ok(error instanceof PolicyError);
      assert.match(error.message, /^\/nonexistent\/policy\.yaml cannot read the policy file: ENOENT/);
      return true;
    });
  });
});
