import { createHash } from 'node:crypto';
import { thresholdPairs, type EventContext, type RaisedEvent } from '../core/alerts.js';
import { observeUsage, type UsageBaseline } from '../core/anomaly.js';
import type { Clock } from '../core/clock.js';
import type { LimitSpec } from '../core/policy.js';
import type { Principal } from '../core/quota.js';
import { anomalyKey } from './keys.js';
import {
  EVENT_KEPT_MS,
  type DeliveryState,
  type EventEntry,
  type EventFilter,
  type EventOutbox,
  type StoredEvent,
} from './event-outbox.js';

/** As includes/events.lua: the newest events kept per org for listing. */
const EVENT_LOG_MAX = 1_000;

interface OrgEvents {
  /** In the order raised. */
  entries: Map<string, EventEntry>;
  /** id -> due ms, for events still to deliver. */
  due: Map<string, number>;
}

/** The same id includes/events.lua gives a crossing: stable for a (counter, period, threshold). */
export function thresholdEventId(counterKey: string, periodStartMs: number, label: string): string {
  const digest = createHash('sha1').update(`${counterKey}\n${periodStartMs}\n${label}`).digest('hex');
  return `evt_${digest.slice(0, 24)}`;
}

/**
 * The in-process store's events: fired markers and the outbox, with the semantics of the Redis scripts.
 * Called from MemoryStore inside its synchronous commands, so a crossing and its charge are one step.
 */
export class MemoryEvents implements EventOutbox {
  readonly #clock: Clock;
  /** `<counter key>\n<period start>\n<label>` -> when the marker may be forgotten. */
  readonly #fired = new Map<string, number>();
  readonly #orgs = new Map<string, OrgEvents>();
  /** Subjects' usage baselines (anomaly detection), with when each may be forgotten. */
  readonly #baselines = new Map<string, { baseline: UsageBaseline; expiresAtMs: number }>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /**
   * Raises one event per threshold of `spec` that a move of its counter from `before` to `after` crosses
   * for the first time in the period. Returns them.
   */
  cross(
    principal: Principal,
    context: EventContext | undefined,
    spec: LimitSpec,
    counterKey: string,
    period: { start: number; end: number },
    before: number,
    after: number,
  ): RaisedEvent[] {
    if (!context || after <= before || spec.kind !== 'budget') return [];
    const now = this.#clock.now();
    const raised: RaisedEvent[] = [];
    for (const { label, amount } of thresholdPairs(spec)) {
      if (!(before < amount && after >= amount)) continue;
      const marker = `${counterKey}\n${period.start}\n${label}`;
      const until = this.#fired.get(marker);
      if (until !== undefined && until > now) continue;
      this.#fired.set(marker, Math.max(period.end, now) + EVENT_KEPT_MS);
      const id = thresholdEventId(counterKey, period.start, label);
      this.raise(
        {
          id,
          type: 'budget.threshold',
          createdAtMs: now,
          threshold: Number(label),
          limit: {
            name: spec.name,
            unit: spec.unit,
            limit: spec.limit,
            used: after,
            periodStartMs: period.start,
            periodEndMs: period.end,
          },
          principal: {
            org: principal.org,
            subject: principal.subject,
            tier: principal.tier,
            ...(context.keyId ? { keyId: context.keyId } : {}),
          },
        },
        context.deliver,
      );
      raised.push({ type: 'budget.threshold', id, limitName: spec.name, threshold: label });
    }
    return raised;
  }

  /** When the subject's `block` anomaly ends, or 0 when it is not blocked. */
  blockedUntil(principal: Principal): number {
    const now = this.#clock.now();
    const stored = this.#baselines.get(anomalyKey(principal));
    if (!stored || stored.expiresAtMs <= now) return 0;
    return stored.baseline.blockedUntilMs > now ? stored.baseline.blockedUntilMs : 0;
  }

  /** Counts an admitted request against the subject's baseline; raises a usage.anomaly event when it stands out. */
  observe(principal: Principal, context: EventContext | undefined, tokens: number): RaisedEvent[] {
    if (!context?.anomaly) return [];
    const { spec, action } = context.anomaly;
    const now = this.#clock.now();
    const key = anomalyKey(principal);
    const stored = this.#baselines.get(key);
    const live = stored && stored.expiresAtMs > now ? stored.baseline : undefined;
    const { baseline, anomaly } = observeUsage(live, spec, now, tokens, action);
    const keptMs = Math.max(spec.halfLifeMs * 16, spec.minHistoryMs * 2, spec.cooldownMs) + EVENT_KEPT_MS;
    this.#baselines.set(key, { baseline, expiresAtMs: now + keptMs });
    if (!anomaly) return [];
    const id = `evt_${createHash('sha1').update(`${key}\n${now}`).digest('hex').slice(0, 24)}`;
    this.raise(
      {
        id,
        type: 'usage.anomaly',
        createdAtMs: now,
        threshold: spec.factor,
        anomaly: {
          measure: anomaly.measure,
          intervalMs: spec.intervalMs,
          observed: anomaly.observed,
          baseline: Number(anomaly.baseline.toFixed(3)),
          factor: spec.factor,
          action,
          blockedUntilMs: baseline.blockedUntilMs,
        },
        principal: {
          org: principal.org,
          subject: principal.subject,
          tier: principal.tier,
          ...(context.keyId ? { keyId: context.keyId } : {}),
        },
      },
      context.deliver,
    );
    return [{ type: 'usage.anomaly', id, limitName: anomaly.measure, threshold: String(spec.factor) }];
  }

  /** Writes an event to its org's log and, when delivered, its outbox. */
  raise(event: StoredEvent, deliver: boolean): void {
    const { org } = event.principal;
    let events = this.#orgs.get(org);
    if (!events) this.#orgs.set(org, (events = { entries: new Map(), due: new Map() }));
    const state: DeliveryState = deliver ? 'pending' : 'recorded';
    events.entries.set(event.id, { event, state, attempts: 0, lastError: '' });
    if (deliver) events.due.set(event.id, event.createdAtMs);
    while (events.entries.size > EVENT_LOG_MAX) {
      const oldest = events.entries.keys().next().value as string;
      if (events.due.has(oldest)) break;
      events.entries.delete(oldest);
    }
  }

  /** Forgets fired markers whose period is long over. */
  sweep(): void {
    const now = this.#clock.now();
    for (const [marker, until] of this.#fired) if (until <= now) this.#fired.delete(marker);
    for (const [key, stored] of this.#baselines) if (stored.expiresAtMs <= now) this.#baselines.delete(key);
  }

  async now(): Promise<number> {
    return this.#clock.now();
  }

  async claim(max: number, leaseMs: number): Promise<EventEntry[]> {
    const now = this.#clock.now();
    const claimed: EventEntry[] = [];
    for (const events of this.#orgs.values()) {
      for (const [id, dueMs] of events.due) {
        if (claimed.length >= max) return claimed;
        if (dueMs > now) continue;
        const entry = events.entries.get(id);
        if (!entry) {
          events.due.delete(id);
          continue;
        }
        entry.attempts += 1;
        events.due.set(id, now + leaseMs);
        claimed.push({ ...entry });
      }
    }
    return claimed;
  }

  #finish(entry: EventEntry, state: DeliveryState, error: string, dueMs?: number): void {
    const events = this.#orgs.get(entry.event.principal.org);
    const stored = events?.entries.get(entry.event.id);
    if (!events || !stored || !events.due.has(entry.event.id)) return;
    stored.state = state;
    stored.attempts = entry.attempts;
    stored.lastError = error;
    if (dueMs === undefined) events.due.delete(entry.event.id);
    else events.due.set(entry.event.id, dueMs);
  }

  async delivered(entry: EventEntry): Promise<void> {
    this.#finish(entry, 'delivered', '');
  }

  async retry(entry: EventEntry, error: string, dueMs: number): Promise<void> {
    this.#finish(entry, 'pending', error, dueMs);
  }

  async dead(entry: EventEntry, error: string): Promise<void> {
    this.#finish(entry, 'dead', error);
  }

  async noteRaised(): Promise<void> {}

  async list(filter: EventFilter): Promise<EventEntry[]> {
    const orgs =
      filter.org === undefined ? [...this.#orgs.values()] : [this.#orgs.get(filter.org)].filter((o) => o);
    const entries = orgs
      .flatMap((events) => [...(events as OrgEvents).entries.values()])
      .filter((entry) => !filter.type || entry.event.type === filter.type)
      .map((entry) => ({ ...entry }));
    entries.sort((a, b) => b.event.createdAtMs - a.event.createdAtMs || a.event.id.localeCompare(b.event.id));
    return entries.slice(0, filter.limit);
  }

  async backlog(): Promise<number> {
    let count = 0;
    for (const events of this.#orgs.values()) count += events.due.size;
    return count;
  }
}
