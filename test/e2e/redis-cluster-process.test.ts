import { TestRedisCluster } from '../../harness/redis-topology.js';
import { endToEndOn } from './redis-topology-process.js';

endToEndOn('cluster', async () => {
  const cluster = await TestRedisCluster.start();
  return { env: { QUOTAD_REDIS_CLUSTER: cluster.seeds }, stop: () => cluster.stop() };
});
