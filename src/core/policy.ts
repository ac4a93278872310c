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
}
