import type { RedisConnection } from './connection.js';
import type { Clock } from '../../core/clock.js';
import {
  envoyCounterKey,
  envoyDomainPrefix,
  envoyReservationKey,
  type EnvoyCounterState,
  type EnvoyOutcome,
  type EnvoyRateLimitCommand,
  type EnvoyRateLimitResult,
  type EnvoyRateLimitStore,
} from '../envoy-store.js';
import { callRedis } from './call-redis.js';
import { readScript } from './scripts.js';

const OUTCOMES: readonly EnvoyOutcome[] = [
  'denied',
  'admitted',
  'duplicate',
  'settled',
  'settled_duplicate',
  'settled_without_reservation',
];
const STATE_WIDTH = 5;

interface EnvoyScripts {
  quotadEnvoyRateLimit(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>;
}

export interface EnvoyRedisStoreOptions {
  /** A client made by createRedisClient; the store only defines its script on it and never closes it. */
  redis: RedisConnection;
  /** Drives time inside the script (tests); without it the script reads Redis TIME, so replicas agree. */
  clock?: Clock;
}

/** Envoy domains' counters in Redis: one script per ShouldRateLimit call, every key in the domain's slot. */
export class EnvoyRedisStore implements EnvoyRateLimitStore {
  readonly kind = 'redis' as const;
  readonly #redis: RedisConnection & EnvoyScripts;
  readonly #clock: Clock | undefined;

  constructor(options: EnvoyRedisStoreOptions) {
    options.redis.defineCommand('quotadEnvoyRateLimit', { lua: readScript('envoy-rate-limit') });
    this.#redis = options.redis as RedisConnection & EnvoyScripts;
    this.#clock = options.clock;
  }

  async shouldRateLimit(command: EnvoyRateLimitCommand): Promise<EnvoyRateLimitResult> {
    const { domain, counters } = command;
    const record =
      command.phase === 'charge'
        ? `${envoyDomainPrefix(domain)}:res:-`
        : envoyReservationKey(domain, command.requestId);
    const keys = counters.map((c) => envoyCounterKey(domain, c.windowMs, c.counterKey));
    const specs = counters.flatMap((c) => [
      c.windowMs,
      c.limit,
      c.cost,
      c.shadow ? 1 : 0,
      c.reserved ? 1 : 0,
    ]);
    const reply = await callRedis(() =>
      this.#redis.quotadEnvoyRateLimit(
        keys.length + 1,
        record,
        ...keys,
        this.#clock ? this.#clock.now() : '',
        command.phase,
        command.reservationTtlMs,
        counters.length,
        ...specs,
      ),
    );
    const states: EnvoyCounterState[] = [];
    for (let i = 0; i < counters.length; i++) {
      const at = 1 + i * STATE_WIDTH;
      states.push({
        used: reply[at] as number,
        remaining: reply[at + 1] as number,
        exceeded: reply[at + 2] === 1,
        retryAfterMs: reply[at + 3] as number,
        resetAfterMs: reply[at + 4] as number,
      });
    }
    return { outcome: OUTCOMES[reply[0] as number] as EnvoyOutcome, counters: states };
  }
}
