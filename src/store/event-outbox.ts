/** What a budget.threshold event reports of its limit. */
export interface EventLimit {
  name: string;
  unit: string;
  limit: number;
  used: number;
  periodStartMs: number;
  periodEndMs: number;
}

/** What a usage.anomaly event reports: the rate that stood out and the baseline it stood out from. */
export interface EventAnomaly {
  /** `requests` or `tokens`, per interval. */
  measure: 'requests' | 'tokens';
  intervalMs: number;
  observed: number;
  baseline: number;
  factor: number;
  action: 'alert' | 'block';
  /** When a block ends (0 for alert). */
  blockedUntilMs: number;
}

export interface EventPrincipal {
  org: string;
  subject: string;
  tier: string;
  /** When the caller used an API key: its id (never its secret or hash). */
  keyId?: string;
}

/** An event as the store keeps it. Its id is stable: every delivery attempt sends the same event. */
export interface StoredEvent {
  id: string;
  type: 'budget.threshold' | 'usage.anomaly';
  createdAtMs: number;
  /** budget.threshold: the fraction crossed; usage.anomaly: the factor configured. */
  threshold: number;
  limit?: EventLimit;
  anomaly?: EventAnomaly;
  principal: EventPrincipal;
}

/** `recorded`: kept and listed, not delivered (no webhook was configured when it was raised). */
export type DeliveryState = 'pending' | 'delivered' | 'dead' | 'recorded';

export interface EventEntry {
  event: StoredEvent;
  state: DeliveryState;
  /** Delivery attempts so far (a claimed event counts the attempt it is claimed for). */
  attempts: number;
  lastError: string;
}

export interface EventFilter {
  org?: string;
  type?: StoredEvent['type'];
  /** The most entries returned, newest first. */
  limit: number;
}

/**
 * Where raised events wait for delivery: in the same store as the counters, so an authority crash or
 * restart loses none. Delivery is at least once with a lease: a claimed event is hidden from other
 * authorities for `leaseMs`; unless it is marked delivered, retried or dead by then, anyone claims it again.
 */
export interface EventOutbox {
  /** Up to `max` events due now, each leased for `leaseMs` to the caller. */
  claim(max: number, leaseMs: number): Promise<EventEntry[]>;
  delivered(entry: EventEntry): Promise<void>;
  /** Another attempt at `dueMs` (Unix ms, the store's clock). */
  retry(entry: EventEntry, error: string, dueMs: number): Promise<void>;
  /** No more attempts: kept, listed as dead. */
  dead(entry: EventEntry, error: string): Promise<void>;
  /** Notes that `org`'s outbox holds events (after a command reported eventsRaised). */
  noteRaised(org: string): Promise<void>;
  list(filter: EventFilter): Promise<EventEntry[]>;
  /** Events waiting for delivery, across orgs. */
  backlog(): Promise<number>;
  /** The store's now (Unix ms): due times are on the store's clock. */
  now(): Promise<number>;
}

/** How long event records, logs and fired markers are kept after their last write. */
export const EVENT_KEPT_MS = 8 * 86_400_000;

/** Parses the JSON an event record is stored as (shared by the Lua-written and the in-process records). */
export function parseStoredEvent(text: string): StoredEvent {
  const raw = JSON.parse(text) as {
    id: string;
    type: StoredEvent['type'];
    created_ms: string | number;
    threshold: string | number;
    limit?: Record<string, string | number>;
    anomaly?: Record<string, string | number>;
    principal: { org: string; subject: string; tier: string; key_id?: string };
  };
  const num = (value: string | number | undefined) => Number(value ?? 0);
  const event: StoredEvent = {
    id: raw.id,
    type: raw.type,
    createdAtMs: num(raw.created_ms),
    threshold: num(raw.threshold),
    principal: {
      org: raw.principal.org,
      subject: raw.principal.subject,
      tier: raw.principal.tier,
      ...(raw.principal.key_id ? { keyId: raw.principal.key_id } : {}),
    },
  };
  if (raw.limit) {
    event.limit = {
      name: String(raw.limit.name),
      unit: String(raw.limit.unit),
      limit: num(raw.limit.limit),
      used: num(raw.limit.used),
      periodStartMs: num(raw.limit.period_start_ms),
      periodEndMs: num(raw.limit.period_end_ms),
    };
  }
  if (raw.anomaly) {
    event.anomaly = {
      measure: raw.anomaly.measure === 'tokens' ? 'tokens' : 'requests',
      intervalMs: num(raw.anomaly.interval_ms),
      observed: num(raw.anomaly.observed),
      baseline: num(raw.anomaly.baseline),
      factor: num(raw.anomaly.factor),
      action: raw.anomaly.action === 'block' ? 'block' : 'alert',
      blockedUntilMs: num(raw.anomaly.blocked_until_ms),
    };
  }
  return event;
}

/** The state field of a record: state, attempts and last error, separated by tabs (as the scripts write it). */
export function parseDeliveryState(text: string | null | undefined): {
  state: DeliveryState;
  attempts: number;
  lastError: string;
} {
  const [state = 'pending', attempts = '0', ...error] = (text ?? '').split('\t');
  return {
    state: (['pending', 'delivered', 'dead', 'recorded'].includes(state)
      ? state
      : 'pending') as DeliveryState,
    attempts: Number(attempts) || 0,
    lastError: error.join('\t'),
  };
}

export function formatDeliveryState(state: DeliveryState, attempts: number, error: string): string {
  return `${state}\t${attempts}\t${error.replace(/[\t\n]/g, ' ').slice(0, 200)}`;
}
