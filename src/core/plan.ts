import type { CalendarPeriod, PeriodBounds } from './calendar.js';
import { InvalidArgumentError } from './errors.js';
import { limitsWithOverrides, type LimitOverrides } from './limit-overrides.js';
import { costMicros } from './money.js';
import type { LimitSpec, ModelSpec, Policy, TierSpec } from './policy.js';
import type { ActualUsage, PlannedLimit, Principal, SettleOutcome } from './quota.js';
import { measuredAmount } from './quota.js';

/** Supplies calendar boundaries around the authority's now (cached; see PeriodBoundsCache). */
export type BoundsAt = (period: CalendarPeriod, timeZone: string) => PeriodBounds;

export type RejectionCode = 'UNKNOWN_TIER' | 'MODEL_NOT_ALLOWED' | 'UNKNOWN_MODEL' | 'REQUEST_TOO_LARGE';

export interface CheckRequest {
  principal: Principal;
  model: string;
  inputTokens: number;
  /** 0 reserves the tier's cap. */
  maxOutputTokens: number;
  /** The request produces no output (embeddings): reserve none. */
  noOutput?: boolean;
  /** The API key's own amounts for some of the tier's limits. */
  overrides?: LimitOverrides;
}

/** Refused by the policy alone, before any store is asked. Nothing is charged. */
export interface Rejection {
  kind: 'rejected';
  code: RejectionCode;
  reason: string;
  tier: TierSpec | undefined;
  model: string;
}

/** What the store must decide: every applicable limit with this request's cost. */
export interface CheckPlan {
  kind: 'plan';
  tier: TierSpec;
  model: ModelSpec;
  outputAllowance: number;
  reservedTokens: number;
  reservedMicros: number;
  limits: PlannedLimit[];
}

function plannedLimit(spec: LimitSpec, cost: number, boundsAt: BoundsAt): PlannedLimit {
  return spec.kind === 'budget'
    ? { spec, cost, bounds: boundsAt(spec.period, spec.timeZone) }
    : { spec, cost };
}

/** Applies the policy to a check: resolves tier and model, enforces request caps, prices the estimate. */
export function planCheck(policy: Policy, request: CheckRequest, boundsAt: BoundsAt): CheckPlan | Rejection {
  const tier = policy.tiers.get(request.principal.tier);
  if (!tier) {
    const reason = `tier '${request.principal.tier}' is not in the policy`;
    return { kind: 'rejected', code: 'UNKNOWN_TIER', reason, tier, model: request.model };
  }
  const model = policy.models.get(request.model);
  if (!model) {
    const reason = `model '${request.model}' is not in the policy`;
    return { kind: 'rejected', code: 'UNKNOWN_MODEL', reason, tier, model: request.model };
  }
  if (tier.models && !tier.models.has(model.name)) {
    const reason = `tier '${tier.name}' may not use model '${model.name}'`;
    return { kind: 'rejected', code: 'MODEL_NOT_ALLOWED', reason, tier, model: model.name };
  }
  const tooLarge = (reason: string): Rejection => ({
    kind: 'rejected',
    code: 'REQUEST_TOO_LARGE',
    reason,
    tier,
    model: model.name,
  });
  if (request.maxOutputTokens > tier.maxOutputTokens) {
    return tooLarge(
      `max_output_tokens ${request.maxOutputTokens} is above tier '${tier.name}' cap of ${tier.maxOutputTokens}`,
    );
  }
  if (tier.maxInputTokens > 0 && request.inputTokens > tier.maxInputTokens) {
    return tooLarge(
      `input_tokens ${request.inputTokens} is above tier '${tier.name}' cap of ${tier.maxInputTokens}`,
    );
  }
  const outputAllowance = request.noOutput ? 0 : request.maxOutputTokens || tier.maxOutputTokens;
  const estimate: ActualUsage = {
    inputTokens: request.inputTokens,
    outputTokens: outputAllowance,
    usdMicros: costMicros(model, request.inputTokens, outputAllowance),
  };
  const limits: PlannedLimit[] = [];
  for (const spec of limitsWithOverrides(tier, request.overrides)) {
    const cost = spec.measure === 'lease' ? 1 : measuredAmount(spec.measure, estimate, 'completed');
    if (cost > spec.limit && !spec.shadow) {
      return tooLarge(
        `the request needs ${cost} ${unitWords(spec)} but limit '${spec.name}' allows at most ${spec.limit}`,
      );
    }
    limits.push(plannedLimit(spec, cost, boundsAt));
  }
  return {
    kind: 'plan',
    tier,
    model,
    outputAllowance,
    reservedTokens: estimate.inputTokens + estimate.outputTokens,
    reservedMicros: estimate.usdMicros,
    limits,
  };
}

/** Settling and reporting need the tier's limits; an unknown tier there is the caller's error. */
function requireTier(policy: Policy, principal: Principal): TierSpec {
  const tier = policy.tiers.get(principal.tier);
  if (!tier)
    throw new InvalidArgumentError('principal.tier', `tier '${principal.tier}' is not in the policy`);
  return tier;
}

/** The principal's limits, each costed at a real usage (for settlement and direct charges). */
export function planSettle(
  policy: Policy,
  principal: Principal,
  modelName: string,
  usage: { inputTokens: number; outputTokens: number },
  outcome: SettleOutcome,
  boundsAt: BoundsAt,
  overrides?: LimitOverrides,
): { limits: PlannedLimit[]; actual: ActualUsage } {
  const tier = requireTier(policy, principal);
  const model = policy.models.get(modelName);
  if (!model) throw new InvalidArgumentError('model', `model '${modelName}' is not in the policy`);
  const actual: ActualUsage = {
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    usdMicros: costMicros(model, usage.inputTokens, usage.outputTokens),
  };
  const limits = limitsWithOverrides(tier, overrides).map((spec) =>
    plannedLimit(spec, measuredAmount(spec.measure, actual, outcome), boundsAt),
  );
  return { limits, actual };
}

/** The principal's limits with nothing charged, to report usage. */
export function planPeek(
  policy: Policy,
  principal: Principal,
  boundsAt: BoundsAt,
  overrides?: LimitOverrides,
): PlannedLimit[] {
  return limitsWithOverrides(requireTier(policy, principal), overrides).map((spec) =>
    plannedLimit(spec, 0, boundsAt),
  );
}

export function unitWords(spec: LimitSpec): string {
  switch (spec.unit) {
    case 'requests':
      return 'requests';
    case 'tokens':
      return spec.measure === 'total' ? 'tokens' : `${spec.measure} tokens`;
    case 'usd_micros':
      return 'micro-dollars';
    case 'concurrent':
      return 'concurrent requests';
  }
}
