import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { newKeyRecord } from '../../src/core/key-record.js';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { RedisKeyStore, type StoreReset } from '../../src/store/redis/redis-key-store.js';
import { eventually } from '../../harness/eventually.js';
import { TestRedisCluster } from '../../harness/redis-topology.js';

let cluster: TestRedisCluster;
before(async () => {
  cluster = await TestRedisCluster.start();
});
after(() => cluster.stop());

test('a FLUSHALL under a running key store drops every cached key and reports the store emptied', async (t) => {
  const redis = createRedisConnection(
    { mode: 'cluster', nodes: cluster.seedNodes, tls: false },
    { commandTimeoutMs: 1_000 },
  );
  await redis.connect();
  const resets: StoreReset[] = [];
  const keyStore = new RedisKeyStore({
    redis,
    ownsClient: true,
    confirmEveryMs: 50,
    onStoreReset: (how) => resets.push(how),
  });
  t.after(() => keyStore.close());
  const forgotten: (string | undefined)[] = [];
  keyStore.watchKeyChanges((id) => forgotten.push(id));
  await eventually(
    async () => (keyStore.changesDeliveredAsOf() > Number.NEGATIVE_INFINITY ? true : undefined),
    () => 'the change channel was never confirmed',
  );
  const record = newKeyRecord({
    id: `key_flush${process.pid}`,
    name: 'flushed',
    owner: 'test',
    org: 'flush-org',
    tier: 'pro',
    secret: { sha256: 'b'.repeat(64), hint: 'qd_live_AAAA…' },
    nowMs: Date.now(),
  });
  await keyStore.putKey(record, Date.now());
  const wipesBefore = forgotten.filter((id) => id === undefined).length;

  await cluster.flushAll();

  await eventually(
    async () => (resets.includes('emptied') ? true : undefined),
    () => `the emptied store went unnoticed (resets: ${resets.join(', ')})`,
  );
  assert.ok(forgotten.filter((id) => id === undefined).length > wipesBefore, 'every cached key was dropped');
  assert.equal(await keyStore.getKey(record.id), undefined);
});
