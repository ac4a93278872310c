import type { AnomalyAction, AnomalySpec, LimitSpec } from './policy.js';

/** Thresholds are fractions with at most 4 decimals: exact as basis points of a basis point. */
const PARTS = 10_000n;

/** The used amount at which `fraction` of `limit` is reached: ceil(fraction × limit), exact for any limit. */
export function thresholdAmount(fraction: number, limit: number): number {
  const parts = BigInt(Math.round(fraction * Number(PARTS)));
  return Number((parts * BigInt(limit) + PARTS - 1n) / PARTS);
}

/** A budget's thresholds as `label=amount` pairs; the label is the fraction as the event reports it. */
export function thresholdPairs(spec: LimitSpec): { label: string; amount: number }[] {
  return (spec.alertThresholds ?? []).map((fraction) => ({
    label: String(fraction),
    amount: thresholdAmount(fraction, spec.limit),
  }));
}

/**
 * Who raises the events of a charge, besides its principal: the API key when the caller used one (its
 * id only), and whether the events are to be delivered (a webhook is configured) or only recorded.
 */
export interface EventContext {
  keyId: string;
  deliver: boolean;
  /** When anomaly detection is on (reserves only): its settings and this principal's tier's action. */
  anomaly?: { spec: AnomalySpec; action: AnomalyAction };
}

/** An event a store command raised, as the command reports it (the event itself is in the outbox). */
export interface RaisedEvent {
  type: 'budget.threshold' | 'usage.anomaly';
  id: string;
  /** budget.threshold: the limit's name; usage.anomaly: the measure (requests or tokens). */
  limitName: string;
  /** The fraction crossed, or the anomaly's factor, as text. */
  threshold: string;
}

/** Reads the events a script reported: a count at `at`, then one tab-separated line each. */
export function readRaised(reply: readonly unknown[], at: number): RaisedEvent[] {
  const count = Number(reply[at] ?? 0);
  const raised: RaisedEvent[] = [];
  for (let i = 1; i <= count; i++) {
    const [type, id, limitName, threshold] = String(reply[at + i]).split('\t');
    raised.push({
      type: type === 'usage.anomaly' ? 'usage.anomaly' : 'budget.threshold',
      id: id ?? '',
      limitName: limitName ?? '',
      threshold: threshold ?? '',
    });
  }
  return raised;
}

/** A result's `raised` field: present only when something was raised, so both stores answer alike. */
export function raisedField(raised: RaisedEvent[]): { raised?: RaisedEvent[] } {
  return raised.length > 0 ? { raised } : {};
}
