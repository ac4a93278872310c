import {
  matchesAuditQuery,
  type AuditEntry,
  type AuditLog,
  type AuditPage,
  type AuditQuery,
  type AuditRecord,
  type AuditRetention,
} from '../audit-log.js';
import { AUDIT_STREAM } from '../keys.js';
import { callRedis } from './call-redis.js';
import type { RedisConnection } from './connection.js';

/** Stream entries read per XREVRANGE while a filtered listing fills its page. */
const READ_BATCH = 500;

/**
 * The audit trail as one Redis stream (AUDIT_STREAM): ids are Redis's time, trimmed exactly to the
 * retention (age and count) at every append, and the stream expires whole after the retention without
 * appends. Admin calls are rare: exact trimming is cheap.
 */
export class RedisAuditLog implements AuditLog {
  readonly kind = 'redis' as const;
  readonly #redis: RedisConnection;
  readonly #retention: AuditRetention;

  constructor(options: AuditRetention & { redis: RedisConnection }) {
    this.#redis = options.redis;
    this.#retention = options;
  }

  async append(entry: AuditEntry): Promise<AuditRecord> {
    const { maxRecords, retentionMs } = this.#retention;
    const id = await callRedis(() =>
      this.#redis.xadd(AUDIT_STREAM, 'MAXLEN', maxRecords, '*', 'doc', JSON.stringify(entry)),
    );
    // The id is Redis's time: records older than the retention by that clock go, as every replica agrees.
    const cut = Math.max(0, Number((id as string).split('-')[0]) - retentionMs);
    await callRedis(() =>
      this.#redis
        .pipeline()
        .xtrim(AUDIT_STREAM, 'MINID', `${cut}-0`)
        .pexpire(AUDIT_STREAM, retentionMs)
        .exec(),
    );
    return { ...entry, id: id as string };
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    const records: AuditRecord[] = [];
    let end = query.beforeId ? `(${query.beforeId}` : '+';
    for (;;) {
      const batch = await callRedis(() => this.#redis.xrevrange(AUDIT_STREAM, end, '-', 'COUNT', READ_BATCH));
      for (const [id, fields] of batch) {
        const record: AuditRecord = { ...(JSON.parse(fields[1] ?? '{}') as AuditEntry), id };
        if (query.sinceMs !== undefined && record.timeMs < query.sinceMs) return page(records, query);
        if (matchesAuditQuery(record, query)) records.push(record);
        if (records.length > query.limit) return page(records, query);
      }
      if (batch.length < READ_BATCH) return page(records, query);
      end = `(${batch[batch.length - 1]?.[0] ?? '0-0'}`;
    }
  }

  async close(): Promise<void> {}
}

function page(records: AuditRecord[], query: AuditQuery): AuditPage {
  const more = records.length > query.limit;
  if (more) records.pop();
  return { records, next: more ? records[records.length - 1]?.id : undefined };
}
