import { after, before } from 'node:test';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { describeQuotaContract } from './quota-contract.js';

let server: TestRedisServer;
before(async () => {
  server = await TestRedisServer.start();
});
after(() => server.stop());

describeQuotaContract('RedisStore', async (clock) => {
  const redis = createRedisClient(server.url, { commandTimeoutMs: 2_000 });
  await redis.connect();
  return new RedisStore({ redis, clock });
});
