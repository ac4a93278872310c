import type { LimitSpec, ModelSpec, Policy, TierSpec } from '../src/core/policy.js';

/** A limit with the defaults a test does not care about. */
export function limit(spec: Partial<LimitSpec> & Pick<LimitSpec, 'name' | 'kind' | 'limit'>): LimitSpec {
  const unit = spec.unit ?? (spec.kind === 'concurrency' ? 'concurrent' : 'requests');
  const measure =
    spec.measure ??
    (unit === 'requests'
      ? 'requests'
      : unit === 'concurrent'
        ? 'lease'
        : unit === 'usd_micros'
          ? 'usd'
          : 'total');
  return {
    unit,
    measure,
    windowMs: 60_000,
    period: 'day',
    timeZone: 'UTC',
    scope: 'subject',
    shadow: false,
    onStoreFailure: 'closed',
    ...spec,
  };
}

/** gpt-test costs $1 per million input tokens and $2 per million output tokens: 1 and 2 micro-dollars a token. */
export const TEST_MODEL: ModelSpec = {
  name: 'gpt-test',
  inputMicrosPerMillion: 1_000_000,
  outputMicrosPerMillion: 2_000_000,
};
export const OTHER_MODEL: ModelSpec = {
  name: 'gpt-other',
  inputMicrosPerMillion: 1_000_000,
  outputMicrosPerMillion: 1_000_000,
};

export function tier(name: string, limits: LimitSpec[], extra: Partial<TierSpec> = {}): TierSpec {
  return { name, models: undefined, maxOutputTokens: 1_000, maxInputTokens: 0, limits, ...extra };
}

export function policyWith(tiers: TierSpec[], extra: Partial<Policy> = {}): Policy {
  return {
    timeZone: 'UTC',
    leaseMs: 600_000,
    idempotencyWindowMs: 3_600_000,
    replicas: 1,
    models: new Map([
      [TEST_MODEL.name, TEST_MODEL],
      ['gpt-test-alias', TEST_MODEL],
      [OTHER_MODEL.name, OTHER_MODEL],
    ]),
    tiers: new Map(tiers.map((t) => [t.name, t])),
    ...extra,
  };
}
