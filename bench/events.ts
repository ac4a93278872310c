/**
 * What spend alerts and anomalies cost, and what they deliver:
 *
 *   node dist/bench/events.js [--checks 20000] [--in-flight 64]
 *
 * 1. CheckQuota's cost inside the authority (QuotaAuthority.check in this process, no gRPC, one store
 *    client): without an alerts section; with alerts but no threshold near; and with every check crossing
 *    a threshold (each principal's budget charged to just below 50 % first), which writes a marker and an
 *    event: the most a check pays for alerts. Redis and the in-process store, each scenario twice, in turn.
 * 2. Webhook delivery throughput: the events of (1) on Redis drained to a local node:http receiver
 *    answering 204, signed, with max_in_flight 8 and then 32.
 * 3. Anomaly false positives: core/anomaly.ts observeUsage (the arithmetic both stores run) under steady
 *    Poisson traffic for a simulated day, and how soon a tenfold spike is caught.
 *
 * Writes its section of bench/RESULTS.md (between the events markers), and prints it.
 */
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import * as prettier from 'prettier';
import { QuotaAuthority, type CheckQuotaInput } from '../src/authority/quota-authority.js';
import { observeUsage, type UsageBaseline } from '../src/core/anomaly.js';
import type { Clock } from '../src/core/clock.js';
import type { AlertsSpec, AnomalySpec, LimitSpec, Policy } from '../src/core/policy.js';
import { WebhookDelivery } from '../src/events/webhook-delivery.js';
import { KeyRegistry } from '../src/keys/key-registry.js';
import { MemoryKeyStore } from '../src/store/memory-key-store.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { createRedisClient, RedisStore } from '../src/store/redis/redis-store.js';
import type { QuotaStore } from '../src/store/store.js';
import { createLogger } from '../src/telemetry/logger.js';
import { AuthorityMetrics } from '../src/telemetry/metrics.js';
import { TestRedisServer } from '../harness/redis-server.js';
import { Histogram } from './histogram.js';

const { values } = parseArgs({
  options: {
    checks: { type: 'string', default: '20000' },
    'in-flight': { type: 'string', default: '64' },
    out: { type: 'string', default: 'bench/RESULTS.md' },
  },
});
const CHECKS = Number(values.checks);
const IN_FLIGHT = Number(values['in-flight']);
const ORGS = 97;
const SECRET = 'bench-secret-0123456789';
const BEGIN = '<!-- bench/events.ts: begin -->';
const END = '<!-- bench/events.ts: end -->';

const clock: Clock = { now: () => Date.now() };
const logger = createLogger({
  level: 'silent',
  name: 'bench',
  destination: new Writable({ write: (_c, _e, d) => d() }),
});

const budget: LimitSpec = {
  name: 'tokens_per_day',
  kind: 'budget',
  unit: 'tokens',
  measure: 'total',
  limit: 10_000,
  windowMs: 0,
  period: 'day',
  timeZone: 'UTC',
  scope: 'subject',
  shadow: false,
  onStoreFailure: 'closed',
};
const rate: LimitSpec = {
  ...budget,
  name: 'requests_per_minute',
  kind: 'rate',
  unit: 'requests',
  measure: 'requests',
  limit: 1_000,
  windowMs: 60_000,
};

function policy(alerts: AlertsSpec | undefined, webhookUrl = 'http://127.0.0.1:9/'): Policy {
  const withThresholds = alerts ? { ...budget, alertThresholds: [0.5, 0.8, 1] } : budget;
  const model = { name: 'gpt-bench', inputMicrosPerMillion: 1_000_000, outputMicrosPerMillion: 2_000_000 };
  return {
    timeZone: 'UTC',
    leaseMs: 600_000,
    idempotencyWindowMs: 3_600_000,
    replicas: 1,
    models: new Map([[model.name, model]]),
    tiers: new Map([
      [
        'bench',
        {
          name: 'bench',
          models: undefined,
          maxOutputTokens: 1_000,
          maxInputTokens: 0,
          limits: [rate, withThresholds],
        },
      ],
    ]),
    ...(alerts && {
      alerts: {
        ...alerts,
        webhook: {
          url: webhookUrl,
          secretEnv: 'BENCH_SECRET',
          timeoutMs: 5_000,
          maxInFlight: 8,
          retryForMs: 3_600_000,
        },
      },
    }),
  };
}

const ALERTS: AlertsSpec = { budgetThresholds: [0.5, 0.8, 1], webhook: undefined, anomaly: undefined };

function authority(store: QuotaStore, current: Policy): QuotaAuthority {
  const metrics = new AuthorityMetrics({ version: 'bench', collectDefault: false, storeKind: store.kind });
  const keys = new KeyRegistry({
    store: new MemoryKeyStore({ clock }),
    clock,
    policy: () => current,
    cacheTtlMs: 1_000,
    randomBytes: () => Buffer.alloc(0),
    metrics,
    logger,
  });
  return new QuotaAuthority({
    store,
    fallback: new MemoryStore({ clock, sweepIntervalMs: 0 }),
    policy: () => current,
    clock,
    metrics,
    logger,
    keys,
  });
}

let run = 0;

function checkFor(
  prefix: string,
  i: number,
): CheckQuotaInput & { principal: { subject: string; org: string; tier: string } } {
  return {
    requestId: `${prefix}-r${i}`,
    principal: { subject: `${prefix}-s${i}`, org: `bench-${i % ORGS}`, tier: 'bench' },
    model: 'gpt-bench',
    inputTokens: 100,
    maxOutputTokens: 200,
    dryRun: false,
  };
}

type Scenario = 'no alerts' | 'alerts, no threshold near' | 'alerts, every check crosses one';

async function measure(
  store: QuotaStore,
  scenario: Scenario,
): Promise<{ perSecond: number; p50: number; p99: number; raised: number }> {
  run += 1;
  const prefix = `run${run}`;
  const current = policy(scenario === 'no alerts' ? undefined : ALERTS);
  const quota = authority(store, current);
  if (scenario === 'alerts, every check crosses one') {
    // 4,800 of 10,000 already used: the check's 300 tokens cross 50 %.
    for (let i = 0; i < CHECKS; i += 256) {
      await Promise.all(
        Array.from({ length: Math.min(256, CHECKS - i) }, (_, j) => {
          const check = checkFor(prefix, i + j);
          return quota.record({
            ...check,
            requestId: `${check.requestId}-fill`,
            inputTokens: 4_800,
            outputTokens: 0,
            outcome: 'completed',
          });
        }),
      );
    }
  }
  const histogram = new Histogram();
  let next = 0;
  let raised = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < CHECKS) {
        const i = next++;
        const sent = performance.now();
        const decision = await quota.check(checkFor(prefix, i));
        histogram.recordMs(performance.now() - sent);
        if (!decision.allowed) throw new Error(`check ${i} denied: ${decision.reason}`);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  raised = scenario === 'alerts, every check crosses one' ? CHECKS : 0;
  return {
    perSecond: CHECKS / seconds,
    p50: histogram.quantileMs(0.5),
    p99: histogram.quantileMs(0.99),
    raised,
  };
}

async function deliveryThroughput(store: QuotaStore, maxInFlight: number, events: number): Promise<number> {
  let received = 0;
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      received += 1;
      response.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  const metrics = new AuthorityMetrics({ version: 'bench', collectDefault: false, storeKind: store.kind });
  const delivery = new WebhookDelivery({
    outbox: store.events,
    webhook: () => ({ url, secretEnv: 'BENCH_SECRET', timeoutMs: 5_000, maxInFlight, retryForMs: 3_600_000 }),
    secret: () => SECRET,
    metrics: metrics.events,
    logger,
    pollMs: 5,
  });
  const started = performance.now();
  delivery.start();
  while (received < events) await new Promise((resolve) => setTimeout(resolve, 20));
  const seconds = (performance.now() - started) / 1000;
  await delivery.stop();
  server.close();
  return events / seconds;
}

/** Exponential inter-arrival times: a Poisson process of `perMinute`. */
function falsePositives(spec: AnomalySpec, perMinute: number, subjects: number, hours: number) {
  let anomalies = 0;
  const end = hours * 3_600_000;
  for (let s = 0; s < subjects; s++) {
    let baseline: UsageBaseline | undefined;
    for (
      let t = -Math.log(1 - Math.random()) * (60_000 / perMinute);
      t < end;
      t += -Math.log(1 - Math.random()) * (60_000 / perMinute)
    ) {
      const tokens = 200 + Math.floor(Math.random() * 1_800);
      const observed = observeUsage(baseline, spec, t, tokens, 'alert');
      baseline = observed.baseline;
      if (observed.anomaly) anomalies += 1;
    }
  }
  return anomalies;
}

/** A subject at `perMinute` for `hours`, then at ten times that: how long until the anomaly. */
function detectionDelayMs(spec: AnomalySpec, perMinute: number, hours: number): number {
  let baseline: UsageBaseline | undefined;
  const spikeAt = hours * 3_600_000;
  for (let t = 0; t < spikeAt + 3_600_000;) {
    const rateNow = t < spikeAt ? perMinute : perMinute * 10;
    t += -Math.log(1 - Math.random()) * (60_000 / rateNow);
    const observed = observeUsage(baseline, spec, t, 500, 'alert');
    baseline = observed.baseline;
    if (observed.anomaly && t >= spikeAt) return t - spikeAt;
  }
  return Infinity;
}

const DEFAULT_ANOMALY: AnomalySpec = {
  factor: 5,
  intervalMs: 60_000,
  halfLifeMs: 3_600_000,
  minHistoryMs: 3_600_000,
  minRequests: 20,
  minTokens: 20_000,
  cooldownMs: 900_000,
  actions: new Map(),
};

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main() {
  const loadBefore = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const redis = await TestRedisServer.start();
  const client = createRedisClient(redis.url, { commandTimeoutMs: 5_000 });
  await client.connect();
  const stores: Record<'redis' | 'memory', QuotaStore> = {
    redis: new RedisStore({ redis: client }),
    memory: new MemoryStore({ clock, sweepIntervalMs: 0 }),
  };
  const scenarios: Scenario[] = ['no alerts', 'alerts, no threshold near', 'alerts, every check crosses one'];
  const rows: string[] = [];
  let redisEvents = 0;
  for (const kind of ['redis', 'memory'] as const) {
    const results = new Map<Scenario, { perSecond: number; p50: number; p99: number }[]>();
    for (let round = 0; round < 2; round++) {
      for (const scenario of scenarios) {
        const result = await measure(stores[kind], scenario);
        if (kind === 'redis') redisEvents += result.raised;
        results.set(scenario, [...(results.get(scenario) ?? []), result]);
        console.error(
          `${kind} ${scenario} round ${round + 1}: ${fmt(result.perSecond)} checks/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms`,
        );
      }
    }
    const base = Math.max(...(results.get('no alerts') ?? []).map((r) => r.perSecond));
    for (const scenario of scenarios) {
      const runs = results.get(scenario) ?? [];
      const best = runs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
      rows.push(
        `| ${kind} | ${scenario} | ${runs.map((r) => fmt(r.perSecond)).join(', ')} | ${best.p50.toFixed(2)} ms | ${best.p99.toFixed(2)} ms | ${(best.perSecond / base).toFixed(2)}× |`,
      );
    }
  }
  // Each round drains what it finds, so each gets events of its own: one crossing per check.
  const delivery8 = await deliveryThroughput(stores.redis, 8, redisEvents);
  await measure(stores.redis, 'alerts, every check crosses one');
  const delivery32 = await deliveryThroughput(stores.redis, 32, CHECKS);
  const fp = [10, 30, 100].map((perMinute) => ({
    perMinute,
    anomalies: falsePositives(DEFAULT_ANOMALY, perMinute, 200, 24),
  }));
  const delays = Array.from({ length: 20 }, () => detectionDelayMs(DEFAULT_ANOMALY, 10, 3)).sort(
    (a, b) => a - b,
  );
  await stores.redis.close();
  await stores.memory.close();
  await redis.stop();

  const section = [
    BEGIN,
    '## Events: spend alerts and anomalies (bench/events.ts)',
    '',
    `Written by \`node dist/bench/events.js --checks ${CHECKS} --in-flight ${IN_FLIGHT}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${cpus().length} vCPUs shared by the benchmark, the authority code and redis-server; load average before: ${loadBefore}. \`make bench\` keeps this section when it rewrites the page.`,
    '',
    `CheckQuota inside the authority (QuotaAuthority.check in the benchmark's process, no gRPC; one Redis connection), ${fmt(CHECKS)} checks of new principals, ${IN_FLIGHT} in flight, each scenario run twice in turn; the tier has a rate limit and a token budget. "Every check crosses one": each principal's budget was charged to 4,800 of 10,000 first, so every check crosses 50 % and writes a fired marker and an event (record, outbox, log): the most alerts add to one check.`,
    '',
    '| store | scenario | checks/s (two runs) | p50 | p99 | ÷ no alerts (best runs) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Webhook delivery from the Redis outbox to a local node:http receiver answering 204 (signed, one POST per event, keep-alive): **${fmt(delivery8)} events/s** with max_in_flight 8 (${fmt(redisEvents)} events), **${fmt(delivery32)} events/s** with 32 (${fmt(CHECKS)} events), one authority.`,
    '',
    `Anomaly false positives with the default settings (factor 5, 1 min intervals, 1 h half-life and history, at least 20 requests or 20,000 tokens, 15 min cool-down), core/anomaly.ts under steady Poisson traffic (200 subjects each, a simulated day, 200–2,000 tokens a request): ${fp.map((f) => `**${f.anomalies}** anomalies at ${f.perMinute} requests/min`).join(', ')}; ${fmt(fp.reduce((n, f) => n + f.anomalies, 0) / 600, 3)} per subject-day overall. A subject at 10 requests/min for 3 hours that goes to 100/min is caught after a median ${(delays[10]! / 1000).toFixed(1)} s (max ${(delays[19]! / 1000).toFixed(1)} s over 20 runs).`,
    END,
  ].join('\n');
  const path = values.out as string;
  const page = await readFile(path, 'utf8').catch(() => '');
  const start = page.indexOf(BEGIN);
  const stop = page.indexOf(END);
  const next =
    start >= 0 && stop > start
      ? page.slice(0, start) + section + page.slice(stop + END.length)
      : `${page.trimEnd()}\n\n${section}\n`;
  const config = (await prettier.resolveConfig(path)) ?? {};
  await writeFile(path, await prettier.format(next, { ...config, filepath: path }));
  console.log(section);
}

await main();
