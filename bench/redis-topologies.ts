/**
 * Decisions a second on one standalone Redis against a 3-master Redis Cluster (a replica each), in the
 * same run; a batch that spans shards; and the price of confirming admin writes with WAIT.
 *
 *   npm run --silent build && node dist/bench/redis-topologies.js [--seconds 5] [--concurrency 64]
 *
 * The authority (planning + store client) runs in this process, as in `quotad serve`, with no gRPC in
 * front: the figures are the store path's. Results go between the redis-topologies markers of
 * bench/RESULTS.md.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { Clock } from '../src/core/clock.js';
import { newKeyRecord } from '../src/core/key-record.js';
import { createRedisConnection, type RedisTarget } from '../src/store/redis/connection.js';
import { RedisKeyStore } from '../src/store/redis/redis-key-store.js';
import { RedisStore } from '../src/store/redis/redis-store.js';
import { checkInput, makeAuthority } from '../harness/authority.js';
import { REPO_ROOT } from '../harness/authority-process.js';
import { limit, policyWith, tier } from '../harness/policy.js';
import { TestRedisServer } from '../harness/redis-server.js';
import { TestRedisCluster } from '../harness/redis-topology.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
    orgs: { type: 'string', default: '1000' },
  },
});
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const ORGS = Number(values.orgs);
const clock: Clock = { now: () => Date.now() };
const policy = policyWith([
  tier('bench', [
    limit({ name: 'requests_per_minute', kind: 'rate', limit: 1_000_000_000 }),
    limit({ name: 'tokens_per_day', kind: 'budget', unit: 'tokens', limit: 1_000_000_000_000 }),
  ]),
]);

async function connect(target: RedisTarget) {
  const redis = createRedisConnection(target, { commandTimeoutMs: 2_000 });
  await redis.connect();
  return redis;
}

/** Closed loop: `CONCURRENCY` callers, each asking again as soon as it is answered. */
/** CPU seconds the given Redis processes have used (INFO cpu: user + sys, main thread and children). */
async function redisCpuSeconds(ports: number[]): Promise<number> {
  let total = 0;
  for (const port of ports) {
    const client = new Redis({ host: '127.0.0.1', port });
    const text = await client.info('cpu');
    client.disconnect();
    for (const field of ['used_cpu_user', 'used_cpu_sys']) {
      total += Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
    }
  }
  return total;
}

interface Throughput {
  rate: number;
  p99Ms: number;
  /** CPU µs per decision: in this process (planning + client), and in Redis (all masters together). */
  clientUs: number;
  redisUs: number;
}

async function decisionsPerSecond(target: RedisTarget, masterPorts: number[]): Promise<Throughput> {
  const store = new RedisStore({ redis: await connect(target) });
  const { authority } = makeAuthority(store, clock, policy, 'silent');
  const latencies: number[] = [];
  const run = async (until: number, record: boolean, index: number) => {
    let n = index;
    while (Date.now() < until) {
      n += CONCURRENCY;
      const org = `org-${n % ORGS}`;
      const started = performance.now();
      const decision = await authority.check(checkInput({ subject: `u-${n % 50}`, org, tier: 'bench' }));
      if (decision.degraded) throw new Error('a decision fell back: the store failed');
      if (record) latencies.push(performance.now() - started);
    }
  };
  const workers = (ms: number, record: boolean) =>
    Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => run(Date.now() + ms, record, i)));
  await workers(1_000, false);
  const redisBefore = await redisCpuSeconds(masterPorts);
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  await workers(SECONDS * 1_000, true);
  const elapsed = (performance.now() - started) / 1_000;
  const client = process.cpuUsage(clientBefore);
  const redisSeconds = (await redisCpuSeconds(masterPorts)) - redisBefore;
  latencies.sort((a, b) => a - b);
  authority.close();
  await store.close();
  return {
    rate: latencies.length / elapsed,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    clientUs: (client.user + client.system) / latencies.length,
    redisUs: (redisSeconds * 1e6) / latencies.length,
  };
}

/** A batch of `size` checks for `size` different orgs (so, on Cluster, every shard), sent at once. */
async function crossShardBatch(target: RedisTarget, size: number): Promise<{ p50Ms: number; p99Ms: number }> {
  const store = new RedisStore({ redis: await connect(target) });
  const { authority } = makeAuthority(store, clock, policy, 'silent');
  const latencies: number[] = [];
  for (let round = 0; round < 300; round++) {
    const started = performance.now();
    await Promise.all(
      Array.from({ length: size }, (_, i) =>
        authority.check(checkInput({ subject: 'u', org: `batch-org-${i}`, tier: 'bench' })),
      ),
    );
    if (round >= 50) latencies.push(performance.now() - started);
  }
  latencies.sort((a, b) => a - b);
  authority.close();
  await store.close();
  return {
    p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
  };
}

/** Key writes one after another, confirmed by `replicas` replicas (WAIT) or not. */
async function keyWriteMs(target: RedisTarget, replicas: number): Promise<number> {
  const keyStore = new RedisKeyStore({
    redis: await connect(target),
    ownsClient: true,
    writeReplicas: replicas,
    writeReplicaTimeoutMs: 1_000,
  });
  const rounds = 500;
  const started = performance.now();
  for (let i = 0; i < rounds; i++) {
    const record = newKeyRecord({
      id: `key_bench${replicas}${String(i).padStart(6, '0')}`,
      name: 'bench',
      owner: 'bench',
      org: `org-${i}`,
      tier: 'bench',
      secret: { sha256: `${replicas}${String(i).padStart(63, '0')}`, hint: 'qd_live_AAAA…' },
      nowMs: Date.now(),
    });
    await keyStore.putKey(record, Date.now());
  }
  const ms = (performance.now() - started) / rounds;
  await keyStore.close();
  return ms;
}

const single = await TestRedisServer.start();
const cluster = await TestRedisCluster.start();
const singleTarget: RedisTarget = { mode: 'standalone', url: single.url };
const clusterTarget: RedisTarget = { mode: 'cluster', nodes: cluster.seedNodes, tls: false };
try {
  const rows: string[] = [];
  const singleRate = await decisionsPerSecond(singleTarget, [single.port]);
  const clusterRate = await decisionsPerSecond(clusterTarget, await cluster.masterPorts());
  const singleBatch = await crossShardBatch(singleTarget, 30);
  const clusterBatch = await crossShardBatch(clusterTarget, 30);
  const write0 = await keyWriteMs(clusterTarget, 0);
  const write1 = await keyWriteMs(clusterTarget, 1);
  rows.push(
    `| decisions/s, ${CONCURRENCY} concurrent callers, ${ORGS} orgs (2 limits each) | ${Math.round(singleRate.rate)} (p99 ${singleRate.p99Ms.toFixed(1)} ms) | ${Math.round(clusterRate.rate)} (p99 ${clusterRate.p99Ms.toFixed(1)} ms) |`,
    `| CPU per decision: this process / Redis (all masters) | ${singleRate.clientUs.toFixed(0)} µs / ${singleRate.redisUs.toFixed(0)} µs | ${clusterRate.clientUs.toFixed(0)} µs / ${clusterRate.redisUs.toFixed(0)} µs |`,
    `| a batch of 30 checks for 30 orgs (all 3 shards), latency | p50 ${singleBatch.p50Ms.toFixed(1)} ms, p99 ${singleBatch.p99Ms.toFixed(1)} ms | p50 ${clusterBatch.p50Ms.toFixed(1)} ms, p99 ${clusterBatch.p99Ms.toFixed(1)} ms |`,
    `| an admin key write, no WAIT / WAIT 1 replica (Cluster only) | — | ${write0.toFixed(2)} ms / ${write1.toFixed(2)} ms |`,
  );
  const section = [
    '<!-- redis-topologies -->',
    '## One Redis against a Redis Cluster',
    '',
    `\`npm run --silent build && node dist/bench/redis-topologies.js --seconds ${SECONDS} --concurrency ${CONCURRENCY}\`, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}, load average ${os.loadavg()[0]?.toFixed(1)} at the end: other work shared the cores), redis-server and this process on one host. The authority's store path in-process (planning, scripts, ioredis), no gRPC. Cluster: 3 masters with a replica each, all on this host.`,
    '',
    '| measure | one Redis | 3-master Cluster |',
    '| --- | --- | --- |',
    ...rows,
    '',
    '<!-- /redis-topologies -->',
  ].join('\n');
  process.stdout.write(`${section}\n`);
  const path = join(REPO_ROOT, 'bench', 'RESULTS.md');
  const current = await readFile(path, 'utf8');
  const marked = /<!-- redis-topologies -->[\s\S]*<!-- \/redis-topologies -->/;
  await writeFile(
    path,
    marked.test(current) ? current.replace(marked, section) : `${current.trimEnd()}\n\n${section}\n`,
  );
} finally {
  await cluster.stop();
  await single.stop();
}
