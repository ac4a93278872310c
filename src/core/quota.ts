import type { EventContext, RaisedEvent } from './alerts.js';
import type { PeriodBounds } from './calendar.js';
import type { LimitSpec } from './policy.js';

/**
 * The most tokens one request may count in any field. Above it a count cannot be a real request (the
 * largest contexts are ~1M tokens), and prices times tokens could leave exact integers.
 */
export const MAX_TOKENS = 10_000_000;

/** Who is charged. The org is the unit of co-location: all of its counters live together. */
export interface Principal {
  subject: string;
  org: string;
  tier: string;
}

/** A limit as one request meets it: what it would be charged, and for budgets the calendar around now. */
export interface PlannedLimit {
  spec: LimitSpec;
  /** What this request charges the limit (0 when only looking). */
  cost: number;
  /** budget limits only. */
  bounds?: PeriodBounds;
}

/** What a store reports of one limit, in the order of the command's limits. */
export interface LimitState {
  used: number;
  remaining: number;
  resetAfterMs: number;
  /** This charge would break the limit (or, when only looking, the limit is already past). */
  exceeded: boolean;
  /** When exceeded: how long until this charge would fit. */
  retryAfterMs: number;
  /** budget limits: the period charged. */
  periodStartMs: number;
  periodEndMs: number;
  /**
   * budget limits: how much of `used` is reserved by requests still in flight (their leases not all
   * ended), which their settlements turn into spending or give back. 0 for other kinds.
   */
  reserved: number;
  /** Exceeded only because of `reserved`: what is spent leaves room, so it fits once they settle. */
  held: boolean;
}

/**
 * - `reserve`: check every limit, then charge all of them or none, and remember the request_id.
 * - `dry`: check and report only.
 * - `peek`: report only, charging nothing (costs are ignored).
 */
export type ReserveMode = 'reserve' | 'dry' | 'peek';

export interface ReserveCommand {
  principal: Principal;
  requestId: string;
  mode: ReserveMode;
  leaseMs: number;
  idempotencyWindowMs: number;
  /** Reported back with the reservation. */
  reservedTokens: number;
  reservedMicros: number;
  limits: readonly PlannedLimit[];
  /**
   * In `reserve` mode: a time (Unix ms, the real clock) after which nothing may be reserved any more,
   * because the caller has stopped waiting. A store that gets to the command later answers `expired`
   * and charges nothing, so a check answered by a failure policy leaves no reservation behind. 0: none.
   */
  deadlineMs: number;
  /** When alerts are on: budget thresholds this charge crosses raise events (see core/alerts.ts). */
  events?: EventContext;
  /**
   * A signed request's nonce (already verified): in `reserve` mode, a nonce this subject used before makes
   * the outcome `replayed` and charges nothing; an admitted request consumes it for `ttlMs`.
   */
  nonce?: { value: string; ttlMs: number };
}

export interface ReserveResult {
  /**
   * `duplicate`: the request_id was admitted before; nothing was charged now. `expired`: the command
   * reached the store after its deadline; nothing was judged or charged (the limits report zeros).
   */
  outcome: 'admitted' | 'denied' | 'duplicate' | 'expired' | 'replayed';
  /** The store's time of the decision. */
  nowMs: number;
  /** For admitted and duplicate: the reservation (as first made). */
  leaseExpiresAtMs: number;
  reservedTokens: number;
  reservedMicros: number;
  /** Concurrency leases found expired and reclaimed while deciding. */
  expiredLeases: number;
  limits: LimitState[];
  /** Events this command raised (budget thresholds crossed for the first time in their period). */
  raised?: RaisedEvent[];
  /** Denied because the subject is blocked for a usage anomaly: when the block ends (Unix ms). */
  blockedUntilMs?: number;
}

export type SettleOutcome = 'completed' | 'failed' | 'cancelled';

export interface ActualUsage {
  inputTokens: number;
  outputTokens: number;
  usdMicros: number;
}

/**
 * A `failed` settlement with no tokens charges nothing, and frees its request_id: the attempt never
 * reached the model (or never had an answer), so a later check under the same id is decided afresh.
 */
export function chargesNothing(
  outcome: SettleOutcome,
  actual: Pick<ActualUsage, 'inputTokens' | 'outputTokens'>,
): boolean {
  return outcome === 'failed' && actual.inputTokens === 0 && actual.outputTokens === 0;
}

export interface SettleCommand {
  principal: Principal;
  requestId: string;
  outcome: SettleOutcome;
  actual: ActualUsage;
  idempotencyWindowMs: number;
  /**
   * The principal's limits under the current policy, each costed at the actual usage: charged directly
   * when there is no reservation, and reported after settlement in every case.
   */
  limits: readonly PlannedLimit[];
  /** When alerts are on, as for ReserveCommand. */
  events?: EventContext;
}

export interface SettleResult {
  status: 'settled' | 'duplicate' | 'charged_without_reservation';
  /** What this request_id has been charged in all (for duplicates, by the first settlement). */
  charged: ActualUsage;
  /** What the reservation held (zero without one). */
  reserved: { tokens: number; usdMicros: number };
  /** The lease had run out before settlement. */
  late: boolean;
  limits: LimitState[];
  /** Concurrency leases of other requests found expired and reclaimed while reporting. */
  expiredLeases: number;
  /** Events this settlement raised, as for ReserveResult. */
  raised?: RaisedEvent[];
}

/** The amount of a usage a measure counts; requests of a failed call are refunded. */
export function measuredAmount(
  measure: LimitSpec['measure'],
  usage: ActualUsage,
  outcome: SettleOutcome,
): number {
  switch (measure) {
    case 'requests':
      return outcome === 'failed' ? 0 : 1;
    case 'input':
      return usage.inputTokens;
    case 'output':
      return usage.outputTokens;
    case 'total':
      return usage.inputTokens + usage.outputTokens;
    case 'usd':
      return usage.usdMicros;
    case 'lease':
      return 0;
  }
}
