import { after, before } from 'node:test';
import { RedisKeyStore } from '../../src/store/redis/redis-key-store.js';
import { createRedisClient } from '../../src/store/redis/redis-store.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { describeKeyStoreContract } from './key-store-contract.js';

let server: TestRedisServer;
before(async () => {
  server = await TestRedisServer.start();
});
after(() => server.stop());

describeKeyStoreContract('RedisKeyStore', async () => {
  const redis = createRedisClient(server.url, { commandTimeoutMs: 2_000 });
  await redis.connect();
  return new RedisKeyStore({ redis, ownsClient: true });
});
