import { periodAt } from '../core/calendar.js';
import type { Clock } from '../core/clock.js';
import { judgeBudget, judgeLeases, type Verdict } from '../core/judge.js';
import type {
  ActualUsage,
  LimitState,
  PlannedLimit,
  ReserveCommand,
  ReserveResult,
  SettleCommand,
  SettleResult,
} from '../core/quota.js';
import { measuredAmount } from '../core/quota.js';
import { StoreFullError } from '../core/errors.js';
import { judgeWindow, rollWindow, type StoredWindow } from '../core/sliding-window.js';
import { leaseMember, limitKey, reservationKey } from './keys.js';
import { CONCURRENCY_RETRY_CAP_MS, type QuotaStore, type RecordedCharge } from './store.js';

interface ReservationRecord {
  state: 'reserved' | 'settled';
  leaseExpiresAtMs: number;
  reservedTokens: number;
  reservedMicros: number;
  charges: RecordedCharge[];
  charged: ActualUsage;
  late: boolean;
}

type Value =
  | { type: 'window'; window: StoredWindow }
  | { type: 'budget'; periods: Map<number, number> }
  | { type: 'leases'; leases: Map<string, number> }
  | { type: 'reservation'; record: ReservationRecord };

/** Keys with time-to-live, measured on the injected clock: expired entries vanish on access and on sweeps. */
class Keyspace {
  readonly #entries = new Map<string, { value: Value; expiresAtMs: number }>();
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get<T extends Value['type']>(key: string, type: T): Extract<Value, { type: T }> | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAtMs <= this.#clock.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value.type === type ? (entry.value as Extract<Value, { type: T }>) : undefined;
  }

  set(key: string, value: Value, ttlMs: number): void {
    this.#entries.set(key, { value, expiresAtMs: this.#clock.now() + ttlMs });
  }

  /** Whether `key` holds a value now (an expired one is dropped). */
  isLive(key: string): boolean {
    const entry = this.#entries.get(key);
    if (!entry) return false;
    if (entry.expiresAtMs > this.#clock.now()) return true;
    this.#entries.delete(key);
    return false;
  }

  expire(key: string, ttlMs: number): void {
    const entry = this.#entries.get(key);
    if (entry) entry.expiresAtMs = this.#clock.now() + ttlMs;
  }

  sweep(): void {
    const now = this.#clock.now();
    for (const [key, entry] of this.#entries) if (entry.expiresAtMs <= now) this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}

export interface MemoryStoreOptions {
  clock: Clock;
  /** How often expired keys are swept out (real time). 0 turns the sweeper off. */
  sweepIntervalMs?: number;
  /**
   * The most entries (counters, lease sets, reservations) held at once. A command that would add entries
   * past it is refused with StoreFullError before it changes anything; no live entry is ever evicted, since
   * that would reset someone's limits. Unset: no bound.
   */
  maxEntries?: number;
  /** Told of each command refused for want of room. */
  onFull?: () => void;
}

/** When full, expired entries are swept out at most this often (a sweep walks every entry). */
const FULL_SWEEP_INTERVAL_MS = 1_000;

/**
 * The in-process store: one authority instance, the same semantics as RedisStore. Every operation runs to
 * completion synchronously, which makes it atomic on Node's single thread.
 */
export class MemoryStore implements QuotaStore {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #keys: Keyspace;
  readonly #sweeper: NodeJS.Timeout | undefined;
  readonly #maxEntries: number;
  readonly #onFull: (() => void) | undefined;
  #lastFullSweepMs = -Infinity;

  constructor(options: MemoryStoreOptions) {
    this.#clock = options.clock;
    this.#keys = new Keyspace(options.clock);
    this.#maxEntries = options.maxEntries ?? Infinity;
    this.#onFull = options.onFull;
    const interval = options.sweepIntervalMs ?? 10_000;
    if (interval > 0) {
      this.#sweeper = setInterval(() => this.#keys.sweep(), interval);
      this.#sweeper.unref();
    }
  }

  /** Live keys, for tests and memory accounting. */
  get keyCount(): number {
    this.#keys.sweep();
    return this.#keys.size;
  }

  /** Entries held, expired ones not yet swept out included: what memory holds. */
  get entries(): number {
    return this.#keys.size;
  }

  /** Refuses, before anything changes, a command that would add entries past the maximum. */
  #requireRoom(keys: readonly string[]): void {
    if (this.#keys.size + keys.length <= this.#maxEntries) return;
    const adding = () => keys.filter((key) => !this.#keys.isLive(key)).length;
    if (this.#keys.size + adding() <= this.#maxEntries) return;
    const now = this.#clock.now();
    if (now - this.#lastFullSweepMs >= FULL_SWEEP_INTERVAL_MS) {
      this.#lastFullSweepMs = now;
      this.#keys.sweep();
      if (this.#keys.size + adding() <= this.#maxEntries) return;
    }
    this.#onFull?.();
    throw new StoreFullError(
      `the in-process store holds its maximum of ${this.#maxEntries} entries; requests that need new ones are refused until some expire`,
    );
  }

  async reserve(command: ReserveCommand): Promise<ReserveResult> {
    return this.reserveNow(command);
  }

  async settle(command: SettleCommand): Promise<SettleResult> {
    return this.settleNow(command);
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
  }

  /** The synchronous core of reserve, also used directly as the `local` store-failure fallback. */
  reserveNow(command: ReserveCommand): ReserveResult {
    const now = this.#clock.now();
    const { principal, mode } = command;
    const resKey = reservationKey(principal, command.requestId);
    const expired = { count: 0 };
    if (mode !== 'peek') {
      const existing = this.#keys.get(resKey, 'reservation');
      if (existing) {
        const { record } = existing;
        return {
          outcome: 'duplicate',
          nowMs: now,
          leaseExpiresAtMs: record.leaseExpiresAtMs,
          reservedTokens: record.reservedTokens,
          reservedMicros: record.reservedMicros,
          limits: command.limits.map((planned) => this.#judge(planned, principal, now, 0, expired).state),
          expiredLeases: expired.count,
        };
      }
    }
    const cost = (planned: PlannedLimit) => (mode === 'peek' ? 0 : planned.cost);
    const judged = command.limits.map((planned) =>
      this.#judge(planned, principal, now, cost(planned), expired),
    );
    const denied = judged.some(
      (j, i) => j.state.exceeded && !(command.limits[i] as PlannedLimit).spec.shadow,
    );
    if (mode !== 'reserve' || denied) {
      return {
        outcome: denied ? 'denied' : 'admitted',
        nowMs: now,
        leaseExpiresAtMs: 0,
        reservedTokens: 0,
        reservedMicros: 0,
        expiredLeases: expired.count,
        limits: judged.map((j) => j.state),
      };
    }
    this.#requireRoom([resKey, ...judged.map((j) => j.key)]);
    const leaseExpiresAtMs = now + command.leaseMs;
    const member = leaseMember(principal, command.requestId);
    const charges = judged.map((j, i) =>
      this.#charge(command.limits[i] as PlannedLimit, j, now, command, leaseExpiresAtMs, member),
    );
    const record: ReservationRecord = {
      state: 'reserved',
      leaseExpiresAtMs,
      reservedTokens: command.reservedTokens,
      reservedMicros: command.reservedMicros,
      charges,
      charged: { inputTokens: 0, outputTokens: 0, usdMicros: 0 },
      late: false,
    };
    this.#keys.set(resKey, { type: 'reservation', record }, command.leaseMs + command.idempotencyWindowMs);
    return {
      outcome: 'admitted',
      nowMs: now,
      leaseExpiresAtMs,
      reservedTokens: command.reservedTokens,
      reservedMicros: command.reservedMicros,
      expiredLeases: expired.count,
      limits: judged.map((j) => j.state),
    };
  }

  settleNow(command: SettleCommand): SettleResult {
    const now = this.#clock.now();
    const { principal } = command;
    const resKey = reservationKey(principal, command.requestId);
    const record = this.#keys.get(resKey, 'reservation')?.record;
    const expired = { count: 0 };
    const report = () =>
      command.limits.map((planned) => this.#judge(planned, principal, now, 0, expired).state);
    if (record?.state === 'settled') {
      return {
        status: 'duplicate',
        charged: record.charged,
        reserved: { tokens: record.reservedTokens, usdMicros: record.reservedMicros },
        late: record.late,
        limits: report(),
        expiredLeases: expired.count,
      };
    }
    let status: SettleResult['status'];
    let late = false;
    if (record) {
      late = now >= record.leaseExpiresAtMs;
      for (const charge of record.charges) {
        const delta = measuredAmount(charge.measure, command.actual, command.outcome) - charge.amount;
        this.#adjust(charge, delta, leaseMember(principal, command.requestId));
      }
      status = 'settled';
    } else {
      this.#requireRoom([
        resKey,
        ...command.limits
          .filter((p) => p.spec.kind !== 'concurrency')
          .map((p) => limitKey(principal, p.spec)),
      ]);
      for (const planned of command.limits)
        this.#chargeDirect(planned, principal, now, command.idempotencyWindowMs);
      status = 'charged_without_reservation';
    }
    const settled: ReservationRecord = {
      state: 'settled',
      leaseExpiresAtMs: record?.leaseExpiresAtMs ?? 0,
      reservedTokens: record?.reservedTokens ?? 0,
      reservedMicros: record?.reservedMicros ?? 0,
      charges: [],
      charged: command.actual,
      late,
    };
    this.#keys.set(resKey, { type: 'reservation', record: settled }, command.idempotencyWindowMs);
    return {
      status,
      charged: command.actual,
      reserved: { tokens: settled.reservedTokens, usdMicros: settled.reservedMicros },
      late,
      limits: report(),
      expiredLeases: expired.count,
    };
  }

  #judge(
    planned: PlannedLimit,
    principal: ReserveCommand['principal'],
    now: number,
    cost: number,
    expired: { count: number },
  ): { state: LimitState; key: string; bucket: number; verdict: Verdict } {
    const { spec } = planned;
    const key = limitKey(principal, spec);
    switch (spec.kind) {
      case 'rate': {
        const index = Math.floor(now / spec.windowMs);
        const counts = rollWindow(this.#keys.get(key, 'window')?.window, index);
        const verdict = judgeWindow(counts, spec.limit, spec.windowMs, now - index * spec.windowMs, cost);
        return { state: toState(verdict, 0, 0), key, bucket: index, verdict };
      }
      case 'budget': {
        const period = periodAt(planned.bounds as NonNullable<PlannedLimit['bounds']>, now);
        const used = this.#keys.get(key, 'budget')?.periods.get(period.start) ?? 0;
        const verdict = judgeBudget(used, spec.limit, cost, now, period.end);
        return { state: toState(verdict, period.start, period.end), key, bucket: period.start, verdict };
      }
      case 'concurrency': {
        const leases = this.#keys.get(key, 'leases')?.leases;
        let earliest = Infinity;
        let latest = 0;
        if (leases) {
          for (const [member, endsAt] of leases) {
            if (endsAt <= now) {
              leases.delete(member);
              expired.count += 1;
            } else {
              earliest = Math.min(earliest, endsAt);
              latest = Math.max(latest, endsAt);
            }
          }
        }
        const verdict = judgeLeases(
          leases?.size ?? 0,
          spec.limit,
          cost,
          now,
          earliest,
          latest,
          CONCURRENCY_RETRY_CAP_MS,
        );
        return { state: toState(verdict, 0, 0), key, bucket: 0, verdict };
      }
    }
  }

  #charge(
    planned: PlannedLimit,
    judged: { state: LimitState; key: string; bucket: number },
    now: number,
    command: ReserveCommand,
    leaseExpiresAtMs: number,
    member: string,
  ): RecordedCharge {
    const { spec, cost } = planned;
    const { key, bucket, state } = judged;
    switch (spec.kind) {
      case 'rate': {
        this.#addToWindow(key, spec.windowMs, bucket, cost);
        state.used += cost;
        if (cost > 0) state.resetAfterMs = 2 * spec.windowMs - (now - bucket * spec.windowMs);
        break;
      }
      case 'budget': {
        const oldestKept = (planned.bounds as NonNullable<PlannedLimit['bounds']>)[0];
        const ttl = state.periodEndMs - now + command.leaseMs + command.idempotencyWindowMs;
        this.#addToBudget(key, bucket, cost, oldestKept, ttl);
        state.used += cost;
        if (cost > 0) state.resetAfterMs = state.periodEndMs - now;
        break;
      }
      case 'concurrency': {
        const leases = this.#keys.get(key, 'leases')?.leases ?? new Map<string, number>();
        leases.set(member, leaseExpiresAtMs);
        state.used += cost;
        state.resetAfterMs = Math.max(state.resetAfterMs, leaseExpiresAtMs - now);
        // Kept a lease longer than its last lease, so a returning caller still sees (and counts) expired leases.
        this.#keys.set(key, { type: 'leases', leases }, state.resetAfterMs + command.leaseMs);
        break;
      }
    }
    state.remaining = Math.max(0, spec.limit - state.used);
    return { key, kind: spec.kind, bucket, amount: cost, measure: spec.measure };
  }

  #adjust(charge: RecordedCharge, delta: number, member: string): void {
    switch (charge.kind) {
      case 'rate': {
        const window = this.#keys.get(charge.key, 'window')?.window;
        if (!window) return;
        if (window.index === charge.bucket) window.current = Math.max(0, window.current + delta);
        else if (window.index === charge.bucket + 1) window.previous = Math.max(0, window.previous + delta);
        return;
      }
      case 'budget': {
        const periods = this.#keys.get(charge.key, 'budget')?.periods;
        const spent = periods?.get(charge.bucket);
        if (periods && spent !== undefined) periods.set(charge.bucket, Math.max(0, spent + delta));
        return;
      }
      case 'concurrency':
        this.#keys.get(charge.key, 'leases')?.leases.delete(member);
        return;
    }
  }

  #chargeDirect(
    planned: PlannedLimit,
    principal: SettleCommand['principal'],
    now: number,
    idempotencyWindowMs: number,
  ): void {
    const { spec, cost } = planned;
    const key = limitKey(principal, spec);
    if (spec.kind === 'rate') {
      this.#addToWindow(key, spec.windowMs, Math.floor(now / spec.windowMs), cost);
    } else if (spec.kind === 'budget') {
      const bounds = planned.bounds as NonNullable<PlannedLimit['bounds']>;
      const period = periodAt(bounds, now);
      this.#addToBudget(key, period.start, cost, bounds[0], period.end - now + idempotencyWindowMs);
    }
  }

  #addToWindow(key: string, windowMs: number, index: number, cost: number): void {
    const counts = rollWindow(this.#keys.get(key, 'window')?.window, index);
    const window = { index, current: counts.current + cost, previous: counts.previous };
    this.#keys.set(key, { type: 'window', window }, 2 * windowMs);
  }

  #addToBudget(key: string, periodStart: number, cost: number, oldestKept: number, ttlMs: number): void {
    const periods = this.#keys.get(key, 'budget')?.periods ?? new Map<number, number>();
    periods.set(periodStart, (periods.get(periodStart) ?? 0) + cost);
    pruneBudget(periods, oldestKept);
    this.#keys.set(key, { type: 'budget', periods }, ttlMs);
  }
}

function toState(verdict: Verdict, periodStartMs: number, periodEndMs: number): LimitState {
  return {
    used: verdict.used,
    remaining: verdict.remaining,
    resetAfterMs: verdict.resetAfterMs,
    exceeded: verdict.exceeded,
    retryAfterMs: verdict.retryAfterMs,
    periodStartMs,
    periodEndMs,
  };
}

/** Keeps a budget to the periods still readable: the previous one and later (as reserve.lua does). */
function pruneBudget(periods: Map<number, number>, oldestKept: number): void {
  if (periods.size <= 2) return;
  for (const start of periods.keys()) if (start < oldestKept) periods.delete(start);
}
