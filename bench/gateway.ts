/**
 * What the gateway adds to a model call: the same chat completion, for the same time and connections,
 * sent straight to the demo upstream and then through `quotad gateway` (API key, CheckQuota, relay,
 * RecordUsage), alternating so drift on a noisy machine shows.
 *
 *   node dist/bench/gateway.js [--seconds 10] [--connections 32] [--stream] [--store memory|redis]
 *                              [--rounds 2] [--warmup 5] [--authority-timeout 2s] [--redis-timeout 1s]
 *
 * One process runs the demo upstream, the authority, the gateway and the load (autocannon); with
 * --store redis a private redis-server is started too. The policy is config/policy.yaml plus a `bench`
 * tier with the `pro` tier's limits raised so far that nothing is ever refused: the decision does its
 * real work (five limits) and the benchmark measures overhead, not refusals. Any non-2xx answer or
 * connection error makes the run fail (exit 1): its figures would mean nothing. So does a decision the
 * authority took by a limit's on_store_failure (the store timed out) instead of doing its work.
 *
 * --authority-timeout is the gateway's CheckQuota deadline and --redis-timeout the authority's bound on a
 * Redis command (their defaults unless given: 2s and 1s since #12, 100ms and 50ms before): on a saturated
 * machine both round trips queue behind everything else in the process and can miss short ones (503
 * quota_unavailable; degraded decisions). At the end the script reports the concurrency leases the bench key still holds: reservations
 * that were never settled.
 */
import autocannon from 'autocannon';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Histogram, Registry } from 'prom-client';
import { parse, stringify } from 'yaml';
import { startDemoUpstream } from '../src/demo/upstream.js';
import { parseServeConfig } from '../src/main/config.js';
import { startGateway } from '../src/main/gateway.js';
import { startAuthority } from '../src/main/serve.js';
import { sha256 } from '../src/keys/api-key.js';
import { REPO_ROOT } from '../harness/authority-process.js';
import { quotaClient } from '../harness/grpc-clients.js';
import { TestRedisServer } from '../harness/redis-server.js';
import { inProcessGatewayConfig } from '../harness/serve-config.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    stream: { type: 'boolean', default: false },
    store: { type: 'string', default: 'memory' },
    rounds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '5' },
    'authority-timeout': { type: 'string' },
    'redis-timeout': { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const warmupSeconds = Number(values.warmup);
const stream = values.stream;
if (values.store !== 'memory' && values.store !== 'redis') {
  throw new Error(`--store: expected memory or redis, got '${values.store}'`);
}

const requestBody = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello to the benchmark' }],
  max_tokens: 16,
  ...(stream ? { stream: true } : {}),
});

type Target = 'direct' | 'gateway';

interface Endpoint {
  url: string;
  headers: Record<string, string>;
}

/** Each limit's new ceiling, by kind: far above what a run can spend, within the schema's bounds. */
const BENCH_LIMITS: Record<string, number | string> = {
  'rate/requests': 100_000_000, // × 1 m window = 6e12, under the 2^50 cap
  'rate/tokens': 10_000_000_000,
  'budget/tokens': 1_000_000_000_000_000,
  'budget/usd': '100000000.00', // the schema takes at most nine digits of dollars
  concurrency: 1_000_000,
};

interface PolicyFile {
  tiers: Record<string, { limits: Record<string, unknown>[] } & Record<string, unknown>>;
}

/** config/policy.yaml plus a `bench` tier: the `pro` tier's limits (kinds, names, failure modes), raised. */
async function writeBenchPolicy(dir: string): Promise<string> {
  const file = parse(await readFile(`${REPO_ROOT}config/policy.yaml`, 'utf8')) as PolicyFile;
  const pro = file.tiers.pro;
  if (!pro) throw new Error('config/policy.yaml has no pro tier');
  const limits = pro.limits.map((limit) => {
    const kind = limit.type === 'concurrency' ? 'concurrency' : `${String(limit.type)}/${String(limit.unit)}`;
    const raised = BENCH_LIMITS[kind];
    if (raised === undefined) throw new Error(`no bench ceiling for a ${kind} limit (${String(limit.name)})`);
    return { ...limit, limit: raised };
  });
  file.tiers.bench = { ...pro, limits };
  const path = join(dir, 'policy.yaml');
  await writeFile(path, stringify(file));
  return path;
}

interface HistogramSnapshot {
  count: number;
  sum: number;
  /** Cumulative counts by upper bound (seconds), +Inf last. */
  buckets: Map<number, number>;
}

/** One histogram's totals over the label sets `keep` accepts (all by default). */
async function histogram(
  registry: Registry,
  name: string,
  keep: (labels: Record<string, string | number | undefined>) => boolean = () => true,
): Promise<HistogramSnapshot> {
  const metric = registry.getSingleMetric(name) as Histogram | undefined;
  if (!metric) throw new Error(`no metric ${name}`);
  const snapshot: HistogramSnapshot = { count: 0, sum: 0, buckets: new Map() };
  for (const { metricName, labels, value } of (await metric.get()).values) {
    if (!keep(labels)) continue;
    if (metricName === `${name}_count`) snapshot.count += value;
    else if (metricName === `${name}_sum`) snapshot.sum += value;
    else if (metricName === `${name}_bucket`) {
      const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
      snapshot.buckets.set(le, (snapshot.buckets.get(le) ?? 0) + value);
    }
  }
  return snapshot;
}

/** A counter's total over all its label sets. */
async function counter(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  return (await metric.get()).values.reduce((sum, { value }) => sum + value, 0);
}

function since(after: HistogramSnapshot, before: HistogramSnapshot): HistogramSnapshot {
  const buckets = new Map<number, number>();
  for (const [le, count] of after.buckets) buckets.set(le, count - (before.buckets.get(le) ?? 0));
  return { count: after.count - before.count, sum: after.sum - before.sum, buckets };
}

/** Linear interpolation inside the bucket that holds the quantile, as Prometheus' histogram_quantile. */
function quantileMs(h: HistogramSnapshot, q: number): number {
  const rank = q * h.count;
  let lower = 0;
  let below = 0;
  for (const [le, cumulative] of [...h.buckets].sort((a, b) => a[0] - b[0])) {
    if (cumulative >= rank) {
      if (le === Infinity) return lower * 1000;
      const inside = cumulative - below;
      return (lower + (le - lower) * (inside > 0 ? (rank - below) / inside : 1)) * 1000;
    }
    lower = le;
    below = cumulative;
  }
  return lower * 1000;
}

const meanMs = (h: HistogramSnapshot) => (h.count > 0 ? (h.sum / h.count) * 1000 : 0);
const round2 = (n: number) => Math.round(n * 100) / 100;

/**
 * One request before any load: the target answers 200 and, when streaming, ends its stream. A cold
 * gateway's first CheckQuota (first key lookup, code not yet compiled) can miss its deadline and get 503,
 * so that answer is retried a few times (and said on stderr); any other failure stops the benchmark.
 */
async function sanityCheck(target: Target, endpoint: Endpoint): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(endpoint.url, {
      method: 'POST',
      headers: endpoint.headers,
      body: requestBody,
    });
    const text = await response.text();
    if (response.status === 200 && (!stream || text.includes('data: [DONE]'))) return;
    if (response.status !== 503 || attempt === 5) {
      throw new Error(`${target}: sanity request got HTTP ${response.status}: ${text.slice(0, 300)}`);
    }
    console.error(`${target}: cold request ${attempt} got 503 (${text.slice(0, 120)}); retrying`);
  }
}

/**
 * Concurrency leases the bench key still holds once the load is over and in-flight calls have had time to
 * finish: each is a request that was reserved but never settled, and keeps its slot until the lease ends.
 */
async function concurrencyInUse(grpcPort: number, secret: string): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const client = quotaClient(`127.0.0.1:${grpcPort}`);
  try {
    const usage = await client.getUsage({ apiKeySha256: sha256(secret) });
    return usage.limits
      .filter((limit) => limit.kind === 'CONCURRENCY')
      .reduce((sum, limit) => sum + Number(limit.used), 0);
  } finally {
    client.close();
  }
}

async function main() {
  /** Everything started so far, stopped in reverse order however the benchmark ends. */
  const started: (() => Promise<unknown>)[] = [];
  try {
    await benchmark(started);
  } finally {
    for (const stop of started.reverse()) await stop();
  }
}

async function benchmark(started: (() => Promise<unknown>)[]) {
  const dir = await mkdtemp(join(tmpdir(), 'quotad-bench-gateway-'));
  started.push(() => rm(dir, { recursive: true, force: true }));
  const redis = values.store === 'redis' ? await TestRedisServer.start() : undefined;
  if (redis) started.push(() => redis.stop());
  const upstream = await startDemoUpstream({ host: '127.0.0.1', port: 0 });
  started.push(() => upstream.close());
  const authority = await startAuthority(
    parseServeConfig(
      [
        '--grpc-addr',
        '127.0.0.1:0',
        '--metrics-addr',
        '127.0.0.1:0',
        '--log-level',
        'silent',
        '--policy',
        await writeBenchPolicy(dir),
        ...(redis ? ['--redis-url', redis.url] : []),
        ...(values['redis-timeout'] ? ['--redis-timeout', values['redis-timeout']] : []),
      ],
      {},
    ),
  );
  started.push(() => authority.stop());
  const { secret } = await authority.keys.create({
    name: 'bench',
    owner: 'bench',
    org: 'bench',
    tier: 'bench',
    expiresInMs: 0,
    type: 'live',
  });
  const gateway = await startGateway(
    inProcessGatewayConfig(
      authority.grpcPort,
      upstream.url,
      [
        '--log-level',
        'silent',
        ...(values['authority-timeout'] ? ['--authority-timeout', values['authority-timeout']] : []),
      ],
      {},
    ),
  );

  started.push(() => gateway.stop());

  const json = { 'content-type': 'application/json' };
  const endpoints: Record<Target, Endpoint> = {
    direct: { url: `${upstream.url}/chat/completions`, headers: json },
    gateway: {
      url: `${gateway.url}/v1/chat/completions`,
      headers: { ...json, authorization: `Bearer ${secret}` },
    },
  };

  /** Gateway and authority histograms of interest, read before and after each gateway run. */
  const breakdown = async () => ({
    request: await histogram(
      gateway.metrics.registry,
      'quotad_gateway_request_duration_seconds',
      (l) => l.route === 'chat_completions',
    ),
    decision: await histogram(gateway.metrics.registry, 'quotad_gateway_decision_duration_seconds'),
    upstream: await histogram(gateway.metrics.registry, 'quotad_gateway_upstream_duration_seconds'),
    check: await histogram(
      authority.metrics.registry,
      'quotad_decision_duration_seconds',
      (l) => l.method === 'check',
    ),
    record: await histogram(
      authority.metrics.registry,
      'quotad_decision_duration_seconds',
      (l) => l.method === 'record',
    ),
    degraded: await counter(authority.metrics.registry, 'quotad_degraded_decisions_total'),
    storeErrors: await counter(authority.metrics.registry, 'quotad_store_errors_total'),
  });

  const load = async (target: Target, durationSeconds: number) => {
    const endpoint = endpoints[target];
    const before = await breakdown();
    const cpu = process.cpuUsage();
    const elu = performance.eventLoopUtilization();
    const result = await autocannon({
      url: endpoint.url,
      connections,
      duration: durationSeconds,
      method: 'POST',
      headers: endpoint.headers,
      body: requestBody,
    });
    const loopBusy = performance.eventLoopUtilization(elu).utilization;
    const cpuUsed = process.cpuUsage(cpu);
    // Settlements run after each answer; let them land so the next run starts from a quiet process.
    await gateway.settler.drain();
    const after = await breakdown();
    const answered = result.requests.total;
    const d = {
      request: since(after.request, before.request),
      decision: since(after.decision, before.decision),
      upstream: since(after.upstream, before.upstream),
      check: since(after.check, before.check),
      record: since(after.record, before.record),
    };
    return {
      target,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      // autocannon's histogram keeps whole milliseconds (truncated): p50 4 means 4.0–4.99 ms, and below 1 ms
      // it says 0. The mean from Little's law (in flight ÷ throughput) has no such floor.
      meanMs: round2((connections * 1000) / result.requests.average),
      requestsPerSecond: Math.round(result.requests.average),
      requests: answered,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      statusCodes: result.statusCodeStats ?? {},
      // The whole process (load generator, upstream, gateway, authority): CPU per answered request.
      cpuMsPerRequest: round2((cpuUsed.user + cpuUsed.system) / 1000 / Math.max(1, answered)),
      eventLoopUtilization: round2(loopBusy),
      degradedDecisions: after.degraded - before.degraded,
      storeErrors: after.storeErrors - before.storeErrors,
      ...(target === 'gateway'
        ? {
            gatewayRequestMeanMs: round2(meanMs(d.request)),
            gatewayDecisionMeanMs: round2(meanMs(d.decision)),
            gatewayDecisionP50Ms: round2(quantileMs(d.decision, 0.5)),
            gatewayDecisionP99Ms: round2(quantileMs(d.decision, 0.99)),
            gatewayUpstreamHeadersMeanMs: round2(meanMs(d.upstream)),
            authorityCheckMeanMs: round2(meanMs(d.check)),
            authorityRecordMeanMs: round2(meanMs(d.record)),
            checks: d.decision.count,
            settlementsRecorded: d.record.count,
          }
        : {}),
    };
  };

  type Run = Awaited<ReturnType<typeof load>>;
  const clean = (run: Run) => run.non2xx + run.errors + run.degradedDecisions === 0;
  const runs: Run[] = [];
  let failed = false;
  // The gateway's gRPC channel connects on first use; /readyz waits for it, so no check pays for it.
  for (let attempt = 1; (await fetch(`${gateway.url}/readyz`)).status !== 200; attempt++) {
    if (attempt === 10) throw new Error('the gateway never reported ready');
  }
  await sanityCheck('direct', endpoints.direct);
  await sanityCheck('gateway', endpoints.gateway);
  for (const target of ['direct', 'gateway'] as const) {
    // JIT, sockets, gRPC channel, key cache. Discarded; a failure here is said but does not fail the run.
    const warm = await load(target, warmupSeconds);
    if (!clean(warm)) console.error(`warm-up ${target}: ${JSON.stringify(warm.statusCodes)}`);
  }
  for (let i = 1; i <= rounds; i++) {
    for (const target of ['direct', 'gateway'] as const) {
      const run = await load(target, seconds);
      runs.push(run);
      console.log(JSON.stringify({ round: i, store: values.store, stream, connections, seconds, ...run }));
      if (!clean(run)) failed = true;
    }
  }
  const leasesHeld = await concurrencyInUse(authority.grpcPort, secret);

  const ms = (n: number) => n.toFixed(2).padStart(8);
  const col = (value: number | string, width: number) => String(value).padStart(width);
  console.log(
    `\nstore ${values.store}, ${stream ? 'streaming' : 'whole answers'}, ${connections} connections, ${seconds} s per run\n`,
  );
  console.log(
    'round  target   mean ms  p50 ms  p99 ms  req/s  non-2xx  errors  degraded  CPU ms/req  loop busy',
  );
  runs.forEach((run, index) => {
    console.log(
      `${col(Math.floor(index / 2) + 1, 5)}  ${run.target.padEnd(7)} ${ms(run.meanMs)} ${col(run.p50Ms, 7)} ${col(run.p99Ms, 7)} ${col(run.requestsPerSecond, 6)} ${col(run.non2xx, 8)} ${col(run.errors, 7)} ${col(run.degradedDecisions, 9)} ${col(run.cpuMsPerRequest.toFixed(2), 11)} ${col(run.eventLoopUtilization.toFixed(2), 10)}`,
    );
  });
  console.log(
    "\nmean: connections ÷ req/s; p50 and p99: autocannon's, in whole milliseconds (truncated, so 0 below 1 ms).",
  );
  console.log(
    '\nround  added mean ms  added p50 ms  added p99 ms  throughput gateway ÷ direct  CPU/req gateway ÷ direct',
  );
  for (let i = 0; i + 1 < runs.length; i += 2) {
    const direct = runs[i] as Run;
    const through = runs[i + 1] as Run;
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    console.log(
      `${col(i / 2 + 1, 5)}  ${col(ms(through.meanMs - direct.meanMs), 13)}  ${col(through.p50Ms - direct.p50Ms, 12)}  ${col(through.p99Ms - direct.p99Ms, 12)}  ${col(ratio(through.requestsPerSecond, direct.requestsPerSecond), 28)}  ${col(ratio(through.cpuMsPerRequest, direct.cpuMsPerRequest), 24)}`,
    );
  }
  console.log(
    '\nInside the gateway runs (means from the metrics; ~ quantiles interpolated in histogram buckets):',
  );
  for (const run of runs.filter((r) => r.target === 'gateway')) {
    console.log(
      `  CheckQuota round trip ${run.gatewayDecisionMeanMs} ms (~p50 ${run.gatewayDecisionP50Ms}, ~p99 ${run.gatewayDecisionP99Ms}), ` +
        `upstream to headers ${run.gatewayUpstreamHeadersMeanMs} ms, gateway request ${run.gatewayRequestMeanMs} ms; ` +
        `in the authority: check ${run.authorityCheckMeanMs} ms, record ${run.authorityRecordMeanMs} ms ` +
        `(${run.checks} checks, ${run.settlementsRecorded} settlements recorded)`,
    );
  }
  console.log(`Concurrency leases still held by the bench key after the load: ${leasesHeld}`);
  if (failed) {
    console.error(
      '\nFAILED: non-2xx answers, connection errors or degraded decisions during the load (see statusCodes); the figures above are meaningless.',
    );
    process.exitCode = 1;
  }
}

await main();
