/**
 * The decision logic without the transport: QuotaAuthority.check + record, in one process, one at a time.
 *
 *   node dist/bench/authority.js [--store memory|redis] [--operations 50000]
 *
 * With --store redis a private redis-server is started; time then includes one round trip per call.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parsePolicy } from '../src/policy/load.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { createRedisClient, RedisStore } from '../src/store/redis/redis-store.js';
import type { QuotaStore } from '../src/store/store.js';
import { makeAuthority } from '../test/helpers/authority.js';
import { REPO_ROOT } from '../test/helpers/authority-process.js';
import { TestRedisServer } from '../test/helpers/redis-server.js';

const { values } = parseArgs({
  options: { store: { type: 'string', default: 'memory' }, operations: { type: 'string', default: '50000' } },
});
const operations = Number(values.operations);
const policy = parsePolicy(readFileSync(`${REPO_ROOT}config/policy.yaml`, 'utf8'), 'config/policy.yaml');
const clock = { now: () => Date.now() };

const redis = values.store === 'redis' ? await TestRedisServer.start() : undefined;
let store: QuotaStore;
if (redis) {
  const client = createRedisClient(redis.url, { commandTimeoutMs: 1_000 });
  await client.connect();
  store = new RedisStore({ redis: client });
} else {
  store = new MemoryStore({ clock });
}
const { authority } = makeAuthority(store, clock, policy);

const run = async (count: number) => {
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const principal = { subject: `s${i % 10_000}`, org: `o${i % 97}`, tier: 'pro' };
    const requestId = `r${process.pid}-${started}-${i}`;
    await authority.check({
      requestId,
      principal,
      model: 'gpt-4o-mini',
      inputTokens: 200,
      maxOutputTokens: 300,
      dryRun: false,
    });
    await authority.record({
      requestId,
      principal,
      model: 'gpt-4o-mini',
      inputTokens: 200,
      outputTokens: 120,
      outcome: 'completed',
    });
  }
  return performance.now() - started;
};
await run(Math.min(5_000, operations)); // warm-up
const elapsedMs = await run(operations);
console.log(
  JSON.stringify({
    store: values.store,
    operations,
    operationsPerSecond: Math.round(operations / (elapsedMs / 1_000)),
  }),
);
await store.close();
await redis?.stop();
