import { createHmac } from 'node:crypto';
import type { StoredEvent } from '../store/event-outbox.js';

function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The JSON a webhook receives. Built only from the stored event, so every attempt sends the same bytes;
 * never a key's secret or hash.
 */
export function webhookBody(event: StoredEvent): string {
  const { principal } = event;
  return JSON.stringify({
    id: event.id,
    type: event.type,
    created_at: rfc3339(event.createdAtMs),
    threshold: event.threshold,
    ...(event.limit && {
      limit: {
        name: event.limit.name,
        unit: event.limit.unit,
        limit: event.limit.limit,
        used: event.limit.used,
        period_start: rfc3339(event.limit.periodStartMs),
        period_end: rfc3339(event.limit.periodEndMs),
      },
    }),
    ...(event.anomaly && {
      anomaly: {
        measure: event.anomaly.measure,
        interval_seconds: event.anomaly.intervalMs / 1000,
        observed: event.anomaly.observed,
        baseline: event.anomaly.baseline,
        factor: event.anomaly.factor,
        action: event.anomaly.action,
        ...(event.anomaly.action === 'block' && { blocked_until: rfc3339(event.anomaly.blockedUntilMs) }),
      },
    }),
    principal: {
      org: principal.org,
      subject: principal.subject,
      tier: principal.tier,
      ...(principal.keyId && { key_id: principal.keyId }),
    },
  });
}

/** `Quotad-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. */
export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}
