import type { Redis } from 'ioredis';
import type { RedisConnection } from './connection.js';
import type { Clock } from '../../core/clock.js';
import {
  formatDeliveryState,
  parseDeliveryState,
  parseStoredEvent,
  type EventEntry,
  type EventFilter,
  type EventOutbox,
} from '../event-outbox.js';
import {
  EVENT_LOG_INDEX,
  EVENT_OUTBOX_INDEX,
  eventLogKey,
  eventOutboxKey,
  eventRecordsKey,
  orgPrefix,
} from '../keys.js';
import { callRedis } from './call-redis.js';
import { readScript } from './scripts.js';

/** The most orgs one claim looks at: a random sample of the index, so no org waits behind the others. */
const ORGS_PER_CLAIM = 100;
/** The orgs listed by `quotad events` without an org: those with the latest events. */
const ORGS_LISTED = 100;
/** The orgs remembered for listing. */
const LOG_INDEX_MAX = 10_000;
const OUTBOX_SUFFIX = ':evq';

interface OutboxScripts {
  quotadClaimEvents(
    records: string,
    outbox: string,
    now: string | number,
    max: number,
    leaseMs: number,
  ): Promise<string[]>;
  quotadFinishEvent(
    records: string,
    outbox: string,
    id: string,
    state: string,
    how: 'done' | 'retry',
    dueMs: number,
  ): Promise<number>;
  quotadUnnoteOutbox(index: string, org: string, score: string): Promise<number>;
}

/** The org of an outbox key `quotad:{org:<org>}:evq`. */
function orgOfOutbox(key: string): string | undefined {
  const match = /^quotad:\{org:(.*)\}:evq$/.exec(key);
  return match?.[1];
}

/**
 * The outbox in Redis: one per org, in the org's slot beside the counters whose scripts fill it (one
 * script, one slot, in a Cluster too), and an index of orgs with events in their own slot, `{events}`.
 */
export class RedisEventOutbox implements EventOutbox {
  readonly #redis: RedisConnection & OutboxScripts;
  readonly #clock: Clock | undefined;

  constructor(options: { redis: RedisConnection; clock?: Clock | undefined }) {
    const redis = options.redis;
    redis.defineCommand('quotadClaimEvents', { lua: readScript('claim-events'), numberOfKeys: 2 });
    redis.defineCommand('quotadFinishEvent', { lua: readScript('finish-event'), numberOfKeys: 2 });
    redis.defineCommand('quotadUnnoteOutbox', { lua: readScript('unnote-outbox'), numberOfKeys: 1 });
    this.#redis = redis as RedisConnection & OutboxScripts;
    this.#clock = options.clock;
  }

  async now(): Promise<number> {
    if (this.#clock) return this.#clock.now();
    const [seconds, micros] = await callRedis(() => this.#redis.time());
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async claim(max: number, leaseMs: number): Promise<EventEntry[]> {
    const sample = await callRedis(
      () => this.#redis.zrandmember(EVENT_OUTBOX_INDEX, ORGS_PER_CLAIM, 'WITHSCORES') as Promise<string[]>,
    );
    const claimed: EventEntry[] = [];
    for (let i = 0; i + 1 < sample.length && claimed.length < max; i += 2) {
      const org = sample[i] as string;
      const score = sample[i + 1] as string;
      const reply = await callRedis(() =>
        this.#redis.quotadClaimEvents(
          eventRecordsKey(org),
          eventOutboxKey(org),
          this.#clock ? this.#clock.now() : '',
          max - claimed.length,
          leaseMs,
        ),
      );
      const left = Number(reply[0]);
      for (let j = 1; j + 2 < reply.length; j += 3) {
        const state = parseDeliveryState(reply[j + 2]);
        claimed.push({ event: parseStoredEvent(reply[j + 1] as string), ...state });
      }
      if (left === 0) {
        await callRedis(() => this.#redis.quotadUnnoteOutbox(EVENT_OUTBOX_INDEX, org, score));
      }
    }
    return claimed;
  }

  async #finish(entry: EventEntry, state: string, how: 'done' | 'retry', dueMs: number): Promise<void> {
    const { org } = entry.event.principal;
    await callRedis(() =>
      this.#redis.quotadFinishEvent(
        eventRecordsKey(org),
        eventOutboxKey(org),
        entry.event.id,
        state,
        how,
        dueMs,
      ),
    );
  }

  delivered(entry: EventEntry): Promise<void> {
    return this.#finish(entry, formatDeliveryState('delivered', entry.attempts, ''), 'done', 0);
  }

  retry(entry: EventEntry, error: string, dueMs: number): Promise<void> {
    return this.#finish(entry, formatDeliveryState('pending', entry.attempts, error), 'retry', dueMs);
  }

  dead(entry: EventEntry, error: string): Promise<void> {
    return this.#finish(entry, formatDeliveryState('dead', entry.attempts, error), 'done', 0);
  }

  async noteRaised(org: string): Promise<void> {
    const now = Date.now();
    await callRedis(() =>
      this.#redis
        .multi()
        .zadd(EVENT_OUTBOX_INDEX, now, org)
        .zadd(EVENT_LOG_INDEX, now, org)
        .zremrangebyrank(EVENT_LOG_INDEX, 0, -LOG_INDEX_MAX - 1)
        .exec(),
    );
  }

  /**
   * Notes every org whose outbox holds events, found by SCAN: the backstop for an authority that died
   * between a script that raised events and its noteRaised. Run rarely, off the request path.
   */
  async recover(): Promise<number> {
    // A Cluster's keys are spread over its masters: each is scanned.
    const nodes: Redis[] = 'nodes' in this.#redis ? this.#redis.nodes('master') : [this.#redis];
    let found = 0;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await callRedis(() =>
          node.scan(cursor, 'MATCH', `${orgPrefix('*')}${OUTBOX_SUFFIX}`, 'COUNT', 1000),
        );
        cursor = next;
        for (const key of keys) {
          const org = orgOfOutbox(key);
          if (org === undefined) continue;
          if ((await callRedis(() => this.#redis.zcard(key))) > 0) {
            await callRedis(() => this.#redis.zadd(EVENT_OUTBOX_INDEX, 'NX', Date.now(), org));
            found += 1;
          }
        }
      } while (cursor !== '0');
    }
    return found;
  }

  async list(filter: EventFilter): Promise<EventEntry[]> {
    const orgs =
      filter.org !== undefined
        ? [filter.org]
        : await callRedis(() => this.#redis.zrevrange(EVENT_LOG_INDEX, 0, ORGS_LISTED - 1));
    // With a type filter, read deeper into each log so that `limit` of that type can be found.
    const depth = filter.type ? 1_000 : filter.limit;
    const entries: EventEntry[] = [];
    for (const org of orgs) {
      const ids = await callRedis(() => this.#redis.zrevrange(eventLogKey(org), 0, depth - 1));
      if (ids.length === 0) continue;
      const fields = ids.flatMap((id) => [id, `${id}:s`]);
      const values = await callRedis(() => this.#redis.hmget(eventRecordsKey(org), ...fields));
      for (let i = 0; i < ids.length; i++) {
        const record = values[2 * i];
        if (!record) continue;
        const event = parseStoredEvent(record);
        if (filter.type && event.type !== filter.type) continue;
        entries.push({ event, ...parseDeliveryState(values[2 * i + 1]) });
      }
    }
    entries.sort((a, b) => b.event.createdAtMs - a.event.createdAtMs || a.event.id.localeCompare(b.event.id));
    return entries.slice(0, filter.limit);
  }

  async backlog(): Promise<number> {
    const orgs = await callRedis(() => this.#redis.zrange(EVENT_OUTBOX_INDEX, 0, 999));
    if (orgs.length === 0) return 0;
    // One command per outbox (in a Cluster, outboxes live in different slots).
    const counts = await callRedis(() =>
      Promise.all(orgs.map((org) => this.#redis.zcard(eventOutboxKey(org)))),
    );
    return counts.reduce((sum, count) => sum + count, 0);
  }
}
