import type { Measure } from '../core/policy.js';
import type { ReserveCommand, ReserveResult, SettleCommand, SettleResult } from '../core/quota.js';
import type { EventOutbox } from './event-outbox.js';

/**
 * Where counters, leases and reservations live. Every implementation gives the same answers to the same
 * commands at the same time: the contract suite (test/contract) runs on each.
 *
 * Both operations are atomic: a reserve checks every limit and then charges all or none; a settle moves
 * every counter of a reservation at once. Both are idempotent per (principal, request_id).
 */
export interface QuotaStore {
  readonly kind: 'memory' | 'redis';
  /** Checks, and in `reserve` mode charges, every limit of the command. Rejects with StoreUnavailableError. */
  reserve(command: ReserveCommand): Promise<ReserveResult>;
  /** Settles a reservation with the actual usage, or charges it directly when there is none. */
  settle(command: SettleCommand): Promise<SettleResult>;
  /** Where the events that reserve and settle raise wait for delivery. */
  readonly events: EventOutbox;
  close(): Promise<void>;
}

/** A reservation's charge to one counter, remembered so settlement moves the same bucket. */
export interface RecordedCharge {
  key: string;
  kind: 'rate' | 'budget' | 'concurrency';
  /** rate: the window index; budget: the period start; concurrency: unused. */
  bucket: number;
  amount: number;
  measure: Measure;
}

/** How long a concurrency denial suggests waiting at most: in-flight requests usually finish sooner than their lease. */
export const CONCURRENCY_RETRY_CAP_MS = 1_000;
