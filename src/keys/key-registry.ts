import type { Clock } from '../core/clock.js';
import { ConflictError, InvalidArgumentError, NotFoundError, StoreUnavailableError } from '../core/errors.js';
import { parseOverrideValue, resolveOverrideName } from '../core/limit-overrides.js';
import type { Policy } from '../core/policy.js';
import type { KeyStore } from '../store/key-store.js';
import { within } from '../store/within.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics } from '../telemetry/metrics.js';
import {
  formatApiKey,
  formatKeyId,
  isKeyId,
  KEY_RANDOM_BYTES,
  keyHint,
  sha256,
  type KeyType,
} from './api-key.js';
import {
  authenticateSecret,
  DEFAULT_ROTATION_OVERLAP_MS,
  newKeyRecord,
  revokeKeyRecord,
  rotateKeyRecord,
  setKeyLimitsRecord,
  setKeySigningRecord,
  type ApiKeyRecord,
  type KeyAuthentication,
  type SigningMode,
} from '../core/key-record.js';

/** Last-used is written at most this often per key and replica. */
export const LAST_USED_RESOLUTION_MS = 60_000;
/** Cached lookups kept at most; the oldest go first. */
const CACHE_MAX_ENTRIES = 100_000;
/** Even on a confirmed channel, a lookup is redone after this long (bounds what a bug could keep stale). */
const CACHE_MAX_AGE_MS = 10 * 60_000;
/** Compare-and-set attempts before an admin write gives up with ABORTED. */
const WRITE_ATTEMPTS = 8;

export interface KeyRegistryOptions {
  store: KeyStore;
  /** The authority's clock: key expiry, rotation overlap and last-used are judged on it. */
  clock: Clock;
  policy: () => Policy;
  /**
   * The most a cached lookup may lag a change made on any replica. Past this age an entry is trusted only
   * while the store confirms its change channel has delivered everything older than this. 0: no cache.
   */
  cacheTtlMs: number;
  /** A CSPRNG (`crypto.randomBytes` in production). */
  randomBytes: (size: number) => Uint8Array;
  metrics: AuthorityMetrics;
  logger: Logger;
}

/** Filled by a change: the record it changed, as it was just before (the audit trail's "before"). */
export interface KeyChangeSeen {
  before?: ApiKeyRecord;
}

export interface CreateKeyInput {
  name: string;
  owner: string;
  org: string;
  tier: string;
  /** 0: never expires. */
  expiresInMs: number;
  type?: KeyType;
  signing?: SigningMode;
}

export interface KeyPage {
  keys: ApiKeyRecord[];
  /** Empty on the last page. */
  nextPageToken: string;
}

interface CacheEntry {
  record: ApiKeyRecord | undefined;
  /** performance.now() when it was read from the store. */
  fetchedAt: number;
}

/**
 * The authority's API keys: authentication on the decision path, with a cache that every replica empties
 * of a key as soon as the store announces a change to it (and of everything when announcements may have
 * been lost), and the admin operations, each a compare-and-set write of a pure change to the record.
 */
export class KeyRegistry {
  readonly #store: KeyStore;
  readonly #clock: Clock;
  readonly #policy: () => Policy;
  readonly #cacheTtlMs: number;
  readonly #randomBytes: (size: number) => Uint8Array;
  readonly #metrics: AuthorityMetrics;
  readonly #logger: Logger;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<ApiKeyRecord | undefined>>();
  readonly #lastTouched = new Map<string, number>();
  /** Bumped by every invalidation, so a lookup that began before one does not refill the cache with old news. */
  #generation = 0;

  constructor(options: KeyRegistryOptions) {
    this.#store = options.store;
    this.#clock = options.clock;
    this.#policy = options.policy;
    this.#cacheTtlMs = options.cacheTtlMs;
    this.#randomBytes = options.randomBytes;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#store.watchKeyChanges((id) => this.#invalidate(id));
  }

  #invalidate(id: string | undefined): void {
    this.#generation += 1;
    this.#metrics.keyCacheInvalidations.inc({ reason: id === undefined ? 'resync' : 'change' });
    if (id === undefined) {
      this.#cache.clear();
      return;
    }
    for (const [sha, entry] of this.#cache) if (entry.record?.id === id) this.#cache.delete(sha);
  }

  /**
   * After this replica wrote `record`: its next lookup of any of the key's secrets reads the store, without
   * waiting for the change channel, and no lookup begun before the write is shared with it.
   */
  #forgetWritten(record: ApiKeyRecord): void {
    this.#generation += 1;
    for (const { sha256 } of record.secrets) {
      this.#cache.delete(sha256);
      this.#inflight.delete(sha256);
    }
  }

  /**
   * The record holding this secret hash: from the cache when fresh, else from the store (one lookup at a
   * time per hash). While the store is unreachable, or gives no answer within `waitMs` (this caller's
   * share of its deadline), the last known record is used: no revocation can be written without the
   * store either, and the limits' failure policies then decide as for any caller.
   */
  lookup(secretSha256: Buffer, waitMs = Infinity): Promise<ApiKeyRecord | undefined> {
    return this.#lookupHex(secretSha256.toString('hex'), waitMs);
  }

  async #lookupHex(sha: string, waitMs: number): Promise<ApiKeyRecord | undefined> {
    const cached = this.#cache.get(sha);
    if (cached && this.#trusted(cached)) {
      this.#metrics.keyLookups.inc({ source: 'cache', result: cached.record ? 'found' : 'unknown' });
      return cached.record;
    }
    let pending = this.#inflight.get(sha);
    if (!pending) {
      pending = this.#fetch(sha);
      this.#inflight.set(sha, pending);
      const clear = () => {
        if (this.#inflight.get(sha) === pending) this.#inflight.delete(sha);
      };
      pending.then(clear, clear);
    }
    try {
      return await within(pending, waitMs, 'key lookup');
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || !cached?.record) throw error;
      this.#metrics.keyLookups.inc({ source: 'stale', result: 'found' });
      return cached.record;
    }
  }

  /**
   * Young entries are trusted; older ones while the change channel vouches for them: a change the cache has
   * not heard of is then younger than the TTL. Invalidations and resyncs have already removed the rest.
   */
  #trusted(entry: CacheEntry): boolean {
    const now = performance.now();
    const age = now - entry.fetchedAt;
    if (age < this.#cacheTtlMs) return true;
    return age < CACHE_MAX_AGE_MS && this.#store.changesDeliveredAsOf() >= now - this.#cacheTtlMs;
  }

  async #fetch(sha: string): Promise<ApiKeyRecord | undefined> {
    const generation = this.#generation;
    const fetchedAt = performance.now();
    const record = await this.#store.findKeyBySecret(sha);
    this.#metrics.keyLookups.inc({ source: 'store', result: record ? 'found' : 'unknown' });
    if (this.#cacheTtlMs > 0 && generation === this.#generation) {
      if (this.#cache.size >= CACHE_MAX_ENTRIES && !this.#cache.has(sha))
        this.#cache.delete(this.#cache.keys().next().value as string);
      this.#cache.delete(sha); // re-inserted last, so eviction takes the oldest
      this.#cache.set(sha, { record, fetchedAt });
    }
    return record;
  }

  /** May the secret with this hash be used now? Notes the use of a key that may. `waitMs` as for lookup. */
  async authenticate(secretSha256: Buffer, waitMs = Infinity): Promise<KeyAuthentication> {
    const sha = secretSha256.toString('hex');
    const record = await this.#lookupHex(sha, waitMs);
    const now = this.#clock.now();
    const auth = authenticateSecret(record, sha, now);
    if (auth.code === 'OK') this.#noteUse(auth.record, now);
    return auth;
  }

  /** Writes last-used off the decision path, at most once a minute per key from this replica. */
  #noteUse(record: ApiKeyRecord, now: number): void {
    const last = this.#lastTouched.get(record.id) ?? record.lastUsedMs ?? Number.NEGATIVE_INFINITY;
    if (now - last < LAST_USED_RESOLUTION_MS) return;
    this.#lastTouched.set(record.id, now);
    this.#store.touchKey(record.id, now).catch((error: Error) => {
      this.#logger.warn({ keyId: record.id, err: error.message }, 'could not record when a key was used');
    });
  }

  async create(input: CreateKeyInput): Promise<{ record: ApiKeyRecord; secret: string }> {
    if (!this.#policy().tiers.has(input.tier)) {
      throw new InvalidArgumentError('tier', `tier '${input.tier}' is not in the policy`);
    }
    const now = this.#clock.now();
    const secret = formatApiKey(input.type ?? 'live', this.#randomBytes(KEY_RANDOM_BYTES));
    const record = newKeyRecord({
      id: formatKeyId(now, this.#randomBytes(KEY_RANDOM_BYTES)),
      name: input.name,
      owner: input.owner,
      org: input.org,
      tier: input.tier,
      secret: { sha256: sha256Hex(secret), hint: keyHint(secret) },
      nowMs: now,
      expiresInMs: input.expiresInMs,
      ...(input.signing ? { signing: input.signing } : {}),
    });
    if (!(await this.#store.putKey(record, now))) throw new ConflictError(`key id ${record.id} is taken`);
    this.#logger.info({ keyId: record.id, org: record.org, tier: record.tier }, 'api key created');
    return { record, secret };
  }

  async get(id: string): Promise<ApiKeyRecord> {
    const record = await this.#store.getKey(id);
    if (!record) throw new NotFoundError(`no API key with id '${id}'`);
    return record;
  }

  async list(query: { org?: string; pageSize: number; pageToken: string }): Promise<KeyPage> {
    const after = query.pageToken ? decodePageToken(query.pageToken) : undefined;
    const keys = await this.#store.listKeys({
      ...(query.org ? { org: query.org } : {}),
      ...(after !== undefined ? { after } : {}),
      limit: query.pageSize + 1,
    });
    const more = keys.length > query.pageSize;
    const page = more ? keys.slice(0, query.pageSize) : keys;
    return { keys: page, nextPageToken: more ? encodePageToken((page.at(-1) as ApiKeyRecord).id) : '' };
  }

  async revoke(id: string, seen: KeyChangeSeen = {}): Promise<ApiKeyRecord> {
    const record = await this.#update(id, (current, now) => revokeKeyRecord(current, now), seen);
    this.#logger.info({ keyId: id }, 'api key revoked');
    return record;
  }

  async rotate(
    id: string,
    overlapMs = DEFAULT_ROTATION_OVERLAP_MS,
    seen: KeyChangeSeen = {},
  ): Promise<{ record: ApiKeyRecord; secret: string; previousExpiresAtMs: number }> {
    let secret = '';
    const record = await this.#update(
      id,
      (current, now) => {
        if (current.revokedMs !== null)
          throw new InvalidArgumentError('id', `API key ${id} is revoked; issue a new key`);
        secret = formatApiKey(keyTypeOf(current), this.#randomBytes(KEY_RANDOM_BYTES));
        return rotateKeyRecord(current, { sha256: sha256Hex(secret), hint: keyHint(secret) }, now, overlapMs);
      },
      seen,
    );
    this.#logger.info({ keyId: id, overlapMs }, 'api key rotated');
    const previous = record.secrets.at(-2) as { notAfterMs: number };
    return { record, secret, previousExpiresAtMs: previous.notAfterMs };
  }

  async setLimits(
    id: string,
    set: readonly { name: string; value: string }[],
    unset: readonly string[],
    seen: KeyChangeSeen = {},
  ): Promise<ApiKeyRecord> {
    const record = await this.#update(
      id,
      (current) => {
        const tier = this.#policy().tiers.get(current.tier);
        if (!tier)
          throw new InvalidArgumentError('id', `the key's tier '${current.tier}' is not in the policy`);
        const amounts: Record<string, number> = {};
        set.forEach((override, i) => {
          const spec = resolveOverrideName(tier, `set[${i}].name`, override.name);
          amounts[spec.name] = parseOverrideValue(spec, `set[${i}].value`, override.value);
        });
        const names = unset.map((name, i) =>
          current.limits[name] === undefined ? resolveOverrideName(tier, `unset[${i}]`, name).name : name,
        );
        return setKeyLimitsRecord(current, amounts, names);
      },
      seen,
    );
    this.#logger.info({ keyId: id, limits: record.limits }, 'api key limits set');
    return record;
  }

  async setSigning(id: string, mode: SigningMode, seen: KeyChangeSeen = {}): Promise<ApiKeyRecord> {
    const record = await this.#update(
      id,
      (current) => {
        if (current.revokedMs !== null && mode !== 'off')
          throw new InvalidArgumentError('id', `API key ${id} is revoked; issue a new key`);
        return setKeySigningRecord(current, mode);
      },
      seen,
    );
    this.#logger.info({ keyId: id, signing: mode }, 'api key signing set');
    return record;
  }

  /** Reads, changes and writes a record until no other write intervenes. */
  async #update(
    id: string,
    change: (current: ApiKeyRecord, nowMs: number) => ApiKeyRecord,
    seen: KeyChangeSeen,
  ): Promise<ApiKeyRecord> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const current = await this.get(id);
      seen.before = current;
      const now = this.#clock.now();
      const next = change(current, now);
      if (next === current) return current;
      if (await this.#store.putKey(next, now)) {
        this.#forgetWritten(next);
        return next;
      }
    }
    throw new ConflictError(`API key ${id} changed ${WRITE_ATTEMPTS} times while being updated; retry`);
  }

  /** Whether any key exists (to decide whether a first run should seed a demo key). */
  async isEmpty(): Promise<boolean> {
    return (await this.#store.listKeys({ limit: 1 })).length === 0;
  }
}

function sha256Hex(secret: string): string {
  return sha256(secret).toString('hex');
}

function keyTypeOf(record: ApiKeyRecord): KeyType {
  return record.secrets.at(-1)?.hint.startsWith('qd_demo_') ? 'demo' : 'live';
}

function encodePageToken(lastId: string): string {
  return Buffer.from(lastId, 'utf8').toString('base64url');
}

function decodePageToken(token: string): string {
  const id = Buffer.from(token, 'base64url').toString('utf8');
  if (!isKeyId(id)) throw new InvalidArgumentError('page_token', 'is not a token from ListKeys');
  return id;
}
