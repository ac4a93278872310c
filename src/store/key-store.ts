import type { ApiKeyRecord } from '../core/key-record.js';

export interface KeyListQuery {
  /** Only this org's keys. */
  org?: string;
  /** Ids after this one (exclusive); ids sort by creation time. */
  after?: string;
  limit: number;
}

/**
 * Where API key records live: by id, and by the SHA-256 of each of their secrets. No secret is ever given
 * to a store. Every implementation gives the same answers (test/contract/key-store-contract.ts).
 *
 * Writes compare and set: `putKey(next)` stores `next` only when the stored version is `next.version - 1`
 * (absent for version 1), so concurrent admin changes never overwrite one another.
 */
export interface KeyStore {
  readonly kind: 'memory' | 'redis';
  /** false when another write got there first (or, for version 1, the id exists): re-read and retry. */
  putKey(next: ApiKeyRecord, nowMs: number): Promise<boolean>;
  /** The key holding a secret whose SHA-256 (hex) this is, while the store keeps it. */
  findKeyBySecret(sha256Hex: string): Promise<ApiKeyRecord | undefined>;
  getKey(id: string): Promise<ApiKeyRecord | undefined>;
  /** Up to `limit` keys in id order. */
  listKeys(query: KeyListQuery): Promise<ApiKeyRecord[]>;
  /** Records a use; never moves last-used back, never creates a record. */
  touchKey(id: string, usedMs: number): Promise<void>;
  /**
   * Calls `listener(id)` after any write to a key, from any replica sharing the store, and
   * `listener(undefined)` when changes may have been missed (the channel reconnected): forget everything.
   */
  watchKeyChanges(listener: (id: string | undefined) => void): void;
  /**
   * A monotonic time (performance.now()) such that every change announced before it has reached the
   * watchers; -Infinity while that is not known (the channel is down or unconfirmed). A cache may trust
   * an entry for as long as this stays recent: no change it missed can be older than now minus this.
   */
  changesDeliveredAsOf(): number;
  close(): Promise<void>;
}

/** The record's versioned document, as stores keep it (version and last-used live beside it). */
export function encodeKeyDocument(record: ApiKeyRecord): string {
  const document: Omit<ApiKeyRecord, 'version' | 'lastUsedMs'> & Partial<ApiKeyRecord> = { ...record };
  delete document.version;
  delete document.lastUsedMs;
  return JSON.stringify(document);
}

export function decodeKeyDocument(
  document: string,
  version: number,
  lastUsedMs: number | null,
): ApiKeyRecord {
  return { ...(JSON.parse(document) as Omit<ApiKeyRecord, 'version' | 'lastUsedMs'>), version, lastUsedMs };
}
