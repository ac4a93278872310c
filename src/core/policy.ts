import type { CalendarPeriod } from './calendar.js';
import type { ModelPrice } from './money.js';

export type LimitKind = 'rate' | 'budget' | 'concurrency';

/** What a limit counts. */
export type LimitUnit = 'requests' | 'tokens' | 'usd_micros' | 'concurrent';

/**
 * Which amount of a request a limit is charged: one request, input/output/total tokens, its price, or a
 * lease (one in-flight slot).
 */
export type Measure = 'requests' | 'input' | 'output' | 'total' | 'usd' | 'lease';

/** What a limit does when the shared store cannot be reached. */
export type StoreFailureMode = 'open' | 'closed' | 'local';

/** Whose counter a limit uses: each subject's own, or one shared by the whole org. */
export type LimitScope = 'subject' | 'org';

export interface LimitSpec {
  /** Unique within its tier; also part of the counter's identity. */
  name: string;
  kind: LimitKind;
  unit: LimitUnit;
  measure: Measure;
  /** The most admitted: requests, tokens, micro-dollars or concurrent requests. */
  limit: number;
  /** rate: the sliding window's length. */
  windowMs: number;
  /** budget: the calendar period and the time zone its boundaries fall in. */
  period: CalendarPeriod;
  timeZone: string;
  scope: LimitScope;
  /** Decide, count and report, but never deny. */
  shadow: boolean;
  onStoreFailure: StoreFailureMode;
  /**
   * budget limits: the fractions of `limit` whose crossing raises a `budget.threshold` event, ascending
   * (the limit's own `alert_thresholds`, else the policy's `alerts.budget_thresholds`). Empty or absent: none.
   */
  alertThresholds?: readonly number[];
}

export interface TierSpec {
  name: string;
  /** Canonical model names this tier may use; undefined allows every model in the policy. */
  models: ReadonlySet<string> | undefined;
  maxOutputTokens: number;
  /** 0 when the tier sets no cap. */
  maxInputTokens: number;
  limits: readonly LimitSpec[];
}

export interface ModelSpec extends ModelPrice {
  name: string;
}

/** Where events are POSTed, signed with the secret read from `secretEnv`. */
export interface WebhookSpec {
  url: string;
  /** The environment variable holding the HMAC key (never the key itself). */
  secretEnv: string;
  /** How long one POST may take before it counts as failed. */
  timeoutMs: number;
  /** The most POSTs one authority has in flight at once. */
  maxInFlight: number;
  /** How long an event is retried before it is kept as dead. */
  retryForMs: number;
}

/** What an anomaly does to the principal's checks during its cool-down. */
export type AnomalyAction = 'alert' | 'block';

/**
 * Usage anomalies: a principal's request and token rate per `intervalMs`, against its own decayed average
 * of past intervals. An interval above `factor` × that average (and above the minimums) is an anomaly.
 */
export interface AnomalySpec {
  factor: number;
  intervalMs: number;
  /** After this long the weight of past intervals in the average halves. */
  halfLifeMs: number;
  /** The baseline must have seen this much of the principal's traffic before anything counts as unusual. */
  minHistoryMs: number;
  /** An interval below these counts is never an anomaly, whatever the baseline. */
  minRequests: number;
  minTokens: number;
  /** At most one event per principal in this long; a `block` lasts this long. */
  cooldownMs: number;
  /** Per tier; tiers not named alert only. */
  actions: ReadonlyMap<string, AnomalyAction>;
}

export interface AlertsSpec {
  /** The default fractions for every budget limit (already folded into each LimitSpec). */
  budgetThresholds: readonly number[];
  /** Undefined: events are recorded and listed, not delivered. */
  webhook: WebhookSpec | undefined;
  /** Undefined: no anomaly detection. */
  anomaly: AnomalySpec | undefined;
}

/** A validated policy, as the decision logic sees it. */
export interface Policy {
  /** Default time zone of calendar budgets. */
  timeZone: string;
  /** How long a reservation holds its concurrency lease before it expires unsettled. */
  leaseMs: number;
  /** How long a decided or settled request_id is remembered, so retries are recognised. */
  idempotencyWindowMs: number;
  /** How many authority replicas share the limits; `local` fallbacks allow limit ÷ replicas each. */
  replicas: number;
  /** Canonical names and aliases, each to its model. */
  models: ReadonlyMap<string, ModelSpec>;
  tiers: ReadonlyMap<string, TierSpec>;
  /** Spend alerts and anomaly detection; absent: none. */
  alerts?: AlertsSpec;
}
