import { after, before } from 'node:test';
import type { Redis } from 'ioredis';
import { RedisAuditLog } from '../../src/store/redis/redis-audit-log.js';
import { createRedisClient } from '../../src/store/redis/redis-store.js';
import { AUDIT_STREAM } from '../../src/store/keys.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { describeAuditLogContract } from './audit-log-contract.js';

let server: TestRedisServer;
before(async () => {
  server = await TestRedisServer.start();
});
after(() => server.stop());

// One stream per server: each test starts from an empty one.
describeAuditLogContract('RedisAuditLog', async (_clock, retention) => {
  const redis: Redis = createRedisClient(server.url, { commandTimeoutMs: 2_000 });
  await redis.connect();
  await redis.del(AUDIT_STREAM);
  const log = new RedisAuditLog({ redis, ...retention });
  return {
    kind: log.kind,
    append: (entry) => log.append(entry),
    list: (query) => log.list(query),
    close: async () => {
      await log.close();
      redis.disconnect();
    },
  };
});
