import { TestRedisSentinel } from '../../harness/redis-topology.js';
import { endToEndOn } from './redis-topology-process.js';

endToEndOn('sentinel', async () => {
  const group = await TestRedisSentinel.start();
  return {
    env: { QUOTAD_REDIS_SENTINELS: group.seeds, QUOTAD_REDIS_SENTINEL_NAME: group.name },
    stop: () => group.stop(),
  };
});
