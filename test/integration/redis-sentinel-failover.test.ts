import { after, before, test } from 'node:test';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { killMasterUnderLoad } from '../helpers/failover.js';
import { TestRedisSentinel } from '../../harness/redis-topology.js';

let group: TestRedisSentinel;
before(async () => {
  group = await TestRedisSentinel.start();
});
after(() => group.stop());

test('SIGKILL of the Sentinel master under load: all answered in time, Redis back, revocation kept', async (t) => {
  await killMasterUnderLoad(t, {
    connect: async () => {
      const redis = createRedisConnection(
        { mode: 'sentinel', sentinels: group.sentinelNodes, name: group.name, tls: false },
        { commandTimeoutMs: 1_000 },
      );
      await redis.connect();
      return redis;
    },
    orgOnKilledMaster: 'sentinel-failover',
    killMaster: async () => (await group.currentMaster()).kill(),
    // down-after-milliseconds 1 s, then a vote and the promotion.
    failoverBoundMs: 4_000,
  });
});
