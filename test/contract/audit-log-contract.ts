import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import {
  compareAuditIds,
  type AuditEntry,
  type AuditLog,
  type AuditRetention,
} from '../../src/store/audit-log.js';
import { eventually } from '../../harness/eventually.js';

/** Opens an audit log with this retention on the given clock (a Redis one keeps Redis's time); the suite closes it. */
export type AuditLogFactory = (clock: ManualClock, retention: AuditRetention) => Promise<AuditLog>;

const ROOMY: AuditRetention = { retentionMs: 86_400_000, maxRecords: 1_000 };

function entry(overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    timeMs: Date.now(),
    actor: 'alice',
    action: 'SetKeyLimits',
    keyId: 'key_a',
    outcome: 'OK',
    detail: '',
    peer: 'ipv4:127.0.0.1:50000',
    before: { tier: 'pro', state: 'active', expiresMs: null, limits: [], secrets: 1, signing: 'off' },
    after: {
      tier: 'pro',
      state: 'active',
      expiresMs: null,
      limits: [{ name: 'rpm', value: '100' }],
      secrets: 1,
      signing: 'optional',
    },
    ...overrides,
  };
}

/** The behaviour every AuditLog must show. */
export function describeAuditLogContract(storeName: string, openLog: AuditLogFactory): void {
  describe(`audit log contract on ${storeName}`, () => {
    async function setup(retention = ROOMY) {
      const clock = new ManualClock(Date.now());
      return { clock, log: await openLog(clock, retention) };
    }

    test('records come back newest first, as appended, with ids that sort by time', async (t) => {
      const { log } = await setup();
      t.after(() => log.close());
      const first = await log.append(entry({ action: 'CreateKey', before: null }));
      const second = await log.append(entry({ outcome: 'PERMISSION_DENIED', after: null, actor: 'bob' }));
      const page = await log.list({ limit: 10 });
      assert.deepEqual(page, { records: [second, first], next: undefined });
      assert.ok(compareAuditIds(first.id, second.id) < 0);
    });

    test('filters by key, actor, action and time combine, and pages follow next until none is left', async (t) => {
      const { log } = await setup();
      t.after(() => log.close());
      const old = await log.append(entry({ timeMs: 1_000, keyId: 'key_b' }));
      const wanted = [];
      for (let i = 0; i < 5; i++) wanted.push(await log.append(entry({ keyId: 'key_b', actor: 'carol' })));
      await log.append(entry({ keyId: 'key_b', actor: 'dave' }));
      await log.append(entry({ keyId: 'key_c', actor: 'carol' }));
      await log.append(entry({ keyId: 'key_b', actor: 'carol', action: 'RevokeKey' }));
      const query = { keyId: 'key_b', actor: 'carol', action: 'SetKeyLimits', limit: 2 };
      const seen = [];
      let page = await log.list(query);
      seen.push(...page.records);
      while (page.next) {
        page = await log.list({ ...query, beforeId: page.next });
        seen.push(...page.records);
      }
      assert.deepEqual(seen, wanted.reverse());
      const recent = await log.list({ keyId: 'key_b', sinceMs: 2_000, limit: 100 });
      assert.ok(!recent.records.some((record) => record.id === old.id));
    });

    test('past max records, the oldest go', async (t) => {
      const { log } = await setup({ retentionMs: 86_400_000, maxRecords: 3 });
      t.after(() => log.close());
      const appended = [];
      for (let i = 0; i < 5; i++) appended.push(await log.append(entry({ detail: `n${i}` })));
      assert.deepEqual((await log.list({ limit: 10 })).records, appended.slice(2).reverse());
    });

    test("records older than the retention (by the store's clock) go at the next append", async (t) => {
      const retentionMs = 200;
      const { clock, log } = await setup({ retentionMs, maxRecords: 1_000 });
      t.after(() => log.close());
      const old = await log.append(entry({ detail: 'old' }));
      clock.advance(retentionMs + 1);
      await eventually(
        async () => {
          await log.append(entry({ detail: 'new' }));
          const { records } = await log.list({ limit: 1_000 });
          return records.some((record) => record.id === old.id) ? undefined : true;
        },
        () => 'the old record stayed past its retention',
      );
    });
  });
}
