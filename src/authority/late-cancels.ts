import { StoreUnavailableError } from '../core/errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics } from '../telemetry/metrics.js';

/** Waits between attempts; the last one repeats until the store confirms. */
const BACKOFF_MS = [50, 100, 250, 500, 1_000, 2_000, 5_000];
/** Cancellations kept waiting for the store at most: past it new ones are dropped (and counted). */
export const MAX_PENDING_CANCELS = 10_000;

export interface LateCancelsOptions {
  metrics: AuthorityMetrics;
  logger: Logger;
  maxPending?: number;
}

/**
 * Cancels reservations that a store made for checks the authority had already answered by a failure
 * policy with a refusal (the store's answer came too late): "a denied request charges nothing" holds
 * then too, without the caller having to know. Each cancellation is idempotent (a settlement that
 * charges nothing) and is retried in the background until the store confirms it.
 */
export class LateCancels {
  readonly #metrics: AuthorityMetrics;
  readonly #logger: Logger;
  readonly #maxPending: number;
  readonly #pending = new Map<string, NodeJS.Timeout | undefined>();
  #closed = false;

  constructor(options: LateCancelsOptions) {
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#maxPending = options.maxPending ?? MAX_PENDING_CANCELS;
  }

  /** Cancellations not yet confirmed by the store. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Starts cancelling `id` (a reservation's key) with `cancel`, unless it is already being cancelled. */
  schedule(id: string, cancel: () => Promise<unknown>): void {
    if (this.#closed || this.#pending.has(id)) return;
    if (this.#pending.size >= this.#maxPending) {
      this.#metrics.lateCancels.inc({ result: 'dropped' });
      this.#logger.warn(
        { pending: this.#pending.size },
        'too many late reservations waiting to be cancelled; this one keeps its estimate until its lease ends',
      );
      return;
    }
    this.#pending.set(id, undefined);
    this.#metrics.lateCancelsPending.set(this.#pending.size);
    this.#attempt(id, cancel, 0);
  }

  #attempt(id: string, cancel: () => Promise<unknown>, attempt: number): void {
    cancel().then(
      () => {
        this.#metrics.lateCancels.inc({ result: 'cancelled' });
        this.#done(id);
      },
      (error: unknown) => {
        if (this.#closed) return;
        if (!(error instanceof StoreUnavailableError)) {
          this.#metrics.lateCancels.inc({ result: 'failed' });
          this.#logger.error({ err: (error as Error).message }, 'could not cancel a late reservation');
          this.#done(id);
          return;
        }
        const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] as number;
        const timer = setTimeout(() => this.#attempt(id, cancel, attempt + 1), delay);
        timer.unref();
        this.#pending.set(id, timer);
      },
    );
  }

  #done(id: string): void {
    this.#pending.delete(id);
    this.#metrics.lateCancelsPending.set(this.#pending.size);
  }

  /** Stops retrying (at shutdown); cancellations still pending are left to their leases. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#pending.values()) clearTimeout(timer);
    if (this.#pending.size > 0) {
      this.#logger.warn(
        { pending: this.#pending.size },
        'stopping with late reservations not yet cancelled; they keep their estimates until their leases end',
      );
    }
    this.#pending.clear();
    this.#metrics.lateCancelsPending.set(0);
  }
}
