import { after, before } from 'node:test';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { RedisKeyStore } from '../../src/store/redis/redis-key-store.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { TestRedisCluster } from '../../harness/redis-topology.js';
import { describeKeyStoreContract } from './key-store-contract.js';
import { describeQuotaContract } from './quota-contract.js';

// One real Cluster (3 masters, a replica each) for the whole file. Cluster refuses a script whose keys
// span slots (CROSSSLOT), so every contract test passing here also shows each script touches one slot.
let cluster: TestRedisCluster;
before(async () => {
  cluster = await TestRedisCluster.start();
});
after(() => cluster.stop());

async function connect() {
  const redis = createRedisConnection(
    { mode: 'cluster', nodes: cluster.seedNodes, tls: false },
    { commandTimeoutMs: 2_000 },
  );
  await redis.connect();
  return redis;
}

describeQuotaContract('RedisStore on Redis Cluster', async (clock) => {
  return new RedisStore({ redis: await connect(), clock });
});

describeKeyStoreContract('RedisKeyStore on Redis Cluster', async () => {
  return new RedisKeyStore({ redis: await connect(), ownsClient: true });
});
