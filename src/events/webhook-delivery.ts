import type { WebhookSpec } from '../core/policy.js';
import type { EventEntry, EventOutbox } from '../store/event-outbox.js';
import type { EventMetrics } from '../telemetry/event-metrics.js';
import type { Logger } from '../telemetry/logger.js';
import { signatureHeader, webhookBody } from './webhook-event.js';

export interface WebhookDeliveryOptions {
  outbox: EventOutbox;
  /** The webhook in force now (the policy may be reloaded); undefined: nothing is delivered. */
  webhook: () => WebhookSpec | undefined;
  /** Reads the HMAC key from the variable the policy names. */
  secret: (variable: string) => string | undefined;
  metrics: EventMetrics;
  logger: Logger;
  /** How often the outbox is looked at when nothing woke the loop. Default 1 s. */
  pollMs?: number;
  /** The first retry's delay; each next one doubles, up to maxBackoffMs. Defaults 1 s and 5 min. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often the backlog gauge is refreshed. Default 5 s. */
  backlogEveryMs?: number;
  /** How often outboxes a crash left out of the index are looked for (store permitting). Default 5 min. */
  recoverEveryMs?: number;
  random?: () => number;
}

/** Something that may find outboxes missing from the index (RedisEventOutbox). */
interface Recoverable {
  recover(): Promise<number>;
}

/**
 * Delivers the outbox's events to the webhook: a bounded number of POSTs in flight, each event claimed
 * with a lease (so another authority takes over one this authority dies holding), retried with
 * exponential backoff and jitter until `retry_for` has passed since it was raised, then kept as dead.
 * Delivery is at least once: a receiver deduplicates by `Quotad-Event-Id`.
 */
export class WebhookDelivery {
  readonly #options: WebhookDeliveryOptions;
  readonly #random: () => number;
  #running = false;
  #inFlight = 0;
  #wake: (() => void) | undefined;
  #kicked = false;
  #loop: Promise<void> | undefined;
  readonly #sends = new Set<Promise<void>>();
  readonly #controllers = new Set<AbortController>();
  #lastBacklogMs = 0;
  #lastRecoverMs = 0;
  #warnedSecret = '';

  constructor(options: WebhookDeliveryOptions) {
    this.#options = options;
    this.#random = options.random ?? Math.random;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#lastRecoverMs = Date.now();
    this.#loop = this.#run();
  }

  /** Looks at the outbox now (events were just raised), instead of at the next poll. */
  kick(): void {
    this.#kicked = true;
    this.#wake?.();
  }

  /**
   * Stops claiming. With `abandon`, POSTs in flight are cut and their events stay claimed until their
   * lease ends (as if this authority had died); otherwise they are waited for.
   */
  async stop(abandon = false): Promise<void> {
    this.#running = false;
    this.kick();
    if (abandon) for (const controller of this.#controllers) controller.abort(new Error('delivery stopped'));
    await this.#loop;
    if (!abandon) await Promise.allSettled([...this.#sends]);
  }

  async #run(): Promise<void> {
    const pollMs = this.#options.pollMs ?? 1_000;
    while (this.#running) {
      let claimed = 0;
      try {
        claimed = await this.#claimAndSend();
        // Without a webhook nothing is queued: an authority without alerts sends the store nothing.
        if (this.#options.webhook()) await this.#housekeeping();
      } catch (error) {
        this.#options.logger.warn(
          { err: (error as Error).message },
          'event delivery: the outbox could not be read',
        );
      }
      if (!this.#running) break;
      // A full batch may have more behind it: look again at once, unless every slot is busy.
      const webhook = this.#options.webhook();
      if (claimed > 0 && webhook && this.#inFlight < webhook.maxInFlight) continue;
      if (this.#kicked) {
        this.#kicked = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        timer.unref();
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
      this.#kicked = false;
    }
  }

  async #claimAndSend(): Promise<number> {
    const webhook = this.#options.webhook();
    if (!webhook) return 0;
    const free = webhook.maxInFlight - this.#inFlight;
    if (free <= 0) return 0;
    // Longer than a POST may take, so a live authority finishes before anyone else may claim the event.
    const leaseMs = 3 * webhook.timeoutMs;
    const entries = await this.#options.outbox.claim(free, leaseMs);
    for (const entry of entries) {
      this.#inFlight += 1;
      const send = this.#deliver(entry, webhook).finally(() => {
        this.#inFlight -= 1;
        this.#sends.delete(send);
        this.kick();
      });
      this.#sends.add(send);
    }
    return entries.length;
  }

  async #housekeeping(): Promise<void> {
    const now = Date.now();
    const { outbox, metrics } = this.#options;
    if (now - this.#lastBacklogMs >= (this.#options.backlogEveryMs ?? 5_000)) {
      this.#lastBacklogMs = now;
      metrics.backlog.set(await outbox.backlog());
    }
    const recoverable = outbox as Partial<Recoverable>;
    if (recoverable.recover && now - this.#lastRecoverMs >= (this.#options.recoverEveryMs ?? 300_000)) {
      this.#lastRecoverMs = now;
      const found = await (recoverable as Recoverable).recover();
      if (found > 0)
        this.#options.logger.warn(
          { outboxes: found },
          'event delivery: found outboxes missing from the index',
        );
    }
  }

  async #deliver(entry: EventEntry, webhook: WebhookSpec): Promise<void> {
    const { outbox, metrics, logger } = this.#options;
    const { event } = entry;
    const started = performance.now();
    let failure: string | undefined;
    const controller = new AbortController();
    this.#controllers.add(controller);
    try {
      const secret = this.#options.secret(webhook.secretEnv);
      if (!secret) {
        failure = `the webhook secret variable ${webhook.secretEnv} is not set`;
        if (this.#warnedSecret !== webhook.secretEnv) {
          this.#warnedSecret = webhook.secretEnv;
          logger.error(
            { variable: webhook.secretEnv },
            'event delivery: the webhook secret variable is not set; events wait',
          );
        }
      } else {
        const body = webhookBody(event);
        const timeout = setTimeout(() => controller.abort(new Error('timed out')), webhook.timeoutMs);
        try {
          const response = await fetch(webhook.url, {
            method: 'POST',
            headers: {
              'Content-Type': 'application/json',
              'Quotad-Event-Id': event.id,
              'Quotad-Signature': signatureHeader(secret, body, Math.floor(Date.now() / 1000)),
            },
            body,
            signal: controller.signal,
            redirect: 'manual',
          });
          await response.arrayBuffer().catch(() => undefined);
          if (response.status < 200 || response.status > 299) failure = `HTTP ${response.status}`;
        } finally {
          clearTimeout(timeout);
        }
      }
    } catch (error) {
      const cause = (error as Error & { cause?: Error }).cause;
      failure = cause?.message ?? (error as Error).message;
    } finally {
      this.#controllers.delete(controller);
      metrics.deliveryDuration.observe((performance.now() - started) / 1000);
    }
    // Stopped while sending: the claim stays, and its lease hands the event to whoever is still running.
    if (controller.signal.aborted && !this.#running) return;
    try {
      if (failure === undefined) {
        await outbox.delivered(entry);
        metrics.deliveries.inc({ result: 'delivered' });
        logger.info({ eventId: event.id, type: event.type, attempts: entry.attempts }, 'event delivered');
        return;
      }
      const now = await outbox.now();
      if (now - event.createdAtMs >= webhook.retryForMs) {
        await outbox.dead(entry, failure);
        metrics.deliveries.inc({ result: 'dead' });
        logger.error(
          { eventId: event.id, type: event.type, attempts: entry.attempts, err: failure },
          'event undelivered after retry_for; kept as dead',
        );
        return;
      }
      await outbox.retry(entry, failure, now + this.#backoffMs(entry.attempts));
      metrics.deliveries.inc({ result: 'failed' });
      logger.warn(
        { eventId: event.id, type: event.type, attempts: entry.attempts, err: failure },
        'event delivery failed; will retry',
      );
    } catch (error) {
      // The claim's lease ends and the event is claimed again.
      logger.warn(
        { eventId: event.id, err: (error as Error).message },
        'event delivery: the outbox could not be updated',
      );
    }
  }

  /** Exponential, with equal jitter: half the delay fixed, half random, so failed receivers are not hit in step. */
  #backoffMs(attempts: number): number {
    const base = this.#options.baseBackoffMs ?? 1_000;
    const max = this.#options.maxBackoffMs ?? 300_000;
    const delay = Math.min(max, base * 2 ** Math.min(attempts - 1, 30));
    return Math.round(delay / 2 + (this.#random() * delay) / 2);
  }
}
