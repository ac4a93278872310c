import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { recordTtlMs, secretTtlMs, type ApiKeyRecord } from '../../core/key-record.js';
import { decodeKeyDocument, encodeKeyDocument, type KeyListQuery, type KeyStore } from '../key-store.js';
import {
  API_KEY_CHANGES_CHANNEL,
  API_KEY_IDS,
  API_KEY_RECORD_PREFIX,
  STORE_MARKER,
  apiKeyOrgIdsKey,
  apiKeyRecordKey,
  apiKeySecretKey,
} from '../keys.js';
import { StoreUnavailableError } from '../../core/errors.js';
import { callRedis } from './call-redis.js';
import { closeConnection, type RedisConnection } from './connection.js';
import { defineKeyScripts, type KeyScripts } from './scripts.js';

function decodeRow(document: string, version: string, used: string): ApiKeyRecord {
  return decodeKeyDocument(document, Number(version), used === '' ? null : Number(used));
}

/** Confirmation tokens on the change channel start with this; key ids never do. */
const CONFIRMATION = '~confirm:';

export interface RedisKeyStoreOptions {
  redis: RedisConnection;
  /** Reports a change-channel failure; the cache TTL bounds staleness meanwhile. */
  onChannelError?: (error: Error) => void;
  /** close() also quits `redis`; off when the client is shared with a RedisStore, which closes it. */
  ownsClient?: boolean;
  /** How often the change channel is pinged to confirm it delivers (see changesDeliveredAsOf). */
  confirmEveryMs?: number;
  /**
   * Replicas that must confirm each key write (Redis WAIT) before it is acknowledged, so a failover cannot
   * lose an acknowledged revocation; 0: none (a standalone Redis has none to ask).
   */
  writeReplicas?: number;
  /** The most a write waits for those confirmations. */
  writeReplicaTimeoutMs?: number;
  /**
   * Called when the store's identity marker was missing or changed: `missing-at-start` (a new store, or
   * one that lost its data before this process started), `emptied` (FLUSHALL, a restart without data, a
   * replica promoted with nothing) or `replaced` (another authority re-marked it first). Every cached key
   * has been dropped by then.
   */
  onStoreReset?: (how: StoreReset) => void;
}

export type StoreReset = 'missing-at-start' | 'emptied' | 'replaced';

/** The marker outlives any idle spell of the authorities (it is refreshed on every check). */
const MARKER_TTL_MS = 30 * 86_400_000;

/**
 * API keys in Redis, under the `{keys}` hash tag. Writes are scripts that compare and set on the record's
 * version and publish the key id on API_KEY_CHANGES_CHANNEL, which every replica's cache listens to.
 *
 * The channel is confirmed by PINGs on the subscribed connection: Redis answers a PING after every message
 * it queued to that connection before, so a PONG proves that all changes published before its PING have
 * been heard. A stalled or broken connection stops the confirmations, and caches fall back to their TTL.
 */
export class RedisKeyStore implements KeyStore {
  readonly kind = 'redis' as const;
  readonly #redis: RedisConnection & KeyScripts;
  readonly #onChannelError: (error: Error) => void;
  readonly #ownsClient: boolean;
  readonly #confirmEveryMs: number;
  #subscriber: Redis | undefined;
  #confirmer: NodeJS.Timeout | undefined;
  #deliveredAsOf = Number.NEGATIVE_INFINITY;
  #closed = false;
  readonly #writeReplicas: number;
  readonly #writeReplicaTimeoutMs: number;
  readonly #onStoreReset: (how: StoreReset) => void;
  #marker = '';
  #forget: (id: string | undefined) => void = () => undefined;

  constructor(options: RedisKeyStoreOptions) {
    this.#redis = defineKeyScripts(options.redis);
    this.#onChannelError = options.onChannelError ?? (() => undefined);
    this.#ownsClient = options.ownsClient ?? false;
    this.#confirmEveryMs = options.confirmEveryMs ?? 250;
    this.#writeReplicas = options.writeReplicas ?? 0;
    this.#writeReplicaTimeoutMs = options.writeReplicaTimeoutMs ?? 1_000;
    this.#onStoreReset = options.onStoreReset ?? (() => undefined);
  }

  /**
   * Reads (and refreshes) the store's identity marker; when it is missing or not the one this process
   * knows, drops every cached key and reports how. Run with every channel confirmation, so a FLUSHALL or
   * an emptied Redis is noticed within one confirmation interval.
   */
  async checkStoreMarker(): Promise<StoreReset | undefined> {
    const [state, id] = await callRedis(() =>
      this.#redis.quotadCheckMarker(STORE_MARKER, this.#marker, randomUUID(), MARKER_TTL_MS),
    );
    const known = this.#marker;
    this.#marker = id;
    if (state === 1) return undefined;
    if (state === 2 && known === '') return undefined; // the first look at a marked store
    const how: StoreReset = known === '' ? 'missing-at-start' : state === 0 ? 'emptied' : 'replaced';
    // At start nothing is cached yet; later, everything cached came from the store that is gone.
    if (how !== 'missing-at-start') {
      this.#deliveredAsOf = Number.NEGATIVE_INFINITY;
      this.#forget(undefined);
    }
    this.#onStoreReset(how);
    return how;
  }

  /** A confirmation only counts while the store is still the one the caches were filled from. */
  #confirmIfSameStore(confirm: () => void): void {
    this.checkStoreMarker().then(
      (reset) => {
        if (reset === undefined) confirm();
      },
      () => undefined, // no confirmation: caches fall back to their TTL until one comes
    );
  }

  async putKey(next: ApiKeyRecord, nowMs: number): Promise<boolean> {
    const keys = [
      apiKeyRecordKey(next.id),
      API_KEY_IDS,
      apiKeyOrgIdsKey(next.org),
      ...next.secrets.map((s) => apiKeySecretKey(s.sha256)),
    ];
    const args = [
      keys.length,
      ...keys,
      next.version,
      encodeKeyDocument(next),
      next.id,
      recordTtlMs(next, nowMs) ?? 0,
      API_KEY_CHANGES_CHANNEL,
      ...next.secrets.map((s) => secretTtlMs(next, s, nowMs) ?? 0),
    ] as const;
    if (this.#writeReplicas === 0) {
      const [written] = await callRedis(() => this.#redis.quotadPutKey(...args));
      return written === 1;
    }
    // WAIT counts the replicas that have this connection's writes; one pipeline keeps the script and the
    // WAIT on the same connection to the same master (on Cluster: the {keys} slot's master).
    const [written, confirmed] = await callRedis(async () => {
      const pipeline = this.#redis.pipeline() as ReturnType<RedisConnection['pipeline']> & KeyScripts;
      void pipeline.quotadPutKey(...args);
      pipeline.wait(this.#writeReplicas, this.#writeReplicaTimeoutMs);
      const replies = (await pipeline.exec()) ?? [];
      for (const [error] of replies) if (error) throw error;
      return [(replies[0]?.[1] as [number, number])[0], replies[1]?.[1] as number];
    });
    if (written === 1 && confirmed < this.#writeReplicas) {
      throw new StoreUnavailableError(
        `redis: the change to ${next.id} was written on the master, but ${confirmed} of the ${this.#writeReplicas} replica(s) asked confirmed it within ${this.#writeReplicaTimeoutMs} ms (WAIT); a failover now could lose it. Check it with quotad keys show ${next.id} and repeat the change if needed`,
      );
    }
    return written === 1;
  }

  async findKeyBySecret(sha256Hex: string): Promise<ApiKeyRecord | undefined> {
    const row = await callRedis(() =>
      this.#redis.quotadFindKey(apiKeySecretKey(sha256Hex), API_KEY_RECORD_PREFIX),
    );
    return row ? decodeRow(...row) : undefined;
  }

  async getKey(id: string): Promise<ApiKeyRecord | undefined> {
    const [document, version, used] = await callRedis(() =>
      this.#redis.hmget(apiKeyRecordKey(id), 'doc', 'v', 'used'),
    );
    return document && version ? decodeRow(document, version, used ?? '') : undefined;
  }

  async listKeys(query: KeyListQuery): Promise<ApiKeyRecord[]> {
    const index = query.org === undefined ? API_KEY_IDS : apiKeyOrgIdsKey(query.org);
    const flat = await this.#redis.quotadListKeys(
      index,
      query.after ?? '',
      query.limit,
      API_KEY_RECORD_PREFIX,
    );
    const records: ApiKeyRecord[] = [];
    for (let i = 0; i < flat.length; i += 3) {
      records.push(decodeRow(flat[i] as string, flat[i + 1] as string, flat[i + 2] as string));
    }
    return records;
  }

  async touchKey(id: string, usedMs: number): Promise<void> {
    await callRedis(() => this.#redis.quotadTouchKey(apiKeyRecordKey(id), usedMs));
  }

  watchKeyChanges(listener: (id: string | undefined) => void): void {
    if (this.#subscriber) throw new Error('RedisKeyStore: one change watcher per store');
    this.#forget = listener;
    this.checkStoreMarker().catch(() => undefined); // Redis down at start: the next confirmation looks
    if (this.#redis instanceof Cluster) this.#watchOnCluster(this.#redis, listener);
    else this.#watchOnServer(this.#redis, listener);
  }

  /** Standalone and Sentinel: the subscriber follows the master like the main client (PUBLISH also reaches replicas). */
  #watchOnServer(redis: Redis, listener: (id: string | undefined) => void): void {
    // A connection of its own: a subscribed connection can run no other command.
    const subscriber = redis.duplicate({ autoResubscribe: false, lazyConnect: true });
    this.#subscriber = subscriber;
    let subscribed = false;
    subscriber.on('message', (channel: string, id: string) => {
      if (channel === API_KEY_CHANGES_CHANNEL) listener(id);
    });
    subscriber.on('error', (error: Error) => this.#onChannelError(error));
    subscriber.on('close', () => {
      subscribed = false;
      this.#deliveredAsOf = Number.NEGATIVE_INFINITY;
    });
    // Each (re)connection may have missed messages: subscribe again, then forget every cached key.
    subscriber.on('ready', () => {
      subscriber.subscribe(API_KEY_CHANGES_CHANNEL).then(
        () => {
          subscribed = true;
          listener(undefined);
        },
        (error: Error) => this.#onChannelError(error),
      );
    });
    this.#confirmer = setInterval(() => {
      if (!subscribed) return;
      const sent = performance.now();
      subscriber.ping().then(
        () =>
          this.#confirmIfSameStore(() => {
            if (subscribed) this.#deliveredAsOf = Math.max(this.#deliveredAsOf, sent);
          }),
        () => undefined, // no confirmation: caches fall back to their TTL until one comes
      );
    }, this.#confirmEveryMs);
    this.#confirmer.unref();
    subscriber.connect().catch((error: Error) => this.#onChannelError(error));
  }

  /**
   * Cluster: classic PUBLISH, which every node forwards over the cluster bus to every other node,
   * replicas included. Sharded pub/sub (SPUBLISH) would reach only the `{keys}` shard's nodes and move
   * with its slot; key changes are rare (admin writes), so a broadcast costs nothing that matters, and the
   * subscriber may sit on any node, surviving the death of any one of them by moving to another.
   *
   * A PONG from the subscriber's node proves nothing about messages still on their way from the `{keys}`
   * master, so the channel is confirmed by a token published from that master (confirm-changes.lua):
   * hearing it back proves every earlier change was heard.
   */
  #watchOnCluster(cluster: Cluster & KeyScripts, listener: (id: string | undefined) => void): void {
    const prefix = `${CONFIRMATION}${randomUUID()}:`;
    const sentAt = new Map<number, number>();
    let sequence = 0;
    let subscribed = false;
    let turn = 0;
    const attach = () => {
      if (this.#closed) return;
      const known = cluster.nodes('all').map((node) => node.options);
      const pool = known.length > 0 ? known : this.#seedNodes(cluster);
      const node = pool[turn++ % pool.length] as { host?: string; port?: number };
      const subscriber = new Redis({
        ...cluster.options.redisOptions,
        host: node.host ?? '127.0.0.1',
        port: node.port ?? 6379,
        autoResubscribe: false,
        lazyConnect: true,
        enableOfflineQueue: true,
        // A node that stays gone is left for another: any node hears every message.
        retryStrategy: (attempt) => (attempt > 3 ? null : 100),
      });
      this.#subscriber = subscriber;
      subscriber.on('message', (channel: string, message: string) => {
        if (channel !== API_KEY_CHANGES_CHANNEL) return;
        if (message.startsWith(prefix)) {
          const id = Number(message.slice(prefix.length));
          const sent = sentAt.get(id);
          for (const earlier of sentAt.keys()) if (earlier <= id) sentAt.delete(earlier);
          if (sent !== undefined && subscribed) {
            this.#confirmIfSameStore(() => {
              this.#deliveredAsOf = Math.max(this.#deliveredAsOf, sent);
            });
          }
          return;
        }
        if (!message.startsWith(CONFIRMATION)) listener(message);
      });
      subscriber.on('error', (error: Error) => this.#onChannelError(error));
      subscriber.on('close', () => {
        subscribed = false;
        this.#deliveredAsOf = Number.NEGATIVE_INFINITY;
      });
      subscriber.on('ready', () => {
        subscriber.subscribe(API_KEY_CHANGES_CHANNEL).then(
          () => {
            subscribed = true;
            listener(undefined);
          },
          (error: Error) => this.#onChannelError(error),
        );
      });
      subscriber.on('end', () => {
        if (this.#subscriber === subscriber) attach();
      });
      subscriber.connect().catch((error: Error) => this.#onChannelError(error));
    };
    attach();
    this.#confirmer = setInterval(() => {
      if (!subscribed) return;
      const id = ++sequence;
      sentAt.set(id, performance.now());
      // Unconfirmed tokens (lost in a failover) are forgotten once newer ones are heard, or after 64.
      if (sentAt.size > 64) sentAt.delete(sentAt.keys().next().value as number);
      cluster
        .quotadConfirmChanges(API_KEY_IDS, API_KEY_CHANGES_CHANNEL, `${prefix}${id}`)
        .catch(() => undefined); // no confirmation: caches fall back to their TTL until one comes
    }, this.#confirmEveryMs);
    this.#confirmer.unref();
  }

  /** The Cluster's seed nodes, for a subscriber placed before the first slot map is known. */
  #seedNodes(cluster: Cluster): { host?: string; port?: number }[] {
    const seeds = (cluster as unknown as { startupNodes: { host?: string; port?: number }[] }).startupNodes;
    return seeds.length > 0 ? seeds : [{}];
  }

  changesDeliveredAsOf(): number {
    return this.#deliveredAsOf;
  }

  /** The subscribed connection, for diagnostics (tests stall it to show the cache falls back to its TTL). */
  get changeChannel(): Redis | undefined {
    return this.#subscriber;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#confirmer);
    this.#subscriber?.disconnect();
    this.#subscriber = undefined;
    if (this.#ownsClient) await closeConnection(this.#redis);
  }
}
