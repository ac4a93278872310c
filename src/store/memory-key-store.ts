import type { Clock } from '../core/clock.js';
import { recordTtlMs, secretTtlMs, type ApiKeyRecord } from '../core/key-record.js';
import { decodeKeyDocument, encodeKeyDocument, type KeyListQuery, type KeyStore } from './key-store.js';

interface StoredRecord {
  document: string;
  version: number;
  lastUsedMs: number | null;
  /** On the store's clock; null: kept while the key lives. */
  expiresAtMs: number | null;
}

/** API keys in this process: the single-instance registry, with the same contract as RedisKeyStore. */
export class MemoryKeyStore implements KeyStore {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #records = new Map<string, StoredRecord>();
  readonly #secrets = new Map<string, { id: string; expiresAtMs: number | null }>();
  readonly #listeners: ((id: string | undefined) => void)[] = [];

  constructor(options: { clock: Clock }) {
    this.#clock = options.clock;
  }

  #live<T extends { expiresAtMs: number | null }>(entry: T | undefined): T | undefined {
    return entry && (entry.expiresAtMs === null || entry.expiresAtMs > this.#clock.now()) ? entry : undefined;
  }

  #record(id: string): ApiKeyRecord | undefined {
    const stored = this.#live(this.#records.get(id));
    return stored && decodeKeyDocument(stored.document, stored.version, stored.lastUsedMs);
  }

  async putKey(next: ApiKeyRecord, nowMs: number): Promise<boolean> {
    const current = this.#live(this.#records.get(next.id));
    if ((current?.version ?? 0) !== next.version - 1) return false;
    const until = (ttl: number | null) => (ttl === null ? null : nowMs + ttl);
    this.#records.set(next.id, {
      document: encodeKeyDocument(next),
      version: next.version,
      lastUsedMs: current?.lastUsedMs ?? null,
      expiresAtMs: until(recordTtlMs(next, nowMs)),
    });
    for (const secret of next.secrets) {
      this.#secrets.set(secret.sha256, { id: next.id, expiresAtMs: until(secretTtlMs(next, secret, nowMs)) });
    }
    for (const listener of this.#listeners) listener(next.id);
    return true;
  }

  async findKeyBySecret(sha256Hex: string): Promise<ApiKeyRecord | undefined> {
    const entry = this.#live(this.#secrets.get(sha256Hex));
    return entry && this.#record(entry.id);
  }

  async getKey(id: string): Promise<ApiKeyRecord | undefined> {
    return this.#record(id);
  }

  async listKeys(query: KeyListQuery): Promise<ApiKeyRecord[]> {
    const page: ApiKeyRecord[] = [];
    for (const id of [...this.#records.keys()].sort()) {
      if (page.length === query.limit) break;
      if (query.after !== undefined && id <= query.after) continue;
      const record = this.#record(id);
      if (record && (query.org === undefined || record.org === query.org)) page.push(record);
    }
    return page;
  }

  async touchKey(id: string, usedMs: number): Promise<void> {
    const stored = this.#live(this.#records.get(id));
    if (stored && (stored.lastUsedMs ?? 0) < usedMs) stored.lastUsedMs = usedMs;
  }

  watchKeyChanges(listener: (id: string | undefined) => void): void {
    this.#listeners.push(listener);
  }

  /** Changes reach the watchers as they are written, in this process. */
  changesDeliveredAsOf(): number {
    return performance.now();
  }

  async close(): Promise<void> {
    this.#listeners.length = 0;
  }
}
