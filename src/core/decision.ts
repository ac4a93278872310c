import { formatDuration } from './duration.js';
import { formatUsd } from './money.js';
import type { LimitSpec } from './policy.js';
import { unitWords, type CheckPlan, type Rejection } from './plan.js';
import type { LimitState, PlannedLimit, ReserveResult } from './quota.js';

export type DecisionCode =
  | 'OK'
  | 'OVER_LIMIT'
  | 'UNKNOWN_TIER'
  | 'MODEL_NOT_ALLOWED'
  | 'UNKNOWN_MODEL'
  | 'REQUEST_TOO_LARGE'
  | 'STORE_UNAVAILABLE'
  | 'INVALID_KEY'
  | 'KEY_REVOKED'
  | 'KEY_EXPIRED'
  | 'SIGNATURE_REQUIRED'
  | 'INVALID_SIGNATURE'
  | 'SIGNATURE_EXPIRED'
  | 'REPLAYED_REQUEST';

/** Why a signed (or unsigned) request of a key with signing on was refused. Nothing is charged. */
export type SignatureRefusal = Extract<
  DecisionCode,
  'SIGNATURE_REQUIRED' | 'INVALID_SIGNATURE' | 'SIGNATURE_EXPIRED' | 'REPLAYED_REQUEST'
>;

/** The API key a decision resolved: never its secret or hash. */
export interface KeyIdentity {
  id: string;
  org: string;
  tier: string;
  /** When the key, or this secret of it, stops working; 0 when never. */
  expiresAtMs: number;
}

/** One limit as reported to the caller: its policy and its state. */
export interface LimitReport extends LimitState {
  spec: LimitSpec;
}

/** The answer to a CheckQuota, independent of the wire format. */
export interface Decision {
  allowed: boolean;
  code: DecisionCode;
  reason: string;
  retryAfterMs: number;
  limits: LimitReport[];
  reservation: { expiresAtMs: number; tokens: number; usdMicros: number } | undefined;
  maxOutputTokens: number;
  degraded: boolean;
  duplicate: boolean;
  model: string;
  /** The limits that denied (not shadow), for metrics and logs. */
  deniedBy: string[];
  /** Shadow limits that would have denied. */
  shadowExceeded: string[];
  /** The API key that asked, when the credential was one. */
  key: KeyIdentity | undefined;
  /** For the caller to pass on (a key near expiry); empty when none. */
  warning: string;
}

/** An API key that may not be used (unknown, revoked or expired), or a request it did not sign right. Nothing is charged. */
export function keyRefusalDecision(
  code: 'INVALID_KEY' | 'KEY_REVOKED' | 'KEY_EXPIRED' | SignatureRefusal,
  reason: string,
  key: KeyIdentity | undefined,
): Decision {
  return {
    allowed: false,
    code,
    reason,
    retryAfterMs: 0,
    limits: [],
    reservation: undefined,
    maxOutputTokens: 0,
    degraded: false,
    duplicate: false,
    model: '',
    deniedBy: [],
    shadowExceeded: [],
    key,
    warning: '',
  };
}

export function rejectionDecision(rejection: Rejection): Decision {
  return {
    allowed: false,
    code: rejection.code,
    reason: rejection.reason,
    retryAfterMs: 0,
    limits: [],
    reservation: undefined,
    maxOutputTokens: rejection.tier?.maxOutputTokens ?? 0,
    degraded: false,
    duplicate: false,
    model: rejection.model,
    deniedBy: [],
    shadowExceeded: [],
    key: undefined,
    warning: '',
  };
}

export function reportLimits(limits: readonly PlannedLimit[], states: readonly LimitState[]): LimitReport[] {
  return limits.map((planned, i) => ({ ...(states[i] as LimitState), spec: planned.spec }));
}

function amount(spec: LimitSpec, value: number): string {
  return spec.unit === 'usd_micros' ? formatUsd(value) : `${value} ${unitWords(spec)}`;
}

function denialReason(report: LimitReport): string {
  const { spec } = report;
  const retry = `retry in ${formatDuration(report.retryAfterMs)}`;
  if (report.held) {
    const spent = amount(spec, report.used - report.reserved);
    const held = `${amount(spec, report.reserved)} of ${amount(spec, spec.limit)} is reserved by requests in flight`;
    return `limit '${spec.name}' is held by requests in flight, not spent: ${held} (${spent} spent), ${retry}`;
  }
  const left = `${amount(spec, report.remaining)} of ${amount(spec, spec.limit)} left`;
  return `limit '${spec.name}' exceeded: ${left}, ${retry}`;
}

/** What a denial by a `block` anomaly names as its limit (in deniedBy, metrics and logs). */
export const USAGE_ANOMALY = 'usage_anomaly';

/** Turns a store's verdict on a plan into the answer. */
export function storeDecision(plan: CheckPlan, result: ReserveResult, degraded = false): Decision {
  const limits = reportLimits(plan.limits, result.limits);
  const denying = limits.filter((report) => report.exceeded && !report.spec.shadow);
  const shadowExceeded = limits
    .filter((report) => report.exceeded && report.spec.shadow)
    .map((r) => r.spec.name);
  const base = {
    limits,
    maxOutputTokens: plan.tier.maxOutputTokens,
    degraded,
    model: plan.model.name,
    shadowExceeded,
    key: undefined,
    warning: '',
  };
  if (result.outcome === 'denied' && result.blockedUntilMs !== undefined) {
    const retryAfterMs = Math.max(0, result.blockedUntilMs - result.nowMs);
    return {
      ...base,
      allowed: false,
      code: 'OVER_LIMIT',
      reason: `usage anomaly: this caller's usage rose far above its own baseline and it is blocked for the cool-down, retry in ${formatDuration(retryAfterMs)}`,
      retryAfterMs,
      reservation: undefined,
      duplicate: false,
      deniedBy: [USAGE_ANOMALY],
    };
  }
  if (result.outcome === 'denied') {
    return {
      ...base,
      allowed: false,
      code: 'OVER_LIMIT',
      reason: denying.map(denialReason).join('; '),
      retryAfterMs: Math.max(0, ...denying.map((report) => report.retryAfterMs)),
      reservation: undefined,
      duplicate: false,
      deniedBy: denying.map((report) => report.spec.name),
    };
  }
  const reservation =
    result.leaseExpiresAtMs > 0
      ? {
          expiresAtMs: result.leaseExpiresAtMs,
          tokens: result.reservedTokens,
          usdMicros: result.reservedMicros,
        }
      : undefined;
  return {
    ...base,
    allowed: true,
    code: 'OK',
    reason: result.outcome === 'duplicate' ? 'already admitted under this request_id' : 'within every limit',
    retryAfterMs: 0,
    reservation,
    duplicate: result.outcome === 'duplicate',
    deniedBy: [],
  };
}

/** Limits whose on_store_failure is `closed` deny while the store is out. */
export function storeUnavailableDecision(plan: CheckPlan, closed: readonly PlannedLimit[]): Decision {
  return {
    allowed: false,
    code: 'STORE_UNAVAILABLE',
    reason: `the quota store is unavailable and limit${closed.length > 1 ? 's' : ''} ${closed
      .map((planned) => `'${planned.spec.name}'`)
      .join(', ')} fail closed`,
    retryAfterMs: 1_000,
    limits: [],
    reservation: undefined,
    maxOutputTokens: plan.tier.maxOutputTokens,
    degraded: true,
    duplicate: false,
    model: plan.model.name,
    deniedBy: closed.map((planned) => planned.spec.name),
    shadowExceeded: [],
    key: undefined,
    warning: '',
  };
}

/**
 * Splits a plan's limits by their on_store_failure, for deciding while the shared store is out. `local`
 * limits are scaled to limit ÷ replicas (at least 1), since each replica then counts alone.
 */
export function partitionForStoreFailure(
  limits: readonly PlannedLimit[],
  replicas: number,
): { closed: PlannedLimit[]; local: PlannedLimit[] } {
  const closed: PlannedLimit[] = [];
  const local: PlannedLimit[] = [];
  for (const planned of limits) {
    if (planned.spec.shadow) continue;
    if (planned.spec.onStoreFailure === 'closed') closed.push(planned);
    else if (planned.spec.onStoreFailure === 'local') {
      const share = Math.max(1, Math.floor(planned.spec.limit / replicas));
      local.push({ ...planned, spec: { ...planned.spec, limit: share } });
    }
  }
  return { closed, local };
}
