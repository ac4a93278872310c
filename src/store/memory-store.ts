import { periodAt } from '../core/calendar.js';
import type { Clock } from '../core/clock.js';
import type {
  ActualUsage,
  LimitState,
  PlannedLimit,
  ReserveCommand,
  ReserveResult,
  SettleCommand,
  SettleResult,
} from '../core/quota.js';
import { chargesNothing, measuredAmount } from '../core/quota.js';
import { StoreFullError } from '../core/errors.js';
import { leaseMember, limitKey, nonceKey, reservationKey } from './keys.js';
import { judgeBudget, type BudgetHolds, type Verdict } from './memory-budget.js';
import { judgeLeases } from './memory-concurrency.js';
import { MemoryEvents } from './memory-events.js';
import { judgeWindow, rollWindow, type StoredWindow } from './memory-rate.js';
import { raisedField, type RaisedEvent } from '../core/alerts.js';
import { CONCURRENCY_RETRY_CAP_MS, type QuotaStore, type RecordedCharge } from './store.js';

interface ReservationRecord {
  /** `freed`: settled with nothing charged; a new check under the request_id is decided afresh. */
  state: 'reserved' | 'settled' | 'freed';
  leaseExpiresAtMs: number;
  reservedTokens: number;
  reservedMicros: number;
  charges: RecordedCharge[];
  charged: ActualUsage;
  late: boolean;
}

type Value =
  | { type: 'window'; window: StoredWindow }
  | { type: 'budget'; periods: Map<number, number>; holds: Map<number, BudgetHolds> }
  | { type: 'leases'; leases: Map<string, number> }
  | { type: 'reservation'; record: ReservationRecord }
  | { type: 'nonce' };

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
  /** Judges reserve deadlines (real time, as Redis TIME does for RedisStore); the system clock by default. */
  realClock?: Clock;
}

/** When full, expired entries are swept out at most this often (a sweep walks every entry). */
const FULL_SWEEP_INTERVAL_MS = 1_000;
const systemClock: Clock = { now: () => Date.now() };
const NO_HOLDS: BudgetHolds = { reserved: 0, untilMs: 0 };

/**
 * The in-process store: one authority instance, the same semantics as RedisStore. Every operation runs to
 * completion synchronously, which makes it atomic on Node's single thread.
 */
export class MemoryStore implements QuotaStore {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #realClock: Clock;
  readonly #keys: Keyspace;
  readonly #sweeper: NodeJS.Timeout | undefined;
  readonly #maxEntries: number;
  readonly #onFull: (() => void) | undefined;
  #lastFullSweepMs = -Infinity;
  readonly #events: MemoryEvents;

  constructor(options: MemoryStoreOptions) {
    this.#clock = options.clock;
    this.#realClock = options.realClock ?? systemClock;
    this.#keys = new Keyspace(options.clock);
    this.#maxEntries = options.maxEntries ?? Infinity;
    this.#onFull = options.onFull;
    this.#events = new MemoryEvents(options.clock);
    const interval = options.sweepIntervalMs ?? 10_000;
    if (interval > 0) {
      this.#sweeper = setInterval(() => {
        this.#keys.sweep();
        this.#events.sweep();
      }, interval);
      this.#sweeper.unref();
    }
  }

  get events(): MemoryEvents {
    return this.#events;
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

  /** Whether `keys` fit under the maximum, sweeping expired entries out (at most once a second) to make room. */
  #hasRoom(keys: readonly string[]): boolean {
    if (this.#keys.size + keys.length <= this.#maxEntries) return true;
    const adding = () => keys.filter((key) => !this.#keys.isLive(key)).length;
    if (this.#keys.size + adding() <= this.#maxEntries) return true;
    const now = this.#clock.now();
    if (now - this.#lastFullSweepMs < FULL_SWEEP_INTERVAL_MS) return false;
    this.#lastFullSweepMs = now;
    this.#keys.sweep();
    return this.#keys.size + adding() <= this.#maxEntries;
  }

  /** Refuses, before anything changes, a command that would add entries past the maximum. */
  #requireRoom(keys: readonly string[]): void {
    if (this.#hasRoom(keys)) return;
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
    if (mode === 'reserve' && command.deadlineMs > 0 && this.#realClock.now() >= command.deadlineMs) {
      return {
        outcome: 'expired',
        nowMs: now,
        leaseExpiresAtMs: 0,
        reservedTokens: 0,
        reservedMicros: 0,
        expiredLeases: 0,
        limits: command.limits.map(() => unjudged()),
      };
    }
    if (mode !== 'peek') {
      const existing = this.#keys.get(resKey, 'reservation');
      if (existing && existing.record.state !== 'freed') {
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
    const nonce = mode === 'reserve' && command.nonce ? nonceKey(principal, command.nonce.value) : undefined;
    if (nonce && this.#keys.get(nonce, 'nonce')) {
      return {
        outcome: 'replayed',
        nowMs: now,
        leaseExpiresAtMs: 0,
        reservedTokens: 0,
        reservedMicros: 0,
        expiredLeases: 0,
        limits: command.limits.map(() => unjudged()),
      };
    }
    const blockedUntilMs =
      command.events?.anomaly && mode !== 'peek' ? this.#events.blockedUntil(principal) : 0;
    if (blockedUntilMs > 0) {
      return {
        outcome: 'denied',
        nowMs: now,
        leaseExpiresAtMs: 0,
        reservedTokens: 0,
        reservedMicros: 0,
        limits: command.limits.map((planned) => this.#judge(planned, principal, now, 0, expired).state),
        expiredLeases: expired.count,
        blockedUntilMs,
      };
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
    this.#requireRoom([resKey, ...judged.map((j) => j.key), ...(nonce ? [nonce] : [])]);
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
    if (nonce) this.#keys.set(nonce, { type: 'nonce' }, command.nonce?.ttlMs ?? 0);
    const raised: RaisedEvent[] = [];
    judged.forEach(({ state, key }, i) => {
      const { spec, cost } = command.limits[i] as PlannedLimit;
      const period = { start: state.periodStartMs, end: state.periodEndMs };
      raised.push(
        ...this.#events.cross(principal, command.events, spec, key, period, state.used - cost, state.used),
      );
    });
    raised.push(...this.#events.observe(principal, command.events, command.reservedTokens));
    return {
      outcome: 'admitted',
      nowMs: now,
      leaseExpiresAtMs,
      reservedTokens: command.reservedTokens,
      reservedMicros: command.reservedMicros,
      expiredLeases: expired.count,
      limits: judged.map((j) => j.state),
      ...raisedField(raised),
    };
  }

  settleNow(command: SettleCommand): SettleResult {
    const now = this.#clock.now();
    const { principal } = command;
    const resKey = reservationKey(principal, command.requestId);
    const freeing = chargesNothing(command.outcome, command.actual);
    let record = this.#keys.get(resKey, 'reservation')?.record;
    const expired = { count: 0 };
    const report = () =>
      command.limits.map((planned) => this.#judge(planned, principal, now, 0, expired).state);
    if (record && (record.state === 'settled' || (record.state === 'freed' && freeing))) {
      return {
        status: 'duplicate',
        charged: record.charged,
        reserved: { tokens: record.reservedTokens, usdMicros: record.reservedMicros },
        late: record.late,
        limits: report(),
        expiredLeases: expired.count,
      };
    }
    // Freed by a settlement that charged nothing; usage reported now has no reservation to settle.
    if (record?.state === 'freed') record = undefined;
    let status: SettleResult['status'];
    let late = false;
    const raised: RaisedEvent[] = [];
    if (record) {
      late = now >= record.leaseExpiresAtMs;
      for (const charge of record.charges) {
        const delta = measuredAmount(charge.measure, command.actual, command.outcome) - charge.amount;
        const before = this.#spent(charge.key, charge.bucket);
        this.#adjust(charge, delta, leaseMember(principal, command.requestId), late);
        if (charge.kind === 'budget') {
          raised.push(...this.#crossed(command, charge.key, charge.bucket, before));
        }
      }
      status = 'settled';
    } else {
      this.#requireRoom([
        resKey,
        ...command.limits
          .filter((p) => p.spec.kind !== 'concurrency')
          .map((p) => limitKey(principal, p.spec)),
      ]);
      for (const planned of command.limits) {
        const key = limitKey(principal, planned.spec);
        const start = planned.bounds ? periodAt(planned.bounds, now).start : 0;
        const before = this.#spent(key, start);
        this.#chargeDirect(planned, principal, now, command.idempotencyWindowMs);
        if (planned.spec.kind === 'budget') raised.push(...this.#crossed(command, key, start, before));
      }
      status = 'charged_without_reservation';
    }
    const settled: ReservationRecord = {
      state: freeing ? 'freed' : 'settled',
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
      ...raisedField(raised),
    };
  }

  /** What a budget counter holds for the period starting `start` (0 when nothing). */
  #spent(key: string, start: number): number {
    return this.#keys.get(key, 'budget')?.periods.get(start) ?? 0;
  }

  /** The events of a settlement moving budget `key` from `before` in its period starting `start`. */
  #crossed(command: SettleCommand, key: string, start: number, before: number): RaisedEvent[] {
    const planned = command.limits.find(
      (p) => p.spec.kind === 'budget' && limitKey(command.principal, p.spec) === key,
    );
    const bounds = planned?.bounds;
    if (!planned || !bounds) return [];
    const at = bounds.indexOf(start);
    if (at < 0 || at > 2) return [];
    const period = { start, end: bounds[at + 1] as number };
    const after = this.#spent(key, start);
    return this.#events.cross(command.principal, command.events, planned.spec, key, period, before, after);
  }

  /**
   * Settles the request's reservation if this store holds a live one, and does nothing otherwise: the
   * `local` fallback gives back what it reserved while the shared store was out (its concurrency lease
   * first of all) when the request is settled or cancelled, without charging usage it never reserved.
   */
  releaseNow(command: SettleCommand): SettleResult | undefined {
    const record = this.#keys.get(reservationKey(command.principal, command.requestId), 'reservation');
    return record?.record.state === 'reserved' ? this.settleNow(command) : undefined;
  }

  /**
   * Starts a `local` limit's count from what the shared store last reported (`used`, already scaled to
   * this replica's share), so an outage does not start every limit from zero. Never lowers a count.
   * Concurrency is not seeded: the leases' ends are not known here.
   */
  seedNow(principal: ReserveCommand['principal'], planned: PlannedLimit, used: number): void {
    const now = this.#clock.now();
    const { spec } = planned;
    const key = limitKey(principal, spec);
    // A seed is a head start, not a promise: a full store counts from zero rather than refuse.
    if (!this.#hasRoom([key])) return;
    if (spec.kind === 'rate') {
      const index = Math.floor(now / spec.windowMs);
      const counts = rollWindow(this.#keys.get(key, 'window')?.window, index);
      if (counts.current >= used) return;
      const window = { index, current: used, previous: counts.previous };
      this.#keys.set(key, { type: 'window', window }, 2 * spec.windowMs);
    } else if (spec.kind === 'budget') {
      const bounds = planned.bounds as NonNullable<PlannedLimit['bounds']>;
      const period = periodAt(bounds, now);
      const spent = this.#keys.get(key, 'budget')?.periods.get(period.start) ?? 0;
      if (spent < used) this.#addToBudget(key, period.start, used - spent, bounds[0], period.end - now);
    }
  }

  #judge(
    planned: PlannedLimit,
    principal: ReserveCommand['principal'],
    now: number,
    cost: number,
    expired: { count: number },
  ): { state: LimitState; key: string; bucket: number } {
    const { spec } = planned;
    const key = limitKey(principal, spec);
    switch (spec.kind) {
      case 'rate': {
        const index = Math.floor(now / spec.windowMs);
        const counts = rollWindow(this.#keys.get(key, 'window')?.window, index);
        const verdict = judgeWindow(counts, spec.limit, spec.windowMs, now - index * spec.windowMs, cost);
        return { state: toState(verdict, 0, 0), key, bucket: index };
      }
      case 'budget': {
        const period = periodAt(planned.bounds as NonNullable<PlannedLimit['bounds']>, now);
        const budget = this.#keys.get(key, 'budget');
        const used = budget?.periods.get(period.start) ?? 0;
        const holds = budget?.holds.get(period.start) ?? NO_HOLDS;
        const verdict = judgeBudget(used, spec.limit, cost, now, period.end, holds, CONCURRENCY_RETRY_CAP_MS);
        return { state: toState(verdict, period.start, period.end), key, bucket: period.start };
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
        return { state: toState(verdict, 0, 0), key, bucket: 0 };
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
        const budget = this.#addToBudget(key, bucket, cost, oldestKept, ttl);
        state.used += cost;
        if (cost > 0) {
          // Once every earlier lease has ended, what they held counts as spent: start afresh.
          const holds = budget.holds.get(bucket);
          if (!holds || now >= holds.untilMs) {
            budget.holds.set(bucket, { reserved: cost, untilMs: leaseExpiresAtMs });
          } else {
            holds.reserved += cost;
            holds.untilMs = Math.max(holds.untilMs, leaseExpiresAtMs);
          }
          state.reserved += cost;
          state.resetAfterMs = state.periodEndMs - now;
        }
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

  #adjust(charge: RecordedCharge, delta: number, member: string, late: boolean): void {
    switch (charge.kind) {
      case 'rate': {
        const window = this.#keys.get(charge.key, 'window')?.window;
        if (!window) return;
        if (window.index === charge.bucket) window.current = Math.max(0, window.current + delta);
        else if (window.index === charge.bucket + 1) window.previous = Math.max(0, window.previous + delta);
        return;
      }
      case 'budget': {
        const budget = this.#keys.get(charge.key, 'budget');
        const spent = budget?.periods.get(charge.bucket);
        if (budget && spent !== undefined) budget.periods.set(charge.bucket, Math.max(0, spent + delta));
        // A late settlement's hold already ended with its lease (and may have been started afresh since).
        const holds = budget?.holds.get(charge.bucket);
        if (holds && !late) holds.reserved = Math.max(0, holds.reserved - charge.amount);
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

  #addToBudget(
    key: string,
    periodStart: number,
    cost: number,
    oldestKept: number,
    ttlMs: number,
  ): Extract<Value, { type: 'budget' }> {
    const budget: Extract<Value, { type: 'budget' }> = this.#keys.get(key, 'budget') ?? {
      type: 'budget',
      periods: new Map<number, number>(),
      holds: new Map<number, BudgetHolds>(),
    };
    budget.periods.set(periodStart, (budget.periods.get(periodStart) ?? 0) + cost);
    pruneBudget(budget, oldestKept);
    this.#keys.set(key, budget, ttlMs);
    return budget;
  }
}

function toState(
  verdict: Omit<Verdict, 'reserved' | 'held'> & Partial<Pick<Verdict, 'reserved' | 'held'>>,
  periodStartMs: number,
  periodEndMs: number,
): LimitState {
  return {
    used: verdict.used,
    remaining: verdict.remaining,
    resetAfterMs: verdict.resetAfterMs,
    exceeded: verdict.exceeded,
    retryAfterMs: verdict.retryAfterMs,
    periodStartMs,
    periodEndMs,
    reserved: verdict.reserved ?? 0,
    held: verdict.held ?? false,
  };
}

/** What a limit reports when it was not judged (a reserve that came after its deadline). */
function unjudged(): LimitState {
  return toState({ used: 0, remaining: 0, resetAfterMs: 0, exceeded: false, retryAfterMs: 0 }, 0, 0);
}

/**
 * Keeps a budget to the periods still readable: the previous one and later (as reserve.lua does, which
 * prunes only when a period's first charge finds more than two fields, the holds' fields included).
 */
function pruneBudget(
  budget: { periods: Map<number, number>; holds: Map<number, BudgetHolds> },
  oldestKept: number,
): void {
  if (budget.periods.size + 2 * budget.holds.size <= 2) return;
  for (const start of budget.periods.keys()) if (start < oldestKept) budget.periods.delete(start);
  for (const start of budget.holds.keys()) if (start < oldestKept) budget.holds.delete(start);
}
