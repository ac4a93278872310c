import { Cluster } from 'ioredis';
import { masterClients, type RedisConnection } from './connection.js';

export interface StoreReachabilityOptions {
  redis: RedisConnection;
  /** How long every probe must have failed before the store counts as unreachable. */
  downAfterMs: number;
  /** Told when the store turns unreachable (false) and when it answers again (true). */
  onChange: (reachable: boolean) => void;
}

/**
 * Tells a store that is truly gone from one that blips: PINGs every master (one for standalone and
 * Sentinel, each holding slots on Cluster) a few times per `downAfterMs`, and calls the store
 * unreachable only when no master has answered one for that long. A failover, a slot migration or a
 * reconnect that ends sooner goes unreported; the first answer after an outage ends it.
 */
export class StoreReachability {
  readonly #options: StoreReachabilityOptions;
  readonly #timer: NodeJS.Timeout;
  #lastAnswerAt = performance.now();
  #reachable = true;
  #probing = false;

  constructor(options: StoreReachabilityOptions) {
    this.#options = options;
    const every = Math.min(1_000, Math.max(50, Math.floor(options.downAfterMs / 4)));
    this.#timer = setInterval(() => void this.#probe(), every);
    this.#timer.unref();
  }

  get reachable(): boolean {
    return this.#reachable;
  }

  async #probe(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    try {
      const { redis } = this.#options;
      // A Cluster that lost every node has no master client: that is no answer either.
      const masters = redis instanceof Cluster && redis.status !== 'ready' ? [] : masterClients(redis);
      const answered = await Promise.any(masters.map((master) => master.ping())).then(
        () => true,
        () => false,
      );
      this.#judge(answered);
    } finally {
      this.#probing = false;
    }
  }

  #judge(answered: boolean): void {
    const now = performance.now();
    if (answered) {
      this.#lastAnswerAt = now;
      if (!this.#reachable) {
        this.#reachable = true;
        this.#options.onChange(true);
      }
      return;
    }
    if (this.#reachable && now - this.#lastAnswerAt >= this.#options.downAfterMs) {
      this.#reachable = false;
      this.#options.onChange(false);
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
