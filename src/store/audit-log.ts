/**
 * The audit trail: one record per admin change and per refused admin call, kept for a bounded time and
 * count. Records hold names, ids and limits, never a secret or a token. Both stores give the same answers
 * (test/contract/audit-log-contract.ts).
 */

/** A key as an audit record shows it before and after a change. */
export interface AuditKeySnapshot {
  tier: string;
  state: 'active' | 'revoked' | 'expired';
  expiresMs: number | null;
  /** Limit overrides as the operator wrote them (`rpm` → `100`, spend in dollars). */
  limits: { name: string; value: string }[];
  /** Secrets that work now (2 during a rotation's overlap). */
  secrets: number;
  /** Signed requests: off, optional or required. */
  signing: string;
}

export interface AuditEntry {
  timeMs: number;
  /** The admin token's name; empty when the call carried no known token. */
  actor: string;
  /** The AdminService method. */
  action: string;
  /** The key the call was about; empty when none. */
  keyId: string;
  /** OK, or the gRPC status name it was refused or failed with. */
  outcome: string;
  detail: string;
  /** The caller's address as the authority saw it. */
  peer: string;
  before: AuditKeySnapshot | null;
  after: AuditKeySnapshot | null;
}

export interface AuditRecord extends AuditEntry {
  /** `<ms>-<seq>`: sorts by time, unique in the trail. */
  id: string;
}

export interface AuditQuery {
  keyId?: string;
  actor?: string;
  action?: string;
  /** Records at or after this time only. */
  sinceMs?: number;
  /** Records older than this id only (the previous page's last). */
  beforeId?: string;
  limit: number;
}

export interface AuditPage {
  /** Newest first. */
  records: AuditRecord[];
  /** The id to pass as beforeId for the next page; undefined on the last. */
  next: string | undefined;
}

/** How much of the trail is kept: records older than `retentionMs` or beyond `maxRecords` go. */
export interface AuditRetention {
  retentionMs: number;
  maxRecords: number;
}

export interface AuditLog {
  readonly kind: 'memory' | 'redis';
  append(entry: AuditEntry): Promise<AuditRecord>;
  list(query: AuditQuery): Promise<AuditPage>;
  close(): Promise<void>;
}

export function matchesAuditQuery(record: AuditRecord, query: AuditQuery): boolean {
  return (
    (!query.keyId || record.keyId === query.keyId) &&
    (!query.actor || record.actor === query.actor) &&
    (!query.action || record.action === query.action) &&
    (query.sinceMs === undefined || record.timeMs >= query.sinceMs)
  );
}

/** The ordering of `<ms>-<seq>` ids: negative when `a` is older. */
export function compareAuditIds(a: string, b: string): number {
  const [aMs = 0, aSeq = 0] = a.split('-').map(Number);
  const [bMs = 0, bSeq = 0] = b.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq;
}

function idMs(record: AuditRecord | undefined): number {
  return Number(record?.id.split('-')[0] ?? 0);
}

/** The audit trail in this process: the in-process store's, and a single instance's only. */
export class MemoryAuditLog implements AuditLog {
  readonly kind = 'memory' as const;
  readonly #retention: AuditRetention;
  readonly #now: () => number;
  /** Oldest first. */
  readonly #records: AuditRecord[] = [];
  #lastMs = 0;
  #seq = 0;

  constructor(options: AuditRetention & { now: () => number }) {
    this.#retention = options;
    this.#now = options.now;
  }

  async append(entry: AuditEntry): Promise<AuditRecord> {
    const nowMs = this.#now();
    if (nowMs > this.#lastMs) {
      this.#lastMs = nowMs;
      this.#seq = 0;
    } else {
      this.#seq += 1;
    }
    const record = { ...entry, id: `${this.#lastMs}-${this.#seq}` };
    this.#records.push(record);
    // By the ids' time, the store's clock, as Redis trims by its own.
    const oldest = this.#lastMs - this.#retention.retentionMs;
    let drop = Math.max(0, this.#records.length - this.#retention.maxRecords);
    while (drop < this.#records.length && idMs(this.#records[drop]) < oldest) drop += 1;
    if (drop > 0) this.#records.splice(0, drop);
    return record;
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    const records: AuditRecord[] = [];
    for (let i = this.#records.length - 1; i >= 0 && records.length <= query.limit; i--) {
      const record = this.#records[i] as AuditRecord;
      if (query.beforeId && compareAuditIds(record.id, query.beforeId) >= 0) continue;
      if (query.sinceMs !== undefined && record.timeMs < query.sinceMs) break;
      if (matchesAuditQuery(record, query)) records.push(record);
    }
    const more = records.length > query.limit;
    if (more) records.pop();
    return { records, next: more ? records[records.length - 1]?.id : undefined };
  }

  async close(): Promise<void> {}
}
