import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type DeliveryResult = 'delivered' | 'failed' | 'dead';

/** Events raised and their webhook delivery. Labels name the event type, threshold and limit: never a key or principal. */
export class EventMetrics {
  readonly raised: Counter<'type' | 'threshold' | 'limit'>;
  readonly deliveries: Counter<'result'>;
  readonly backlog: Gauge;
  readonly deliveryDuration: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.raised = new Counter({
      name: 'quotad_events_raised_total',
      help: 'Events raised (budget.threshold, usage.anomaly), by type, threshold and limit (or anomaly measure).',
      labelNames: ['type', 'threshold', 'limit'] as const,
      registers,
    });
    this.deliveries = new Counter({
      name: 'quotad_webhook_deliveries_total',
      help: 'Webhook delivery attempts by result: delivered, failed (retried later), dead (retried for retry_for, then kept).',
      labelNames: ['result'] as const,
      registers,
    });
    this.backlog = new Gauge({
      name: 'quotad_events_backlog',
      help: 'Events in the store waiting for webhook delivery (as this authority last counted them).',
      registers,
    });
    this.deliveryDuration = new Histogram({
      name: 'quotad_webhook_delivery_duration_seconds',
      help: 'How long webhook POSTs took, whatever their result.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    for (const result of ['delivered', 'failed', 'dead'] as const) this.deliveries.inc({ result }, 0);
  }
}
