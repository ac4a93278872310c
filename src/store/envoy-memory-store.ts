import type { Clock } from '../core/clock.js';
import { StoreFullError } from '../core/errors.js';
import { judgeSlotWindow, rollSlotWindow, type SlotWindowCounts } from '../core/slot-window.js';
import {
  envoyCounterKey,
  envoyReservationKey,
  type EnvoyCounterSpec,
  type EnvoyCounterState,
  type EnvoyRateLimitCommand,
  type EnvoyRateLimitResult,
  type EnvoyRateLimitStore,
} from './envoy-store.js';

interface StoredWindow extends SlotWindowCounts {
  index: number;
}

interface Reservation {
  settled: boolean;
  /** Counter key -> where and how much was charged. */
  charges: Map<string, { index: number; windowMs: number; hits: number }>;
}

type Entry =
  | { type: 'window'; window: StoredWindow; expiresAtMs: number }
  | { type: 'reservation'; reservation: Reservation; expiresAtMs: number };

export interface EnvoyMemoryStoreOptions {
  clock: Clock;
  /** The most counters and reservations held; past it a command is refused with StoreFullError. */
  maxEntries?: number;
  onFull?: () => void;
}

/**
 * Envoy domains' counters in this process: single-instance mode without Redis, and the `local` fallback
 * while Redis is out. The same answers as the Redis script for the same commands at the same time.
 */
export class EnvoyMemoryStore implements EnvoyRateLimitStore {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #maxEntries: number;
  readonly #onFull: () => void;
  readonly #entries = new Map<string, Entry>();
  #writesSinceSweep = 0;

  constructor(options: EnvoyMemoryStoreOptions) {
    this.#clock = options.clock;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    this.#onFull = options.onFull ?? (() => undefined);
  }

  get entries(): number {
    return this.#entries.size;
  }

  shouldRateLimit(command: EnvoyRateLimitCommand): Promise<EnvoyRateLimitResult> {
    try {
      return Promise.resolve(this.shouldRateLimitNow(command));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The command, synchronously. */
  shouldRateLimitNow(command: EnvoyRateLimitCommand): EnvoyRateLimitResult {
    const now = this.#clock.now();
    this.#sweepNowAndThen(now);
    const items = command.counters.map((counter) => ({
      counter,
      key: envoyCounterKey(command.domain, counter.windowMs, counter.counterKey),
    }));
    const reservationKey = envoyReservationKey(command.domain, command.requestId);
    const reservation = command.phase === 'charge' ? undefined : this.#reservation(reservationKey, now);

    if (command.phase === 'settle') {
      if (reservation?.settled) return { outcome: 'settled_duplicate', counters: this.#peek(items, now) };
      this.#ensureRoom(items.length + 1);
      if (reservation) {
        for (const [key, charge] of reservation.charges) this.#release(key, charge, now);
      }
      for (const { key, counter } of items) this.#add(key, counter.windowMs, counter.cost, now);
      const settled = { settled: true, charges: new Map() };
      this.#setReservation(reservationKey, settled, command.reservationTtlMs, now);
      return {
        outcome: reservation ? 'settled' : 'settled_without_reservation',
        counters: this.#peek(items, now),
      };
    }
    if (reservation) return { outcome: 'duplicate', counters: this.#peek(items, now) };

    const pending = new Map<string, number>();
    const judged = items.map(({ key, counter }) => {
      const { counts, index } = this.#counts(key, counter.windowMs, now);
      const earlier = pending.get(key) ?? 0;
      pending.set(key, earlier + counter.cost);
      const elapsed = now - index * counter.windowMs;
      const seen = { current: counts.current + earlier, previous: counts.previous };
      const verdict = judgeSlotWindow(seen, counter.limit, counter.windowMs, elapsed, counter.cost);
      return { counter, seen, elapsed, verdict };
    });
    if (judged.some(({ counter, verdict }) => !counter.shadow && verdict.exceeded)) {
      return {
        outcome: 'denied',
        counters: judged.map(({ counter, verdict }) => stateOf(verdict, counter.limit, verdict.used)),
      };
    }
    this.#ensureRoom(items.length + 1);
    const charges = new Map<string, { index: number; windowMs: number; hits: number }>();
    for (const { key, counter } of items) {
      const index = this.#add(key, counter.windowMs, counter.cost, now);
      if (!counter.reserved) continue;
      const charged = charges.get(key);
      charges.set(key, { index, windowMs: counter.windowMs, hits: (charged?.hits ?? 0) + counter.cost });
    }
    if (command.phase === 'reserve') {
      this.#setReservation(reservationKey, { settled: false, charges }, command.reservationTtlMs, now);
    }
    return {
      outcome: 'admitted',
      counters: judged.map(({ counter, seen, elapsed, verdict }) => {
        const after = judgeSlotWindow(
          { current: seen.current + counter.cost, previous: seen.previous },
          counter.limit,
          counter.windowMs,
          elapsed,
          0,
        );
        return stateOf({ ...verdict, resetAfterMs: after.resetAfterMs }, counter.limit, after.used);
      }),
    };
  }

  #peek(items: readonly { key: string; counter: EnvoyCounterSpec }[], now: number): EnvoyCounterState[] {
    return items.map(({ key, counter }) => {
      const { counts, index } = this.#counts(key, counter.windowMs, now);
      const verdict = judgeSlotWindow(
        counts,
        counter.limit,
        counter.windowMs,
        now - index * counter.windowMs,
        0,
      );
      return stateOf({ ...verdict, exceeded: false, retryAfterMs: 0 }, counter.limit, verdict.used);
    });
  }

  #counts(key: string, windowMs: number, now: number): { counts: SlotWindowCounts; index: number } {
    const index = Math.floor(now / windowMs);
    const entry = this.#live(key, now);
    return { counts: rollSlotWindow(entry?.type === 'window' ? entry.window : undefined, index), index };
  }

  /** Adds hits to the current window of a counter; returns the window index charged. */
  #add(key: string, windowMs: number, hits: number, now: number): number {
    const { counts, index } = this.#counts(key, windowMs, now);
    this.#entries.set(key, {
      type: 'window',
      window: { index, current: counts.current + hits, previous: counts.previous },
      expiresAtMs: (index + 2) * windowMs,
    });
    return index;
  }

  /** Takes back a reservation's hits from the window they were charged in, if it still counts. */
  #release(key: string, charge: { index: number; windowMs: number; hits: number }, now: number): void {
    const entry = this.#live(key, now);
    if (entry?.type !== 'window') return;
    const { window } = entry;
    if (window.index === charge.index) window.current = Math.max(0, window.current - charge.hits);
    else if (window.index === charge.index + 1) window.previous = Math.max(0, window.previous - charge.hits);
  }

  #reservation(key: string, now: number): Reservation | undefined {
    const entry = this.#live(key, now);
    return entry?.type === 'reservation' ? entry.reservation : undefined;
  }

  #setReservation(key: string, reservation: Reservation, ttlMs: number, now: number): void {
    this.#entries.set(key, { type: 'reservation', reservation, expiresAtMs: now + ttlMs });
  }

  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAtMs <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #ensureRoom(adding: number): void {
    if (this.#entries.size + adding <= this.#maxEntries) return;
    this.#sweep(this.#clock.now());
    if (this.#entries.size + adding <= this.#maxEntries) return;
    this.#onFull();
    throw new StoreFullError(`the in-process Envoy store holds ${this.#entries.size} entries (its bound)`);
  }

  // Expired entries are dropped on access; a full pass now and then bounds what is never read again.
  #sweepNowAndThen(now: number): void {
    this.#writesSinceSweep += 1;
    if (this.#writesSinceSweep < 10_000) return;
    this.#writesSinceSweep = 0;
    this.#sweep(now);
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#entries) if (entry.expiresAtMs <= now) this.#entries.delete(key);
  }
}

function stateOf(
  verdict: { exceeded: boolean; retryAfterMs: number; resetAfterMs: number },
  limit: number,
  used: number,
): EnvoyCounterState {
  return {
    used,
    remaining: Math.max(0, limit - used),
    exceeded: verdict.exceeded,
    retryAfterMs: verdict.retryAfterMs,
    resetAfterMs: verdict.resetAfterMs,
  };
}
