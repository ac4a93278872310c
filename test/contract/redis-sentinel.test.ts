import { after, before } from 'node:test';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { RedisKeyStore } from '../../src/store/redis/redis-key-store.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { TestRedisSentinel } from '../../harness/redis-topology.js';
import { describeKeyStoreContract } from './key-store-contract.js';
import { describeQuotaContract } from './quota-contract.js';

// One real Sentinel group (a master, a replica, three sentinels) for the whole file; the client finds
// the master by asking the sentinels.
let group: TestRedisSentinel;
before(async () => {
  group = await TestRedisSentinel.start();
});
after(() => group.stop());

async function connect() {
  const redis = createRedisConnection(
    { mode: 'sentinel', sentinels: group.sentinelNodes, name: group.name, tls: false },
    { commandTimeoutMs: 2_000 },
  );
  await redis.connect();
  return redis;
}

describeQuotaContract('RedisStore on Redis Sentinel', async (clock) => {
  return new RedisStore({ redis: await connect(), clock });
});

describeKeyStoreContract('RedisKeyStore on Redis Sentinel', async () => {
  return new RedisKeyStore({ redis: await connect(), ownsClient: true });
});
