import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { RedisKeyStore, type StoreReset } from '../../src/store/redis/redis-key-store.js';
import { STORE_MARKER } from '../../src/store/keys.js';
import { eventually } from '../../harness/eventually.js';
import { TestRedisServer } from '../../harness/redis-server.js';

let redis: TestRedisServer;
let inspector: Redis;
before(async () => {
  redis = await TestRedisServer.start();
  inspector = redis.client();
});
after(async () => {
  inspector.disconnect();
  await redis.stop();
});

test('a Redis restarted without its data is noticed by its run id even when the marker was written back: the key cache is dropped', async (t) => {
  const connection = createRedisConnection(
    { mode: 'standalone', url: redis.url },
    { commandTimeoutMs: 1_000 },
  );
  await connection.connect();
  const resets: StoreReset[] = [];
  const servers: [string, string][] = [];
  const keyStore = new RedisKeyStore({
    redis: connection,
    ownsClient: true,
    onStoreReset: (how) => resets.push(how),
    onServerChanged: (from, to) => servers.push([from, to]),
    // Marker checks run only when this test calls them (no confirmation within the test's time).
    confirmEveryMs: 600_000,
  });
  t.after(() => keyStore.close());
  let drops = 0;
  keyStore.watchKeyChanges((id) => {
    if (id === undefined) drops += 1;
  });
  await keyStore.checkStoreMarker();
  assert.equal(await keyStore.checkStoreMarker(), undefined, 'the same server and marker: nothing to drop');
  resets.length = 0; // a new store: missing at start
  const marker = await inspector.get(STORE_MARKER);
  assert.ok(marker, 'the key store marked the store');

  await redis.kill();
  await redis.resume();
  // The marker as it was, as if copied or rewritten: only the server's identity tells the store changed.
  await inspector.set(STORE_MARKER, marker);
  // Both connections back (the change channel's resubscription drops the cache on its own: wait it out).
  const before = drops;
  await eventually(
    async () => (connection.status === 'ready' && drops > before ? true : undefined),
    () => 'the connections never came back',
  );
  const dropsBefore = drops;

  assert.equal(await keyStore.checkStoreMarker(), 'server-changed');
  assert.equal(drops, dropsBefore + 1, 'every cached key was dropped');
  assert.deepEqual(resets, [], 'the marker read the same');
  assert.equal(servers.length, 1);
  const [from, to] = servers[0] as [string, string];
  assert.notEqual(from.split(':')[0], to.split(':')[0], 'the run id changed');
});
