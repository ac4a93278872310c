/**
 * `make bench`: every benchmark scenario, one after another on loopback, then bench/RESULTS.md and
 * bench/latency-vs-load.svg. See bench/README.md.
 *
 *   node dist/bench/run.js [--only transport,redis,...] [--seconds 8] [--loadgens 1] [--principals 10000]
 *                          [--memory-principals 100000] [--out bench/RESULTS.md] [--chart bench/latency-vs-load.svg]
 *                          [--burst 200] [--burst-rounds 3] [--rounds 3] [--round-seconds 5]
 *                          [--gateway-rounds 3] [--gateway-seconds 5]
 *
 * Scenarios (ids for --only): transport, redis, memory, rlf, rounds, storage, gateway, footprint, batch, profile,
 * burst, envoy, signing. `--only burst`, `--only envoy` or `--only signing` alone keeps the other scenarios'
 * figures of the last run (results/latest.json) and rewrites only its own section.
 * --seconds is the measured length of each load point (warm-ups come on top).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as prettier from 'prettier';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { isGrpcError } from '../src/api/client.js';
import { readScript } from '../src/store/redis/scripts.js';
import { AuthorityProcess, REPO_ROOT } from '../harness/authority-process.js';
import { quotaClient } from '../harness/grpc-clients.js';
import { TestRedisServer } from '../harness/redis-server.js';
import {
  BENCH_TIER,
  checkRequest,
  machineCpuSeconds,
  processCpuSeconds,
  protoHasBatch,
  recordRequest,
  writeBenchPolicy,
} from './common.js';
import { burstScenario } from './burst.js';
import { signingScenario } from './signing.js';
import { summarizeProfile } from './cpuprofile.js';
import type { Operation } from './loadgen.js';
import { benchScript, LoadGenerator, mergeResults, startNodeServer } from './processes.js';
import { renderChart } from './chart.js';
import { machine } from './machine.js';
import { gatewayScenario } from './gateway-side-by-side.js';
import { commandStats, diff, infoField, usedMemory } from './redis-stats.js';
import { renderReport } from './report.js';
import { envoyScenario } from './envoy.js';
import type {
  CpuShare,
  FootprintResult,
  GrpcScenario,
  LoadPoint,
  Results,
  RoundsResult,
  StorageResult,
} from './result-types.js';

const ALL = [
  'transport',
  'redis',
  'memory',
  'rlf',
  'rounds',
  'storage',
  'gateway',
  'footprint',
  'batch',
  'profile',
  'burst',
  'envoy',
  'signing',
];

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: ALL.join(',') },
    seconds: { type: 'string', default: '8' },
    loadgens: { type: 'string', default: '1' },
    principals: { type: 'string', default: '10000' },
    'memory-principals': { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '64' },
    /** The batched scenario: batch calls in flight, and checks per batch call. */
    'batch-inflight': { type: 'string', default: '8' },
    'batch-size': { type: 'string', default: '64' },
    fractions: { type: 'string', default: '0.1,0.25,0.5,0.75,0.9' },
    /** The rounds scenario: alternating CheckQuota-alone closed loops, and the seconds of each. */
    rounds: { type: 'string', default: '3' },
    'round-seconds': { type: 'string', default: '5' },
    /** The gateway scenario: alternating rounds of every target, and the seconds measured of each. */
    'gateway-rounds': { type: 'string', default: '3' },
    'gateway-seconds': { type: 'string', default: '5' },
    /** The burst scenario: requests at once, and how many bursts per store. */
    burst: { type: 'string', default: '200' },
    'burst-rounds': { type: 'string', default: '3' },
    out: { type: 'string', default: 'bench/RESULTS.md' },
    chart: { type: 'string', default: 'bench/latency-vs-load.svg' },
    json: { type: 'string', default: 'bench/results/latest.json' },
    /** Re-renders RESULTS.md and the chart from a results file, running nothing. */
    'render-only': { type: 'string' },
  },
});
const batchInflight = Number(values['batch-inflight']);
const rounds = Number(values.rounds);
const roundSeconds = Number(values['round-seconds']);
const gatewayRounds = Number(values['gateway-rounds']);
const gatewaySeconds = Number(values['gateway-seconds']);
const batchSize = Number(values['batch-size']);
const only = new Set((values.only as string).split(',').map((s) => s.trim()));
for (const id of only)
  if (!ALL.includes(id)) throw new Error(`unknown scenario '${id}' (known: ${ALL.join(', ')})`);
const seconds = Number(values.seconds);
const loadgens = Number(values.loadgens);
const principals = Number(values.principals);
const memoryPrincipals = Number(values['memory-principals']);
const concurrency = Number(values.concurrency);
const fractions = (values.fractions as string).split(',').map(Number);
const warmupMs = Math.min(3_000, Math.max(1_000, (seconds * 1000) / 4));
const openWarmupMs = 1_000;

const log = (message: string) =>
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

/** EVALSHA and EVAL calls a second while no load runs: the servers' own housekeeping scripts. */
async function idleScriptRate(redis: Redis): Promise<number> {
  const before = commandStats(await redis.info('commandstats'));
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 1_000)); // the measured window, not a wait for an event
  const scripts = diff(commandStats(await redis.info('commandstats')), before);
  return ((scripts.evalsha ?? 0) + (scripts.eval ?? 0)) / ((performance.now() - started) / 1000);
}

/** Runs one phase on every generator at once (the load split evenly) and measures CPU of `watch` meanwhile. */
async function phase(
  gens: LoadGenerator[],
  request: {
    mode: 'closed' | 'open';
    op: Operation;
    concurrency?: number;
    rate?: number;
    warmupMs: number;
    batchSize?: number;
    /** The measured seconds, when not --seconds. */
    seconds?: number;
  },
  watch: Record<string, number>,
  redis?: Redis,
  hooks: { start?: () => void; end?: () => void } = {},
): Promise<LoadPoint> {
  const n = gens.length;
  const cpuAt = async () =>
    Object.fromEntries(
      await Promise.all(
        Object.entries(watch).map(async ([k, pid]) => [k, await processCpuSeconds(pid)] as const),
      ),
    );
  const measureMs = (request.seconds ?? seconds) * 1000;
  const sample = async (): Promise<[Record<string, number>, Record<string, number>]> => [
    { ...(await cpuAt()), machine: await machineCpuSeconds() },
    redis ? commandStats(await redis.info('commandstats')) : {},
  ];
  const after = (ms: number, hook?: () => void) =>
    new Promise<[Record<string, number>, Record<string, number>]>((resolve, reject) =>
      setTimeout(() => {
        hook?.();
        sample().then(resolve, reject);
      }, ms),
    );
  // Scripts the servers run on their own (housekeeping such as the key store's store-marker check) are
  // measured while idle and taken off the round-trip count; only closed loops count round trips.
  const idleScriptsPerSecond = redis && request.mode === 'closed' ? await idleScriptRate(redis) : 0;
  const sampledBefore = after(request.warmupMs + 5, hooks.start);
  const sampledAfter = after(request.warmupMs + 5 + measureMs, hooks.end);
  const statsStart = redis ? commandStats(await redis.info('commandstats')) : {};
  const windowStarted = performance.now();
  const results = await Promise.all(
    gens.map((gen, i) =>
      gen.run({
        mode: request.mode,
        op: request.op,
        concurrency:
          Math.floor((request.concurrency ?? 0) / n) + (i < (request.concurrency ?? 0) % n ? 1 : 0),
        rate: (request.rate ?? 0) / n,
        warmupMs: request.warmupMs,
        measureMs,
        batchSize: request.batchSize ?? 64,
      }),
    ),
  );
  const statsEnd = redis ? commandStats(await redis.info('commandstats')) : {};
  const windowSeconds = (performance.now() - windowStarted) / 1000;
  const [cpuBefore, statsBefore] = await sampledBefore;
  const [cpuAfter, statsAfter] = await sampledAfter;
  const merged = mergeResults(results);
  const s = measureMs / 1000;
  const cpu: CpuShare = { loadgen: merged.cpuSeconds / (s + request.warmupMs / 1000) };
  for (const key of [...Object.keys(watch), 'machine'])
    cpu[key] = ((cpuAfter[key] ?? NaN) - (cpuBefore[key] ?? NaN)) / s;
  cpu.others =
    (cpu.machine as number) -
    Object.keys(watch).reduce((sum, key) => sum + (cpu[key] as number), cpu.loadgen as number);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    mode: request.mode,
    op: request.op,
    ...(request.mode === 'closed'
      ? { concurrency: request.concurrency }
      : { offeredPerSecond: request.rate }),
    operations: merged.operations,
    operationsPerSecond: merged.operations / s,
    decisionsPerSecond: merged.decisions / s,
    callsPerSecond: merged.calls / s,
    p50Ms: round(merged.latency.quantileMs(0.5)),
    p99Ms: round(merged.latency.quantileMs(0.99)),
    p999Ms: round(merged.latency.quantileMs(0.999)),
    meanMs: round(merged.latency.meanMs()),
    maxMs: round(merged.latency.maxMs()),
    ...(request.mode === 'open'
      ? {
          serviceP50Ms: round(merged.service.quantileMs(0.5)),
          serviceP99Ms: round(merged.service.quantileMs(0.99)),
          lagP50Ms: round(merged.lag.quantileMs(0.5)),
          lagP99Ms: round(merged.lag.quantileMs(0.99)),
        }
      : {}),
    denied: merged.denied,
    errors: merged.errors,
    unfinished: merged.unfinished,
    cpu,
    ...(redis
      ? {
          redisCommands: diff(statsAfter, statsBefore),
          redisTotals: {
            commands: diff(statsEnd, statsStart),
            sent: merged.sent,
            seconds: windowSeconds,
            idleScriptsPerSecond,
          },
        }
      : {}),
  };
}

function describe(point: LoadPoint): string {
  const errors = Object.entries(point.errors)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ');
  const cpu = Object.entries(point.cpu)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');
  return `${point.mode} ${point.op}${point.fraction ? ` ${Math.round(point.fraction * 100)} %` : ''}: ${Math.round(point.operationsPerSecond)} ops/s, p50 ${point.p50Ms} ms, p99 ${point.p99Ms} ms, p99.9 ${point.p999Ms} ms${errors ? `, errors ${errors}` : ''}; CPU cores: ${cpu}`;
}

// -------------------------------------------------------------------------------------- the scenarios

interface ServerUnderTest {
  address: string;
  watch: Record<string, number>;
  commandLine: string;
  stop(): Promise<void>;
}

interface Context {
  redis: TestRedisServer;
  client: Redis;
  redisPid: number;
  dir: string;
  policyPath: string;
  commandLines: Record<string, string>;
}

async function startAuthority(
  ctx: Context,
  store: 'redis' | 'memory',
  extraEnv: Record<string, string> = {},
) {
  const env: Record<string, string> = {
    LOG_LEVEL: 'info', // logs nothing per decision; says when it serves
    QUOTAD_POLICY: ctx.policyPath,
    QUOTAD_REDIS_TIMEOUT: '1s', // a saturated closed loop queues; the default before #12 (50 ms) turned that into store failures
    ...extraEnv,
  };
  if (store === 'redis') env.REDIS_URL = ctx.redis.url;
  const quotad = await (await AuthorityProcess.spawn(env)).ready();
  const shown = Object.entries(env)
    .filter(([k]) => k !== 'QUOTAD_ADMIN_TOKEN' && k !== 'NODE_OPTIONS')
    .map(
      ([k, v]) =>
        `${k}=${k === 'QUOTAD_POLICY' ? '<tmp>/policy.yaml' : k === 'REDIS_URL' ? 'redis://127.0.0.1:<port>' : v}`,
    )
    .join(' ');
  return {
    quotad,
    commandLine: `${shown} QUOTAD_GRPC_ADDR=127.0.0.1:<free port> node dist/src/main/cli.js serve`,
  };
}

async function serverFor(ctx: Context, id: string): Promise<ServerUnderTest> {
  if (id === 'transport') {
    const server = await startNodeServer('noop-server');
    return {
      address: `127.0.0.1:${server.address}`,
      watch: { server: server.pid },
      commandLine: server.commandLine,
      stop: server.stop,
    };
  }
  if (id === 'rlf') {
    const server = await startNodeServer('rlf-server', [ctx.redis.url]);
    return {
      address: `127.0.0.1:${server.address}`,
      watch: { server: server.pid, redis: ctx.redisPid },
      commandLine: server.commandLine.replace(ctx.redis.url, 'redis://127.0.0.1:<port>'),
      stop: server.stop,
    };
  }
  const store = id === 'memory' ? 'memory' : 'redis';
  const { quotad, commandLine } = await startAuthority(ctx, store);
  return {
    address: quotad.grpcAddress,
    watch:
      store === 'redis'
        ? { server: quotad.child.pid as number, redis: ctx.redisPid }
        : { server: quotad.child.pid as number },
    commandLine,
    stop: () => quotad.stop(),
  };
}

const TITLES: Record<string, string> = {
  transport: 'Transport ceiling (no-op grpc-js server)',
  redis: 'quotad, Redis store',
  memory: 'quotad, memory store',
  rlf: 'rate-limiter-flexible (RateLimiterRedis ×3)',
  batch: 'quotad batched (Redis)',
};

async function withGenerators<T>(
  address: string,
  fn: (gens: LoadGenerator[]) => Promise<T>,
  ctx: Context,
  id: string,
): Promise<T> {
  const gens: LoadGenerator[] = [];
  try {
    for (let i = 0; i < loadgens; i++) gens.push(await LoadGenerator.start(address, principals, i, loadgens));
    ctx.commandLines[`${id} load`] =
      `${gens.length} × ${gens[0]?.commandLine.replace(address, '<server>')} (forked, IPC)`;
    return await fn(gens);
  } finally {
    for (const gen of gens) await gen.stop();
  }
}

/** Probes a method with one real call: undefined when it answers, else why not (e.g. UNIMPLEMENTED). */
async function probeBatch(address: string): Promise<string | undefined> {
  if (!protoHasBatch())
    return 'the proto this run loaded (proto/quotad/v1/quota.proto) has no CheckQuotaBatch';
  const client = quotaClient(address);
  try {
    const id = `probe-${randomBytes(4).toString('hex')}`;
    const error = await client.checkQuotaBatch({ checks: [checkRequest(id, 0, principals)] }, 5_000).then(
      () => null,
      (failure: unknown) => (isGrpcError(failure) ? failure : { code: undefined, details: String(failure) }),
    );
    if (error)
      return `the server answered CheckQuotaBatch with ${error.code === 12 ? 'UNIMPLEMENTED' : `code ${error.code}`} (${error.details ?? ''})`;
    return undefined;
  } finally {
    client.close();
  }
}

async function grpcScenario(ctx: Context, id: string): Promise<GrpcScenario> {
  const result: GrpcScenario = { id, title: TITLES[id] as string, server: '', open: [], notes: [] };
  if (['redis', 'rlf', 'batch'].includes(id)) await ctx.client.flushall();
  const server = await serverFor(ctx, id);
  result.server = server.commandLine;
  ctx.commandLines[`${id} server`] = server.commandLine;
  const redis = id === 'memory' || id === 'transport' ? undefined : ctx.client;
  try {
    if (id === 'batch') {
      const why = await probeBatch(server.address);
      if (why) {
        result.skipped = why;
        log(`${id}: skipped: ${why}`);
        return result;
      }
      await withGenerators(
        server.address,
        async (gens) => {
          result.batch = await phase(
            gens,
            { mode: 'closed', op: 'batch', concurrency: batchInflight, warmupMs, batchSize },
            server.watch,
            redis,
          );
          log(`${id}: ${describe(result.batch)}; ${Math.round(result.batch.decisionsPerSecond)} decisions/s`);
        },
        ctx,
        id,
      );
      return result;
    }
    await withGenerators(
      server.address,
      async (gens) => {
        const closed = await phase(
          gens,
          { mode: 'closed', op: 'pair', concurrency, warmupMs },
          server.watch,
          redis,
        );
        result.closed = closed;
        log(`${id}: ${describe(closed)}`);
        result.checkOnly = await phase(
          gens,
          { mode: 'closed', op: 'check', concurrency, warmupMs: 1_000 },
          server.watch,
          redis,
        );
        log(`${id}: ${describe(result.checkOnly)}`);
        if (id === 'transport' && protoHasBatch()) {
          result.batch = await phase(
            gens,
            { mode: 'closed', op: 'batch', concurrency: batchInflight, warmupMs: 1_000, batchSize },
            server.watch,
          );
          log(`${id}: ${describe(result.batch)}; ${Math.round(result.batch.decisionsPerSecond)} decisions/s`);
        }
        for (const fraction of fractions) {
          const rate = fraction * closed.operationsPerSecond;
          const point = await phase(
            gens,
            { mode: 'open', op: 'pair', rate, warmupMs: openWarmupMs },
            server.watch,
            redis,
          );
          point.fraction = fraction;
          result.open.push(point);
          log(`${id}: ${describe(point)} (offered ${Math.round(rate)}/s)`);
        }
      },
      ctx,
      id,
    );
  } finally {
    await server.stop();
  }
  return result;
}

/** The scenarios whose CheckQuota-alone closed loop the rounds scenario alternates. */
const ROUND_IDS = ['transport', 'redis', 'memory', 'rlf'] as const;

/**
 * Verdicts that hold across runs: the CheckQuota-alone closed loop of the transport ceiling, quotad on each
 * store and rate-limiter-flexible, in turn, `--rounds` times, every server started once and kept up (the
 * idle ones cost nothing). Each round gives its own ratios; the targets are judged on their medians and the
 * report shows the spread, so a verdict that one noisy minute would flip is seen as such.
 */
async function roundsScenario(ctx: Context): Promise<RoundsResult> {
  await ctx.client.flushall();
  const servers: Partial<Record<(typeof ROUND_IDS)[number], ServerUnderTest>> = {};
  const result: RoundsResult = { rounds, seconds: roundSeconds, runs: [] };
  try {
    for (const id of ROUND_IDS) servers[id] = await serverFor(ctx, id);
    for (let round = 1; round <= rounds; round++) {
      for (const id of ROUND_IDS) {
        const server = servers[id] as ServerUnderTest;
        const redis = id === 'redis' || id === 'rlf' ? ctx.client : undefined;
        const point = await withGenerators(
          server.address,
          (gens) =>
            phase(
              gens,
              { mode: 'closed', op: 'check', concurrency, warmupMs: 1_000, seconds: roundSeconds },
              server.watch,
              redis,
            ),
          ctx,
          `rounds ${id}`,
        );
        const serverCores = point.cpu.server ?? NaN;
        result.runs.push({
          round,
          id,
          callsPerSecond: point.callsPerSecond,
          p50Ms: point.p50Ms,
          p99Ms: point.p99Ms,
          serverMsPerCall: (1000 * serverCores) / point.callsPerSecond,
          cpu: point.cpu,
          errors: Object.values(point.errors).reduce((a, b) => a + b, 0),
        });
        log(`rounds ${round}/${rounds}: ${id}: ${describe(point)}`);
      }
    }
  } finally {
    for (const server of Object.values(servers)) await server.stop();
  }
  return result;
}

// ------------------------------------------------------------------ the reserve script's call, as sent

interface ScriptCall {
  sha: string;
  args: string[];
}

/**
 * What the authority sends Redis for one CheckQuota and one RecordUsage on the bench tier, captured with
 * MONITOR from a real `quotad serve` on the private redis: [reserve EVALSHA args, settle EVALSHA args].
 */
async function captureScriptCalls(ctx: Context, subject: string, requestId: string, org: string) {
  await ctx.client.flushall();
  const { quotad } = await startAuthority(ctx, 'redis');
  const monitor = await ctx.client.monitor();
  const seen: string[][] = [];
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (/^eval/i.test(args[0] ?? '')) seen.push(args);
  });
  const client = quotaClient(quotad.grpcAddress);
  try {
    const principal = { subject, org, tier: BENCH_TIER };
    // Twice: the first call of a script may be EVALSHA, NOSCRIPT, then EVAL.
    for (const id of [`${requestId}a`, requestId]) {
      await client.checkQuota({ ...checkRequest(id, 0, 1), principal });
      await client.recordUsage({ ...recordRequest(id, 0, 1), principal });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    client.close();
    monitor.disconnect();
    await quotad.stop();
  }
  const calls = seen.filter(
    (args) =>
      (args[0] ?? '').toLowerCase() === 'evalsha' &&
      args.some((a) => a.includes(`:${requestId}`)) &&
      !args.some((a) => a.includes(`${requestId}a`)),
  );
  const reserveSha = (await ctx.client.script('LOAD', readScript('reserve'))) as string;
  const settleSha = (await ctx.client.script('LOAD', readScript('settle'))) as string;
  const reserve = calls.find((args) => args[1] === reserveSha);
  const settle = calls.find((args) => args[1] === settleSha);
  if (!reserve || !settle)
    throw new Error(
      `MONITOR saw no EVALSHA of reserve.lua / settle.lua for ${requestId}: ${JSON.stringify(seen).slice(0, 500)}`,
    );
  return {
    reserve: { sha: reserveSha, args: withoutDeadline(reserve.slice(2)) } satisfies ScriptCall,
    settle: { sha: settleSha, args: settle.slice(2) } satisfies ScriptCall,
  };
}

/**
 * A captured reserve's args with its deadline (ARGV[9]: when the authority stopped waiting, long past by
 * the time they are replayed) set to 0, none: replayed, it would reserve nothing.
 */
function withoutDeadline(args: string[]): string[] {
  const deadlineAt = Number(args[0]) + 9;
  return args.map((arg, i) => (i === deadlineAt ? '0' : arg));
}

/** The args of a captured call with its subject and request id replaced. */
function reshape(
  call: ScriptCall,
  from: { subject: string; requestId: string },
  to: { subject: string; requestId: string },
): string[] {
  return call.args.map((arg) =>
    arg.split(from.requestId).join(to.requestId).split(from.subject).join(to.subject),
  );
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

async function storageScenario(ctx: Context): Promise<StorageResult> {
  const from = { subject: 'bench-probe', requestId: `probe${randomBytes(3).toString('hex')}` };
  const { reserve, settle } = await captureScriptCalls(ctx, from.subject, from.requestId, 'org-1');
  // Each __rand_int__ is its own random number below -r: 10,000 subjects per limit, as the gRPC scenarios;
  // the request id takes two, so that (practically) no reservation is asked twice.
  const to = { subject: 'bench-__rand_int__', requestId: 'r__rand_int____rand_int__' };
  const reserveArgs = reshape(reserve, from, to);
  const result: StorageResult = { commandLine: '', sha: reserve.sha, argCount: reserveArgs.length, runs: [] };
  const bench = async (clients: number, pipeline: number, requests: number, args: string[], sha: string) => {
    const argv = [
      '-h',
      '127.0.0.1',
      '-p',
      String(ctx.redis.port),
      '-c',
      String(clients),
      '-n',
      String(requests),
      '-r',
      String(principals),
      '-P',
      String(pipeline),
      '--csv',
      'EVALSHA',
      sha,
      ...args,
    ];
    const cpuBefore = await processCpuSeconds(ctx.redisPid);
    const started = performance.now();
    const out = execFileSync('redis-benchmark', argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    const wallSeconds = (performance.now() - started) / 1000;
    const redisCores = ((await processCpuSeconds(ctx.redisPid)) - cpuBefore) / wallSeconds;
    const line = out.trim().split('\n').pop() as string;
    const fields = line
      .split(',')
      .slice(-7)
      .map((f) => Number(f.replace(/"/g, '')));
    const [rps, , , p50, , p99, max] = fields as [number, number, number, number, number, number, number];
    return { argv, rps, p50Ms: p50, p99Ms: p99, maxMs: max, redisCores };
  };
  await ctx.client.flushall();
  const calibrate = await bench(64, 1, 20_000, reserveArgs, reserve.sha); // warm-up, and how many make `seconds`
  const requests = Math.max(20_000, Math.round(calibrate.rps * seconds));
  const configs = [
    { clients: 1, pipeline: 1, requests: Math.max(2_000, Math.round(requests / 8)) },
    { clients: 64, pipeline: 1, requests },
    { clients: 64, pipeline: 16, requests: requests * 2 },
  ];
  for (const { clients, pipeline, requests: n } of configs) {
    await ctx.client.flushall();
    const run = await bench(clients, pipeline, n, reserveArgs, reserve.sha);
    result.runs.push({
      pipeline,
      clients,
      requests: n,
      rps: run.rps,
      p50Ms: run.p50Ms,
      p99Ms: run.p99Ms,
      maxMs: run.maxMs,
      redisCores: run.redisCores,
    });
    if (clients === 64 && pipeline === 1) {
      result.commandLine = `redis-benchmark ${run.argv.map(shellQuote).join(' ')}`.replace(
        `-p ${ctx.redis.port}`,
        '-p <port>',
      );
    }
    log(
      `storage: reserve.lua via EVALSHA, -c ${clients} -P ${pipeline}: ${Math.round(run.rps)} calls/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, redis-server ${run.redisCores.toFixed(2)} cores`,
    );
  }
  // settle.lua on the same shape (with no reservation: the direct-charge path)
  await ctx.client.flushall();
  const settleRun = await bench(64, 1, requests, reshape(settle, from, to), settle.sha);
  result.settleRps = settleRun.rps;
  log(`storage: settle.lua (no reservation: direct charge), -P 1: ${Math.round(settleRun.rps)} calls/s`);
  await ctx.client.flushall();
  ctx.commandLines['storage'] = result.commandLine;
  return result;
}

// ------------------------------------------------------------------------------------- redis memory

async function footprintScenario(ctx: Context): Promise<FootprintResult> {
  const from = { subject: 'bench-probe', requestId: `probe${randomBytes(3).toString('hex')}` };
  const { reserve } = await captureScriptCalls(ctx, from.subject, from.requestId, 'org-1');
  const redis = ctx.client;
  await redis.flushall('SYNC');
  await redis.script('LOAD', readScript('reserve')); // the script cache is in the baseline, not the delta
  const baseline = await usedMemory(redis);
  const numKeys = Number(reserve.args[0]);
  const limits = numKeys - 1;
  for (let first = 0; first < memoryPrincipals; first += 1000) {
    const pipeline = redis.pipeline();
    for (let i = first; i < Math.min(memoryPrincipals, first + 1000); i++) {
      pipeline.call(
        'EVALSHA',
        reserve.sha,
        ...reshape(reserve, from, { subject: `bench-${i}`, requestId: `r${i}` }),
      );
    }
    const replies = (await pipeline.exec()) ?? [];
    const failed = replies.find(([error]) => error);
    if (failed) throw failed[0] as Error;
  }
  const afterReserve = await usedMemory(redis);
  const keys = await redis.dbsize();
  // Drop the reservation records (one per request, kept for lease + idempotency window): what stays is the counters.
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', '*:res:*', 'COUNT', 5000);
    cursor = next;
    if (found.length > 0) await redis.unlink(...found);
  } while (cursor !== '0');
  await new Promise((resolve) => setTimeout(resolve, 500)); // UNLINK frees in the background
  const afterDrop = await usedMemory(redis);
  const counterKeys = await redis.dbsize();

  // The same counters alone: Redis's key tables (a bucket per key, in the main and the expiry table) keep
  // the size the records grew them to after the UNLINK. Moved with DUMP/RESTORE (encoding and TTL kept)
  // into an emptied keyspace, the counters pay only for the tables their own number needs.
  const dumped: [string, number, Buffer][] = [];
  cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'COUNT', 5000);
    cursor = next;
    for (const key of found)
      dumped.push([key, await redis.pttl(key), (await redis.dumpBuffer(key)) as Buffer]);
  } while (cursor !== '0');
  await redis.flushall('SYNC');
  await redis.script('LOAD', readScript('reserve'));
  const countersBaseline = await usedMemory(redis);
  for (let first = 0; first < dumped.length; first += 1000) {
    const pipeline = redis.pipeline();
    for (const [key, ttl, dump] of dumped.slice(first, first + 1000))
      pipeline.restore(key, Math.max(ttl, 0), dump);
    await pipeline.exec();
  }
  const countersOnly = await usedMemory(redis);

  // Baseline: a sliding log, one ZSET per (principal, limit) with one member per request in the window,
  // at the shipped pro tier's 60 requests a minute; members are request ids as quotad's, scores ms.
  const members = 60;
  await redis.flushall('SYNC');
  await redis.script('LOAD', readScript('reserve'));
  const zBaseline = await usedMemory(redis);
  const now = Date.now();
  for (let first = 0; first < memoryPrincipals; first += 500) {
    const pipeline = redis.pipeline();
    for (let i = first; i < Math.min(memoryPrincipals, first + 500); i++) {
      const args: (string | number)[] = [];
      for (let m = 0; m < members; m++)
        args.push(now - m * 1000, `${randomBytes(4).toString('hex')}-${i * members + m}`);
      pipeline.zadd(`quotad:{org:org-${i % 97}}:log:s:bench-${i}:requests_per_minute`, ...args);
    }
    await pipeline.exec();
  }
  const zAfter = await usedMemory(redis);
  const encoding = (await redis.object(
    'ENCODING',
    'quotad:{org:org-0}:log:s:bench-0:requests_per_minute',
  )) as string;
  await redis.flushall('SYNC');
  const result: FootprintResult = {
    principals: memoryPrincipals,
    limits,
    method:
      "quotad's reserve.lua called directly through EVALSHA (pipelined, 1,000 a batch) with the KEYS/ARGV a real `quotad serve` sent for the bench tier (captured with MONITOR), one decision per principal",
    baselineBytes: baseline,
    afterReserveBytes: afterReserve,
    afterDropReservationsBytes: afterDrop,
    countersBaselineBytes: countersBaseline,
    countersOnlyBytes: countersOnly,
    countersPerPrincipalLimit: (countersOnly - countersBaseline) / (memoryPrincipals * limits),
    countersBesideRecordsPerPrincipalLimit: (afterDrop - baseline) / (memoryPrincipals * limits),
    reservationRecordBytes: (afterReserve - baseline - (countersOnly - countersBaseline)) / memoryPrincipals,
    keys: counterKeys,
    slidingLogMembers: members,
    slidingLogBytes: zAfter - zBaseline,
    slidingLogPerPrincipalLimit: (zAfter - zBaseline) / memoryPrincipals,
    slidingLogEncoding: encoding,
  };
  log(
    `footprint: ${keys} keys after reserve, ${counterKeys} counters; ${result.countersPerPrincipalLimit.toFixed(1)} B per (principal, limit) alone, ${result.countersBesideRecordsPerPrincipalLimit.toFixed(1)} B beside the records' key tables; reservation record ${result.reservationRecordBytes.toFixed(1)} B; sliding log ${result.slidingLogPerPrincipalLimit.toFixed(0)} B (${encoding})`,
  );
  return result;
}

// ------------------------------------------------------------------------------------------ profile

async function profileScenario(ctx: Context): Promise<Results['profile']> {
  await ctx.client.flushall();
  const profileDir = join(ctx.dir, 'cpuprofile');
  await mkdir(profileDir, { recursive: true });
  const { quotad } = await startAuthority(ctx, 'redis', {
    NODE_OPTIONS: `--import=${pathToFileURL(benchScript('cpu-profiler')).href}`,
    QUOTAD_BENCH_PROFILE_DIR: profileDir,
  });
  const pid = quotad.child.pid as number;
  let point: LoadPoint | undefined;
  let file: string | undefined;
  try {
    await withGenerators(
      quotad.grpcAddress,
      async (gens) => {
        const toggle = () => process.kill(pid, 'SIGUSR2');
        point = await phase(
          gens,
          { mode: 'closed', op: 'pair', concurrency, warmupMs },
          { server: pid },
          undefined,
          {
            start: toggle,
            end: toggle,
          },
        );
      },
      ctx,
      'profile',
    );
    for (let waited = 0; !file && waited < 20_000; waited += 200) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      file = (await readdir(profileDir)).find((f) => f.endsWith('.cpuprofile'));
    }
  } finally {
    await quotad.stop();
  }
  if (!file) throw new Error(`the authority wrote no .cpuprofile: ${(await readdir(profileDir)).join(', ')}`);
  const profile = JSON.parse(await readFile(join(profileDir, file), 'utf8')) as Parameters<
    typeof summarizeProfile
  >[0];
  const summary = summarizeProfile(profile, REPO_ROOT);
  log(
    `profile: ${Math.round(point?.operationsPerSecond ?? 0)} ops/s under the profiler; top: ${summary.top
      .slice(0, 6)
      .map((f) => `${f.name} ${f.selfPercent.toFixed(1)} %`)
      .join(', ')}`,
  );
  ctx.commandLines['profile'] =
    "NODE_OPTIONS=--import=dist/bench/cpu-profiler.js on the redis scenario's authority (the V8 profiler via node:inspector, SIGUSR2 at the start and the end of the measured period), closed loop as above";
  return { ...summary, operationsPerSecond: point?.operationsPerSecond ?? 0, seconds };
}

// --------------------------------------------------------------------------------------------- main

async function render(results: Results) {
  const out = resolve(REPO_ROOT, values.out as string);
  const chart = resolve(REPO_ROOT, values.chart as string);
  await writeFile(chart, renderChart(results));
  // bench/events.ts writes a section of its own into the page: keep it.
  const previous = await readFile(out, 'utf8').catch(() => '');
  const events = /<!-- bench\/events\.ts: begin -->[\s\S]*<!-- bench\/events\.ts: end -->/.exec(
    previous,
  )?.[0];
  const report = await renderReport(results, { chartFile: chart, outFile: out });
  const page = events ? `${report.trimEnd()}\n\n${events}\n` : report;
  const config = (await prettier.resolveConfig(out)) ?? {};
  await writeFile(out, await prettier.format(page, { ...config, filepath: out }));
}

/** The last run's results, to keep when only the burst or envoy scenario is measured again. */
async function previousResults(json: string): Promise<Results | undefined> {
  try {
    return JSON.parse(await readFile(json, 'utf8')) as Results;
  } catch {
    return undefined;
  }
}

async function main() {
  if (values['render-only']) {
    await render(JSON.parse(await readFile(values['render-only'], 'utf8')) as Results);
    log(`wrote ${values.out} and ${values.chart} from ${values['render-only']}`);
    return;
  }
  const started = new Date();
  const results: Results = {
    startedAt: started.toISOString(),
    finishedAt: '',
    durationSeconds: 0,
    machine: machine([values.out, values.chart, values.json] as string[]),
    commandLines: {
      make: 'make bench',
      run: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    },
    settings: {
      seconds,
      warmupSeconds: warmupMs / 1000,
      openWarmupSeconds: openWarmupMs / 1000,
      loadgens,
      principals,
      concurrency,
      batchInflight,
      batchSize,
      fractions: fractions.join(', '),
      rounds,
      roundSeconds,
      gatewayRounds,
      gatewaySeconds,
      memoryPrincipals,
      scenarios: [...only].join(', '),
    },
    grpc: [],
    protoHasBatch: protoHasBatch(),
  };
  log(`scenarios: ${[...only].join(', ')}; ${seconds} s a point; load average ${results.machine.loadBefore}`);
  const dir = await mkdtemp(join(os.tmpdir(), 'quotad-bench-'));
  const redis = await TestRedisServer.start();
  const client = redis.client();
  try {
    const ctx: Context = {
      redis,
      client,
      redisPid: Number(await infoField(client, 'server', 'process_id')),
      dir,
      policyPath: await writeBenchPolicy(dir),
      commandLines: results.commandLines,
    };
    ctx.commandLines.redis = `redis-server --port <free port> --bind 127.0.0.1 --dir <tmp> --save '' --appendonly no (harness/redis-server.ts)`;
    for (const id of ['transport', 'redis', 'memory', 'rlf', 'batch']) {
      if (only.has(id)) results.grpc.push(await grpcScenario(ctx, id));
    }
    if (only.has('rounds')) results.rounds = await roundsScenario(ctx);
    if (only.has('storage')) results.storage = await storageScenario(ctx);
    if (only.has('gateway')) {
      results.gateway = await gatewayScenario({
        redis,
        redisPid: ctx.redisPid,
        policyPath: ctx.policyPath,
        rounds: gatewayRounds,
        seconds: gatewaySeconds,
        warmupSeconds: 1,
        connections: [1, 32],
        log,
      });
      ctx.commandLines.gateway = results.gateway.commandLines.join('\n');
    }
    if (only.has('footprint')) results.footprint = await footprintScenario(ctx);
    if (only.has('profile')) results.profile = await profileScenario(ctx);
    if (only.has('burst')) {
      results.burst = await burstScenario({
        redis,
        dir,
        commit: String(results.machine.commit),
        burst: Number(values.burst),
        rounds: Number(values['burst-rounds']),
        log,
      });
    }
    if (only.has('envoy')) {
      results.envoy = await envoyScenario({
        redis,
        dir,
        policyPath: ctx.policyPath,
        commit: String(results.machine.commit),
        concurrency,
        seconds,
        warmupSeconds: warmupMs / 1000,
        principals,
        log,
      });
    }
    if (only.has('signing')) {
      results.signing = await signingScenario({
        redis,
        dir,
        policyPath: ctx.policyPath,
        commit: String(results.machine.commit),
        seconds,
        log,
      });
    }
  } finally {
    client.disconnect();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const finished = new Date();
  results.finishedAt = finished.toISOString();
  results.durationSeconds = Math.round((finished.getTime() - started.getTime()) / 1000);
  results.machine.loadAfter = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

  const json = resolve(REPO_ROOT, values.json as string);
  await mkdir(join(json, '..'), { recursive: true });
  // A scenario measured alone (burst, envoy, signing) keeps every other scenario's figures of the last run.
  const alone = only.size === 1 && (only.has('burst') || only.has('envoy') || only.has('signing'));
  const kept = alone ? await previousResults(json) : undefined;
  const written = kept
    ? {
        ...kept,
        burst: results.burst ?? kept.burst,
        envoy: results.envoy ?? kept.envoy,
        signing: results.signing ?? kept.signing,
      }
    : results;
  await writeFile(json, `${JSON.stringify(written, null, 2)}\n`);
  await render(written);
  log(
    `wrote ${values.out}, ${values.chart} and ${values.json} in ${results.durationSeconds} s; load average ${results.machine.loadAfter}`,
  );
}

await main();
// Child processes are gone; ioredis or grpc handles left in this one must not keep it alive.
process.exit(0);
