import type { Redis } from 'ioredis';
import { recordTtlMs, secretTtlMs, type ApiKeyRecord } from '../../core/key-record.js';
import { decodeKeyDocument, encodeKeyDocument, type KeyListQuery, type KeyStore } from '../key-store.js';
import {
  API_KEY_CHANGES_CHANNEL,
  API_KEY_IDS,
  API_KEY_RECORD_PREFIX,
  apiKeyOrgIdsKey,
  apiKeyRecordKey,
  apiKeySecretKey,
} from '../keys.js';
import { callRedis } from './call-redis.js';
import { defineKeyScripts, type KeyScripts } from './scripts.js';

function decodeRow(document: string, version: string, used: string): ApiKeyRecord {
  return decodeKeyDocument(document, Number(version), used === '' ? null : Number(used));
}

export interface RedisKeyStoreOptions {
  redis: Redis;
  /** Reports a change-channel failure; the cache TTL bounds staleness meanwhile. */
  onChannelError?: (error: Error) => void;
  /** close() also quits `redis`; off when the client is shared with a RedisStore, which closes it. */
  ownsClient?: boolean;
  /** How often the change channel is pinged to confirm it delivers (see changesDeliveredAsOf). */
  confirmEveryMs?: number;
}

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
  readonly #redis: Redis & KeyScripts;
  readonly #onChannelError: (error: Error) => void;
  readonly #ownsClient: boolean;
  readonly #confirmEveryMs: number;
  #subscriber: Redis | undefined;
  #confirmer: NodeJS.Timeout | undefined;
  #deliveredAsOf = Number.NEGATIVE_INFINITY;

  constructor(options: RedisKeyStoreOptions) {
    this.#redis = defineKeyScripts(options.redis);
    this.#onChannelError = options.onChannelError ?? (() => undefined);
    this.#ownsClient = options.ownsClient ?? false;
    this.#confirmEveryMs = options.confirmEveryMs ?? 250;
  }

  async putKey(next: ApiKeyRecord, nowMs: number): Promise<boolean> {
    const keys = [
      apiKeyRecordKey(next.id),
      API_KEY_IDS,
      apiKeyOrgIdsKey(next.org),
      ...next.secrets.map((s) => apiKeySecretKey(s.sha256)),
    ];
    const [written] = await callRedis(() =>
      this.#redis.quotadPutKey(
        keys.length,
        ...keys,
        next.version,
        encodeKeyDocument(next),
        next.id,
        recordTtlMs(next, nowMs) ?? 0,
        API_KEY_CHANGES_CHANNEL,
        ...next.secrets.map((s) => secretTtlMs(next, s, nowMs) ?? 0),
      ),
    );
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
    // A connection of its own: a subscribed connection can run no other command.
    const subscriber = this.#redis.duplicate({ autoResubscribe: false, lazyConnect: true });
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
        () => {
          if (subscribed) this.#deliveredAsOf = Math.max(this.#deliveredAsOf, sent);
        },
        () => undefined, // no confirmation: caches fall back to their TTL until one comes
      );
    }, this.#confirmEveryMs);
    this.#confirmer.unref();
    subscriber.connect().catch((error: Error) => this.#onChannelError(error));
  }

  changesDeliveredAsOf(): number {
    return this.#deliveredAsOf;
  }

  /** The subscribed connection, for diagnostics (tests stall it to show the cache falls back to its TTL). */
  get changeChannel(): Redis | undefined {
    return this.#subscriber;
  }

  async close(): Promise<void> {
    clearInterval(this.#confirmer);
    this.#subscriber?.disconnect();
    this.#subscriber = undefined;
    if (this.#ownsClient) await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
