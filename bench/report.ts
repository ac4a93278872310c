/**
 * bench/RESULTS.md from one run's results: every scenario side by side, the targets, then the detail of
 * each scenario, where the time went, and the setup (machine, versions, command lines). Formatted with the
 * repository's Prettier settings, so `npm run lint` passes on the file as written.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';
import * as prettier from 'prettier';
import { REPO_ROOT } from '../harness/authority-process.js';
import type { GatewayRun, GatewayTarget, GrpcScenario, LoadPoint, Results } from './result-types.js';
import {
  compareGateways,
  compareRounds,
  quotadCpuMs,
  showSpread,
  spreadOf,
  type GatewayComparison,
  type Spread,
  type RoundsComparison,
} from './comparisons.js';
import { renderBurst } from './burst.js';
import { renderEnvoy } from './envoy.js';
import { renderSigning } from './signing.js';

const require = createRequire(import.meta.url);

const int = (n: number | undefined) =>
  n === undefined || !Number.isFinite(n) ? '—' : Math.round(n).toLocaleString('en-US');
const ms = (n: number | undefined) =>
  n === undefined || !Number.isFinite(n) ? '—' : n < 1 ? `${n.toFixed(3)} ms` : `${n.toFixed(2)} ms`;
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? '—'
    : `${(a / b).toFixed(2)}×`;
const cores = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(2));
const met = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? 'yes' : '**no**');

function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) =>
    `| ${cells.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const half = (s: GrpcScenario | undefined) => s?.open.find((p) => p.fraction === 0.5);
const errorText = (p: LoadPoint) => {
  const parts = Object.entries(p.errors).map(([k, v]) => `${k} ${v}`);
  if (p.unfinished) parts.push(`unfinished ${p.unfinished}`);
  if (p.denied) parts.push(`denied ${p.denied}`);
  return parts.join(', ') || '0';
};
/** Commands Redis runs inside the scripts (quotad's Lua, rate-limiter-flexible's): counted by commandstats too. */
function scriptInnerCommands(): Set<string> {
  const sources: string[] = [];
  const luaDir = join(REPO_ROOT, 'src/store/redis/lua');
  for (const entry of readdirSync(luaDir, { recursive: true, encoding: 'utf8' })) {
    if (entry.endsWith('.lua')) sources.push(readFileSync(join(luaDir, entry), 'utf8'));
  }
  sources.push(readFileSync(require.resolve('rate-limiter-flexible/lib/RateLimiterRedis.js'), 'utf8'));
  const names = new Set<string>();
  for (const source of sources) {
    for (const match of source.matchAll(/redis\.call\(\s*['"](\w+)['"]/gi))
      names.add((match[1] as string).toLowerCase());
  }
  return names;
}
const INNER = scriptInnerCommands();
/** The benchmark's own (INFO) and clients' housekeeping, not the operations'. */
const HOUSEKEEPING = new Set([
  'info',
  'ping',
  'client',
  'select',
  'hello',
  'command',
  'config',
  'script',
  'monitor',
]);

interface RoundTrips {
  /** EVALSHA + EVAL per call of `method` (or per item of a batch method). */
  scripts: number;
  /** Commands sent from outside any script (neither a script call, one a script makes, nor housekeeping). */
  outside: number;
  calls: number;
}

/** Script calls per call of `method` over a whole phase; `known` takes off the scripts of other methods. */
function roundTrips(
  p: LoadPoint | undefined,
  method: string,
  known: [string, number][] = [],
): RoundTrips | undefined {
  const totals = p?.redisTotals;
  const calls = totals?.sent[method];
  if (!totals || !calls) return undefined;
  let scripts = (totals.commands.evalsha ?? 0) + (totals.commands.eval ?? 0);
  scripts -= (totals.idleScriptsPerSecond ?? 0) * (totals.seconds ?? 0);
  for (const [other, perCall] of known) scripts -= perCall * (totals.sent[other] ?? 0);
  const outside = Object.entries(totals.commands)
    .filter(
      ([k]) =>
        k !== 'evalsha' &&
        k !== 'eval' &&
        !INNER.has(k.split('|')[0] as string) &&
        !HOUSEKEEPING.has(k.split('|')[0] as string),
    )
    .reduce((sum, [, v]) => sum + v, 0);
  return { scripts: scripts / calls, outside: outside / calls, calls };
}

const msPerCall = (n: number | undefined) => (n === undefined ? '—' : `${n.toFixed(3)} ms`);

/** What every section of the report reads: the results, and `p`, which appends blocks to `out`. */
interface ReportContext {
  results: Results;
  files: { chartFile: string; outFile: string };
  by: (id: string) => GrpcScenario | undefined;
  transport: GrpcScenario | undefined;
  redis: GrpcScenario | undefined;
  memory: GrpcScenario | undefined;
  rlf: GrpcScenario | undefined;
  batch: GrpcScenario | undefined;
  storage: Results['storage'];
  gateway: Results['gateway'];
  gateways: GatewayComparison | undefined;
  rounds: RoundsComparison | undefined;
  footprint: Results['footprint'];
  profile: Results['profile'];
  machine: Results['machine'];
  settings: Results['settings'];
  batchShape: string;
  chart: string;
  p: (...blocks: string[]) => void;
  out: string[];
}

/** The section on the side-by-side table. */
function renderSideBySide(r: ReportContext): void {
  const { transport, redis, memory, rlf, batch, storage, gateways, footprint, batchShape, p } = r;
  p('## Side by side');
  const rows: (string | number)[][] = [];
  const grpcRow = (s: GrpcScenario | undefined, title: string) => {
    if (!s) return;
    const h = half(s);
    rows.push([
      title,
      int(s.closed?.operationsPerSecond),
      int(s.closed?.decisionsPerSecond),
      int(s.checkOnly?.callsPerSecond),
      ms(h?.p50Ms),
      ms(h?.p99Ms),
      ms(h?.p999Ms),
      s.id === 'transport'
        ? '1.00×'
        : ratio(s.closed?.operationsPerSecond, transport?.closed?.operationsPerSecond),
      s.id === 'rlf' ? '1.00×' : ratio(s.closed?.operationsPerSecond, rlf?.closed?.operationsPerSecond),
    ]);
  };
  grpcRow(transport, '1. Transport ceiling (no-op grpc-js server)');
  if (transport?.batch) {
    rows.push([
      `1b. Transport ceiling, batched no-op (${batchShape})`,
      `${int(transport.batch.operationsPerSecond)} batch pairs/s`,
      int(transport.batch.decisionsPerSecond),
      '—',
      '—',
      '—',
      '—',
      `${ratio(transport.batch.decisionsPerSecond, transport.closed?.decisionsPerSecond)} (decisions)`,
      '—',
    ]);
  }
  grpcRow(redis, '2. quotad, Redis store');
  grpcRow(memory, '3. quotad, memory store');
  grpcRow(rlf, '4. rate-limiter-flexible, RateLimiterRedis ×3');
  if (storage && !storage.skipped) {
    const r1 = storage.runs.find((r) => r.pipeline === 1 && r.clients === 64);
    rows.push([
      '5. Storage ceiling: reserve.lua by redis-benchmark (-c 64, -P 1)',
      `${int(r1?.rps)} scripts/s`,
      '—',
      '—',
      `${ms(r1?.p50Ms)} (closed loop)`,
      `${ms(r1?.p99Ms)} (closed loop)`,
      '—',
      '—',
      '—',
    ]);
  }
  if (gateways) {
    const rps = (t: GatewayTarget) => int(gateways.median(t, 32, (run) => run.requestsPerSecond));
    const p50 = (t: GatewayTarget) => ms(gateways.median(t, 1, (run) => run.p50Ms));
    const p99 = (t: GatewayTarget) => ms(gateways.median(t, 1, (run) => run.p99Ms));
    rows.push([
      '6. HTTP, 32 connections: direct / quotad gateway (memory) / (Redis) / Portkey, median of rounds',
      `${rps('direct')} / ${rps('quotad-memory')} / ${rps('quotad-redis')} / ${rps('portkey')} req/s`,
      '—',
      '—',
      `${p50('direct')} / ${p50('quotad-memory')} / ${p50('quotad-redis')} / ${p50('portkey')} (1 connection)`,
      `${p99('direct')} / ${p99('quotad-memory')} / ${p99('quotad-redis')} / ${p99('portkey')} (1 connection)`,
      '—',
      '—',
      '—',
    ]);
  }
  if (batch) {
    rows.push([
      `8. quotad batched (Redis), ${batchShape} checks`,
      batch.batch ? `${int(batch.batch.operationsPerSecond)} batch pairs/s` : 'skipped',
      batch.batch ? int(batch.batch.decisionsPerSecond) : '—',
      '—',
      '—',
      '—',
      '—',
      batch.batch
        ? `${ratio(batch.batch.decisionsPerSecond, transport?.closed?.decisionsPerSecond)} (decisions)`
        : '—',
      '—',
    ]);
  }
  p(
    table(
      [
        'scenario',
        'max operations/s (closed loop, 64 in flight)',
        'decisions/s',
        'CheckQuota alone, calls/s',
        'p50 at 50 % load',
        'p99 at 50 % load',
        'p99.9 at 50 % load',
        '÷ transport ceiling',
        '÷ rate-limiter-flexible',
      ],
      rows,
    ),
    'An operation is one CheckQuota and then its RecordUsage; a decision is one answered CheckQuota or RecordUsage (a batch item counts one), so decisions/s is twice operations/s for the unary scenarios. Latency is per operation (both calls), measured in the open loop at 50 % of the scenario\'s own closed-loop maximum, from each operation\'s intended send time. The ratios are of operations/s (decisions/s for the batched row). "CheckQuota alone" is a second closed loop of CheckQuota calls without RecordUsage.',
  );
  if (footprint) {
    p(
      `7. Redis memory: **${footprint.countersPerPrincipalLimit.toFixed(0)} bytes per active (principal, limit)** for quotad's counters (${int(footprint.principals)} principals × ${footprint.limits} limits), against **${int(footprint.slidingLogPerPrincipalLimit)} bytes** for a sliding-log ZSET at ${footprint.slidingLogMembers} requests per window (${(footprint.slidingLogPerPrincipalLimit / footprint.countersPerPrincipalLimit).toFixed(1)}× more). Each request also leaves a reservation record of ${footprint.reservationRecordBytes.toFixed(0)} bytes for the lease plus the idempotency window. Detail below.`,
    );
  }
}

/** The section on the targets (issue #19's), met or not: ratios of one run, medians of its rounds. */
function renderTargets(r: ReportContext): void {
  const { transport, redis, batch, gateways, rounds, footprint, p } = r;
  p('## Targets');
  const checkTrips = roundTrips(redis?.checkOnly, 'checkQuota');
  const recordTrips =
    checkTrips && roundTrips(redis?.closed, 'recordUsage', [['checkQuota', checkTrips.scripts]]);
  const checkRt = checkTrips?.scripts;
  const recordRt = recordTrips?.scripts;
  const h = half(redis);
  const ht = half(transport);
  const batchRatio =
    batch?.batch && transport?.closed
      ? batch.batch.decisionsPerSecond / transport.closed.decisionsPerSecond
      : undefined;
  const both = (
    pick: (g: GatewayComparison) => Record<string, Spread>,
    ok: (median: number) => boolean,
  ): [string, boolean | undefined] => {
    if (!gateways) return ['—', undefined];
    const m = pick(gateways);
    const mem = m['quotad-memory'];
    const red = m['quotad-redis'];
    const verdict =
      mem && red && Number.isFinite(mem.median) && Number.isFinite(red.median)
        ? ok(mem.median) && ok(red.median)
        : undefined;
    return [`memory ${showSpread(mem)}, Redis ${showSpread(red)}`, verdict];
  };
  const lonePortkey = gateways ? gateways.addedP50.portkey : undefined;
  const [addedText, addedOk] = both(
    (g) => g.addedP50VsPortkey,
    (m) => m <= 1,
  );
  const [cpuText, cpuOk] = both(
    (g) => g.gatewayCpuVsPortkey,
    (m) => m <= 1,
  );
  const [totalText] = both(
    (g) => g.totalCpuVsPortkey,
    () => true,
  );
  const [rpsText, rpsOk] = both(
    (g) => g.throughputVsPortkey,
    (m) => m >= 2.5,
  );
  const vsT = rounds?.vsTransport;
  const vsR = rounds?.vsRlf;
  const cpuT = rounds?.serverCpuVsTransport;
  const medianOk = (s: Spread | undefined, ok: (m: number) => boolean) =>
    s && Number.isFinite(s.median) ? ok(s.median) : undefined;
  const targets: [string, string, boolean | undefined][] = [
    [
      "Gateway, 1 connection: added p50 over direct ≤ Portkey's added p50",
      gateways
        ? `quotad ÷ Portkey, median (range) of ${gateways.rounds.length} rounds: ${addedText}; added p50: memory ${showSpread(gateways.addedP50['quotad-memory'], ' ms', 3)}, Redis ${showSpread(gateways.addedP50['quotad-redis'], ' ms', 3)}, Portkey ${showSpread(lonePortkey, ' ms', 3)}`
        : '—',
      addedOk,
    ],
    [
      "Gateway, 1 connection: CPU per request of the gateway process ≤ Portkey's",
      gateways ? `quotad ÷ Portkey: ${cpuText}; with the authority (and Redis) behind it: ${totalText}` : '—',
      cpuOk,
    ],
    [
      "Gateway, 32 connections: ≥ 2.5× Portkey's requests/s (memory and Redis authority)",
      gateways ? rpsText : '—',
      rpsOk,
    ],
    [
      'Unary CheckQuota ≥ 0.9× the transport ceiling',
      vsT
        ? `Redis ${showSpread(vsT.redis)}, memory ${showSpread(vsT.memory)} (CheckQuota-alone closed loops, rounds)`
        : '—',
      vsT
        ? (medianOk(vsT.redis, (m) => m >= 0.9) ?? false) && (medianOk(vsT.memory, (m) => m >= 0.9) ?? false)
        : undefined,
    ],
    [
      'Unary CheckQuota ≥ 1.5× rate-limiter-flexible',
      vsR ? `Redis ${showSpread(vsR.redis)}, memory ${showSpread(vsR.memory)}` : '—',
      vsR ? medianOk(vsR.redis, (m) => m >= 1.5) : undefined,
    ],
    [
      "Server CPU per CheckQuota ≤ 1.4× the no-op server's",
      cpuT
        ? `Redis ${showSpread(cpuT.redis)}, memory ${showSpread(cpuT.memory)} (rate-limiter-flexible ${showSpread(cpuT.rlf)}); medians ${msPerCall(rounds?.median('redis', (x) => x.serverMsPerCall))} / ${msPerCall(rounds?.median('memory', (x) => x.serverMsPerCall))} against ${msPerCall(rounds?.median('transport', (x) => x.serverMsPerCall))}`
        : '—',
      cpuT
        ? (medianOk(cpuT.redis, (m) => m <= 1.4) ?? false) &&
          (medianOk(cpuT.memory, (m) => m <= 1.4) ?? false)
        : undefined,
    ],
    [
      "p99 at 50 % load ≤ the no-op transport's p99 at its own 50 %",
      h && ht
        ? `quotad on Redis ${ms(h.p99Ms)} at ${int(h.offeredPerSecond)} operations/s offered; no-op ${ms(ht.p99Ms)} at ${int(ht.offeredPerSecond)}`
        : '—',
      h && ht ? h.p99Ms <= ht.p99Ms : undefined,
    ],
    [
      '≤ 100 bytes of Redis memory per active (principal, limit)',
      footprint ? `${footprint.countersPerPrincipalLimit.toFixed(0)} bytes` : '—',
      footprint ? footprint.countersPerPrincipalLimit <= 100 : undefined,
    ],
    [
      '≤ 400 bytes per reservation record',
      footprint ? `${footprint.reservationRecordBytes.toFixed(0)} bytes` : '—',
      footprint ? footprint.reservationRecordBytes <= 400 : undefined,
    ],
    [
      'Batched decisions/s ≥ 3× the unary ceiling',
      batchRatio === undefined
        ? `not measured: ${batch?.skipped ?? 'scenario not run'}`
        : `${batchRatio.toFixed(2)}× (${int(batch?.batch?.decisionsPerSecond)} decisions/s vs ${int(transport?.closed?.decisionsPerSecond)} unary calls/s)`,
      batchRatio === undefined ? undefined : batchRatio >= 3,
    ],
    [
      'One Redis round trip per CheckQuota',
      checkRt === undefined
        ? '—'
        : `${checkRt.toFixed(3)} EVALSHA/EVAL per CheckQuota and ${checkTrips?.outside.toFixed(3)} commands outside a script (INFO commandstats over the whole CheckQuota-alone loop: ${int(checkTrips?.calls)} calls)`,
      checkRt === undefined ? undefined : checkRt <= 1.001 && (checkTrips?.outside ?? 0) < 0.001,
    ],
    [
      'One Redis round trip per RecordUsage',
      recordRt === undefined
        ? '—'
        : `${recordRt.toFixed(3)} EVALSHA/EVAL per RecordUsage and ${recordTrips?.outside.toFixed(3)} commands outside a script (over the whole CheckQuota + RecordUsage loop, less ${checkRt?.toFixed(3)} per CheckQuota: ${int(recordTrips?.calls)} calls)`,
      recordRt === undefined ? undefined : recordRt <= 1.001 && (recordTrips?.outside ?? 0) < 0.001,
    ],
  ];
  p(
    table(
      ['target', 'measured', 'met?'],
      targets.map(([t, m, ok]) => [t, m, met(ok)]),
    ),
  );
  const notMet = targets.filter(([, , ok]) => ok === false).map(([t]) => t);
  const notMeasured = targets.filter(([, , ok]) => ok === undefined).map(([t]) => t);
  p(
    notMet.length === 0
      ? 'Every measured target is met.'
      : `**Not met (${notMet.length} of ${targets.length}):** ${notMet.join('; ')}.` +
          (notMeasured.length ? ` Not measured in this run: ${notMeasured.join('; ')}.` : ''),
  );
}

/** The section on how to read the throughput figures. */
function renderHowToReadIt(r: ReportContext): void {
  const { transport, redis, memory, rlf, machine, p } = r;
  const lens = [transport, redis, memory, rlf].filter((x): x is GrpcScenario => Boolean(x?.checkOnly));
  if (lens.length > 0) {
    const perCall = (pt: LoadPoint, key: string) => {
      const c = pt.cpu[key];
      return c === undefined || !Number.isFinite(c) ? 0 : (1000 * c) / pt.callsPerSecond;
    };
    p(
      '## How to read the throughput figures',
      `In the closed loops no process is saturated: during quotad's CheckQuota-alone loop the machine was ${cores(redis?.checkOnly?.cpu.machine)} cores busy of ${machine.nproc}, the authority ${cores(redis?.checkOnly?.cpu.server)}, the load generator ${cores(redis?.checkOnly?.cpu.loadgen)}, Redis ${cores(redis?.checkOnly?.cpu.redis)}. With 64 calls in flight on one channel the calls move through the load generator, the server and Redis in waves, each process waiting for the others' batch, so the throughput comes out near 1 ÷ (the CPU all of them spend per call), not 1 ÷ (the largest one's). The server's own CPU per call is the cleanest measure of what quotad costs; the load generator's is the same client for every scenario.`,
      table(
        [
          'scenario (CheckQuota alone)',
          'calls/s',
          'CPU ms per call: load generator',
          'server',
          'Redis',
          'sum',
          '1 ÷ sum',
        ],
        lens.map((sc) => {
          const pt = sc.checkOnly as LoadPoint;
          const parts = ['loadgen', 'server', 'redis'].map((k) => perCall(pt, k));
          const sum = parts.reduce((a, b) => a + b, 0);
          return [
            sc.title,
            int(pt.callsPerSecond),
            ...parts.map((v, i) => (i === 2 && pt.cpu.redis === undefined ? '—' : v.toFixed(3))),
            sum.toFixed(3),
            int(1000 / sum),
          ];
        }),
      ),
    );
  }
}

/** The section on latency against load (open loop). */
function renderOpenLoop(r: ReportContext): void {
  const { results, settings, chart, p } = r;
  p(
    '## Latency against load (open loop)',
    `![p50 and p99 latency against offered load](${chart})`,
    `Each point: operations sent on a fixed schedule at the given share of the scenario's closed-loop maximum for ${settings.seconds} s (after ${settings.openWarmupSeconds} s of warm-up), latency from each operation's intended send time. "From send" leaves out the load generator's own delay in sending (its timers fire late by up to a millisecond or so, more when the CPU is busy); "sender lag" is that delay. A point whose achieved rate falls short of the offered one, or with errors or unfinished operations, is past what the system sustains. The server's CPU per operation falls as the load rises, in the no-op server as much as in quotad: a lightly loaded Node gRPC server pays its per-wake-up costs (system calls, HTTP/2 frames, timers) for one call at a time, a busy one shares them among many — the same effect a batched RPC buys on purpose.`,
  );
  for (const s of results.grpc.filter((g) => g.open.length > 0)) {
    p(
      `### ${s.title}`,
      table(
        [
          'load',
          'offered ops/s',
          'achieved ops/s',
          'p50',
          'p99',
          'p99.9',
          'max',
          'p50 from send',
          'p99 from send',
          'sender lag p99',
          'server CPU ms per op',
          'errors',
        ],
        s.open.map((pt) => [
          `${Math.round((pt.fraction ?? 0) * 100)} %`,
          int(pt.offeredPerSecond),
          int(pt.operationsPerSecond),
          ms(pt.p50Ms),
          ms(pt.p99Ms),
          ms(pt.p999Ms),
          ms(pt.maxMs),
          ms(pt.serviceP50Ms),
          ms(pt.serviceP99Ms),
          ms(pt.lagP99Ms),
          pt.cpu.server === undefined || !Number.isFinite(pt.cpu.server)
            ? '—'
            : ((1000 * pt.cpu.server) / pt.operationsPerSecond).toFixed(3),
          errorText(pt),
        ]),
      ),
    );
  }
}

/** The section on the closed loop and where the time goes. */
function renderClosedLoop(r: ReportContext): void {
  const { results, redis, rlf, batch, machine, settings, p } = r;
  p(
    '## Closed loop and where the time goes',
    `${settings.concurrency} operations in flight from ${settings.loadgens} load-generator process(es) over one gRPC channel each, ${settings.warmupSeconds} s of warm-up discarded, then ${settings.seconds} s measured. CPU is each process's user + system time over the measured period from /proc (1.00 = one core busy the whole time; the machine has ${machine.nproc}), and per operation. "Others" is the machine's busy time (/proc/stat) less these processes: other work on the machine during the measurement, which took that much CPU away from the benchmark.`,
  );
  const closedRows: (string | number)[][] = [];
  for (const s of results.grpc) {
    for (const [label, pt] of [
      ['CheckQuota + RecordUsage', s.closed],
      ['CheckQuota alone', s.checkOnly],
      [
        `batch pair (${settings.batchSize ?? 64} + ${settings.batchSize ?? 64}), ${settings.batchInflight ?? 8} in flight`,
        s.batch,
      ],
    ] as const) {
      if (!pt) continue;
      const perOp = (c: number | undefined) =>
        c === undefined || !Number.isFinite(c) ? '—' : ((1000 * c) / pt.operationsPerSecond).toFixed(3);
      closedRows.push([
        s.title,
        label,
        int(pt.operationsPerSecond),
        ms(pt.p50Ms),
        ms(pt.p99Ms),
        cores(pt.cpu.loadgen),
        cores(pt.cpu.server),
        cores(pt.cpu.redis),
        cores(pt.cpu.others),
        `${perOp(pt.cpu.loadgen)} / ${perOp(pt.cpu.server)} / ${pt.cpu.redis === undefined ? '—' : perOp(pt.cpu.redis)}`,
        errorText(pt),
      ]);
    }
  }
  p(
    table(
      [
        'scenario',
        'operation',
        'ops/s',
        'p50',
        'p99',
        'CPU load generator',
        'CPU server',
        'CPU redis',
        'CPU others',
        'CPU ms per op: load gen / server / redis',
        'errors',
      ],
      closedRows,
    ),
  );
  const commandRows: (string | number)[][] = [];
  for (const s of [redis, rlf, batch]) {
    if (!s) continue;
    const check = roundTrips(s.checkOnly, 'checkQuota');
    const record = check && roundTrips(s.closed, 'recordUsage', [['checkQuota', check.scripts]]);
    const batchCheck = roundTrips(s.batch, 'checkQuotaBatch items');
    const rows: [string, RoundTrips | undefined, LoadPoint | undefined][] = [
      ['CheckQuota (CheckQuota-alone loop)', check, s.checkOnly],
      ['RecordUsage (CheckQuota + RecordUsage loop, less the CheckQuota share)', record, s.closed],
      ['batch item: one check and its record, both batched', batchCheck, s.batch],
    ];
    for (const [label, trips, pt] of rows) {
      if (!trips || !pt?.redisTotals) continue;
      commandRows.push([
        s.title,
        label,
        int(trips.calls),
        trips.scripts.toFixed(3),
        trips.outside.toFixed(3),
        Object.entries(pt.redisTotals.commands)
          .sort((x, y) => y[1] - x[1])
          .map(([k, v]) => `${k} ${int(v)}`)
          .join(', '),
      ]);
    }
  }
  if (commandRows.length > 0) {
    p(
      `Redis round trips, from \`INFO commandstats\` just before each loop was sent and just after its last answer, against every call the load generator sent in it (warm-up and stragglers included, so the edges do not blur the count). Redis counts the commands a script runs inside it too (${[...INNER].sort().join(', ')}): only EVALSHA and EVAL are round trips; "outside a script" counts any other command from a client (housekeeping such as INFO and PING left out). The scripts the servers run on their own, measured over 1 s with no load just before each closed loop (the authority's key store checks the store's identity marker 4 times a second), are taken off, at that rate over the loop's length.`,
      table(
        [
          'scenario',
          'per',
          'calls',
          'EVALSHA + EVAL per call',
          'commands outside a script per call',
          'every command in the loop',
        ],
        commandRows,
      ),
    );
  }
}

/** The section on the storage ceiling (redis-benchmark). */
function renderStorage(r: ReportContext): void {
  const { redis, storage, settings, p } = r;
  if (storage) {
    const one = storage.runs.find((r) => r.clients === 1);
    const c64 = storage.runs.find((r) => r.clients === 64 && r.pipeline === 1);
    const p16 = storage.runs.find((r) => r.pipeline === 16);
    p('## Storage ceiling: redis-benchmark on reserve.lua');
    if (storage.skipped) p(`Skipped: ${storage.skipped}`);
    else {
      p(
        `quotad's own reserve script (SHA ${storage.sha.slice(0, 12)}…, loaded with SCRIPT LOAD from src/store/redis/lua) called with EVALSHA by \`redis-benchmark\`, 64 clients, with the KEYS and ARGV a real \`quotad serve\` sent for one CheckQuota on the bench tier (captured with MONITOR in the same run: ${storage.argCount} arguments after the SHA, four keys — the reservation record and, once for each of the three limits, the subject's counters hash — and the three limit specs). The subject in the key names is \`bench-__rand_int__\` with \`-r ${settings.principals}\`, so each limit's counters spread over ${int(Number(settings.principals))} keys as in the gRPC scenarios; the org stays fixed; the request id takes two random numbers so that a reservation is practically never asked twice (a repeat would take the cheaper duplicate path). Each \`__rand_int__\` is drawn on its own, so one call's three limits land in the counters hashes of three random subjects: the key spread of the gRPC scenarios, and more work than a real call, whose three limits share one hash (three HMGET and three HSET where a real call sends one of each). The database is flushed before each run.`,
        table(
          ['clients', 'pipelining', 'requests', 'scripts/s', 'p50', 'p99', 'max', 'redis-server CPU (cores)'],
          storage.runs.map((r) => [
            r.clients,
            `-P ${r.pipeline}`,
            int(r.requests),
            int(r.rps),
            ms(r.p50Ms),
            ms(r.p99Ms),
            ms(r.maxMs),
            cores(r.redisCores),
          ]),
        ),
        `- One client, one call at a time: p50 ${ms(one?.p50Ms)} for the whole round trip of a reserve script, ${int(one?.rps)} a second.`,
        `- 64 clients, \`-P 1\` (one call in flight per connection, like the authority's unary path): ${int(c64?.rps)} reserve scripts a second with redis-server at ${cores(c64?.redisCores)} cores — Redis runs commands on one thread, so near 1.00 it is the limit: the storage ceiling of the unary path on this machine (redis-benchmark is a C client and uses little of the rest). quotad with the Redis store reached ${int(redis?.checkOnly?.callsPerSecond)} CheckQuota/s, ${ratio(redis?.checkOnly?.callsPerSecond, c64?.rps)} of it: the authority's process and the gRPC client set the pace, not Redis.`,
        `- 64 clients, \`-P 16\` (16 calls in flight per connection, as a batched path would send them): ${int(p16?.rps)} scripts/s, ${ratio(p16?.rps, c64?.rps)} the unpipelined rate, redis-server at ${cores(p16?.redisCores)} cores. Pipelining saves round trips and system calls, not the script's own work (three counters and the reservation record): a batched path gains from fewer gRPC calls and socket writes far more than from Redis.`,
        storage.settleRps !== undefined
          ? `- settle.lua on the captured RecordUsage shape, 64 clients, \`-P 1\`: ${int(storage.settleRps)} scripts/s. With random request ids it finds no reservation and takes the charge-directly path, which writes the counters and a settled record like a settlement does.`
          : '',
        'The exact command (the 64-client `-P 1` run):',
        ['```sh', storage.commandLine, '```'].join('\n'),
      );
    }
  }
}

/** The section on the gateways side by side. */
function renderGateway(r: ReportContext): void {
  const { gateway, gateways, machine, p } = r;
  if (!gateway || !gateways) return;
  const names: Record<GatewayTarget, string> = {
    direct: 'direct to the upstream',
    'quotad-memory': 'quotad gateway → authority (memory)',
    'quotad-redis': 'quotad gateway → authority (Redis)',
    portkey: `Portkey ${gateway.portkeyVersion}`,
  };
  const cpuCell = (run: GatewayRun) =>
    ['gateway', 'authority', 'redis', 'upstream']
      .map((k) =>
        run.cpuMsPerRequest[k] === undefined ? '—' : (run.cpuMsPerRequest[k] as number).toFixed(3),
      )
      .join(' / ');
  p(
    '## Gateways side by side',
    `\`POST /v1/chat/completions\` (\`${JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16 })}\` with one short user message) sent by autocannon ${machine.autocannon} from its own process (bench/http-load.ts) to one demo upstream (src/demo/upstream.ts, its own process): (a) directly, (b) through \`quotad gateway\` to \`quotad serve\` on the in-process store, (c) the same on Redis, with an API key of the bench tier, every setting at its default but \`LOG_LEVEL=warn\` (info logs a line per request), and (d) through Portkey's open-source gateway ${gateway.portkeyVersion} (npm \`@portkey-ai/gateway\`, \`NODE_ENV=production\`, \`--headless\`; it authenticates nothing, counts nothing and reserves nothing). Every process is started once; the targets are loaded in turn, ${gateway.rounds} rounds, ${gateway.warmupSeconds} s of warm-up and ${gateway.seconds} s measured each, at 1 connection (a lone caller) and 32. CPU per request is each process's CPU (from /proc) over the whole autocannon run, warm-up included, divided by every request sent. A ratio is taken within a round; the median and the range of the rounds follow.`,
    table(
      ['ratio (median, range of rounds)', 'quotad (memory)', 'quotad (Redis)'],
      (
        [
          ["added p50 at 1 connection ÷ Portkey's", gateways.addedP50VsPortkey],
          ["gateway CPU per request at 1 connection ÷ Portkey's", gateways.gatewayCpuVsPortkey],
          [
            "gateway + authority (+ Redis) CPU per request at 1 connection ÷ Portkey's",
            gateways.totalCpuVsPortkey,
          ],
          ["requests/s at 32 connections ÷ Portkey's", gateways.throughputVsPortkey],
          ['requests/s at 32 connections ÷ direct', gateways.throughputVsDirect],
        ] as const
      ).map(([label, ratios]) => [
        label,
        showSpread(ratios['quotad-memory']),
        showSpread(ratios['quotad-redis']),
      ]),
    ),
    `Added p50 at 1 connection (median, range): quotad on memory ${showSpread(gateways.addedP50['quotad-memory'], ' ms', 3)}, on Redis ${showSpread(gateways.addedP50['quotad-redis'], ' ms', 3)}, Portkey ${showSpread(gateways.addedP50.portkey, ' ms', 3)}. Portkey's requests/s at 32 connections ÷ direct: ${showSpread(gateways.throughputVsDirect.portkey)}.`,
    table(
      [
        'round',
        'target',
        'connections',
        'req/s',
        'p50',
        'p99',
        'CPU ms per request: gateway / authority / redis / upstream',
        'quotad total (gateway + authority + redis)',
      ],
      gateway.runs.map((run) => [
        run.round,
        names[run.target],
        run.connections,
        int(run.requestsPerSecond),
        ms(run.p50Ms),
        ms(run.p99Ms),
        cpuCell(run),
        run.target.startsWith('quotad') ? quotadCpuMs(run).toFixed(3) : '—',
      ]),
    ),
  );
  p(
    "### Where a lone request's time goes in quotad's gateway",
    `Mean milliseconds per model call at 1 connection by stage, from each gateway's own histograms (its /metrics read before and after each run, warm-up included; median and range of ${gateway.rounds} rounds): intake (\`quotad_gateway_stage_duration_seconds{stage="intake"}\`: headers, the key's hash and confirmation, the body read and parsed), estimate (its tokens counted), decide (\`quotad_gateway_decision_duration_seconds\`: CheckQuota through the batcher, to the authority and back), upstream (\`quotad_gateway_upstream_duration_seconds\`: the SDK's call until the whole JSON answer is in), relay (the answer parsed and written; the settlement is sent after it, off this path), and total (\`quotad_gateway_request_duration_seconds\`, request to end of response, as the gateway sees it).`,
    stageTable(gateway.runs, names),
  );
}

const STAGES = ['intake', 'estimate', 'decide', 'upstream', 'relay', 'total'] as const;

/** Each quotad gateway's mean ms per stage at 1 connection: the median and range of the rounds. */
function stageTable(runs: GatewayRun[], names: Record<GatewayTarget, string>): string {
  const rows = (['quotad-memory', 'quotad-redis'] as const).map((target) => {
    const lone = runs.filter((run) => run.target === target && run.connections === 1 && run.stagesMs);
    return [
      names[target],
      ...STAGES.map((stage) =>
        showSpread(spreadOf(lone.map((run) => run.stagesMs?.[stage] ?? NaN)), ' ms', 3),
      ),
    ];
  });
  return table(['gateway', ...STAGES], rows);
}

/** The section on the alternating CheckQuota rounds. */
function renderRounds(r: ReportContext): void {
  const { results, rounds, p } = r;
  const data = results.rounds;
  if (!data || !rounds) return;
  p(
    '## CheckQuota in alternating rounds',
    `The CheckQuota-alone closed loop (64 in flight, one load generator) of the no-op server, quotad on Redis, quotad in-process and rate-limiter-flexible, in turn, ${data.rounds} rounds of 1 s warm-up and ${data.seconds} s measured each, every server up throughout. Ratios are taken within a round; the targets above are judged on their medians.`,
    table(
      ['ratio (median, range of rounds)', 'quotad (Redis)', 'quotad (memory)'],
      [
        [
          'CheckQuota/s ÷ the transport ceiling',
          showSpread(rounds.vsTransport.redis),
          showSpread(rounds.vsTransport.memory),
        ],
        [
          'CheckQuota/s ÷ rate-limiter-flexible',
          showSpread(rounds.vsRlf.redis),
          showSpread(rounds.vsRlf.memory),
        ],
        [
          "server CPU per CheckQuota ÷ the no-op server's",
          showSpread(rounds.serverCpuVsTransport.redis),
          showSpread(rounds.serverCpuVsTransport.memory),
        ],
      ],
    ),
    table(
      [
        'round',
        'server',
        'CheckQuota/s',
        'p50',
        'p99',
        'server CPU ms per call',
        'CPU cores: load generator / server / redis',
        'errors',
      ],
      data.runs.map((run) => [
        run.round,
        run.id,
        int(run.callsPerSecond),
        ms(run.p50Ms),
        ms(run.p99Ms),
        run.serverMsPerCall.toFixed(3),
        ['loadgen', 'server', 'redis'].map((k) => cores(run.cpu[k])).join(' / '),
        run.errors,
      ]),
    ),
  );
}

/** The section on Redis memory per active (principal, limit). */
function renderFootprint(r: ReportContext): void {
  const { footprint, p } = r;
  if (footprint) {
    p(
      '## Redis memory per active (principal, limit)',
      `Method: ${footprint.method}, for ${int(footprint.principals)} principals. \`used_memory\` from \`INFO memory\` after FLUSHALL and SCRIPT LOAD (so the script cache is in the baseline), after the decisions, and again once the reservation records were UNLINKed (a record is per request, kept for the lease plus the idempotency window, not per principal). Redis's two key tables (the keyspace and the expiries, a bucket per key rounded up to a power of two) keep the size the records grew them to after the UNLINK, so the counters were then moved with DUMP and RESTORE (encoding and TTL kept) into an emptied keyspace and measured alone: that is their own cost, buckets for their own number included; the records' is what the decisions added beyond it.`,
      table(
        ['layout', 'keys', 'used_memory delta', 'per (principal, limit)'],
        [
          [
            `quotad counters alone (${footprint.limits} limits, one hash per principal: requests/min and tokens/min a field each of window index and two counts, USD/day a field of period start, amount charged and amount held)`,
            int(footprint.keys),
            `${int(footprint.countersOnlyBytes - footprint.countersBaselineBytes)} B`,
            `**${footprint.countersPerPrincipalLimit.toFixed(0)} B**`,
          ],
          [
            'the same counters after UNLINKing the records, in key tables sized for both',
            int(footprint.keys),
            `${int(footprint.afterDropReservationsBytes - footprint.baselineBytes)} B`,
            `${footprint.countersBesideRecordsPerPrincipalLimit.toFixed(0)} B`,
          ],
          [
            'quotad reservation records (one per request in its idempotency window)',
            int(footprint.principals),
            `${int(footprint.afterReserveBytes - footprint.baselineBytes - (footprint.countersOnlyBytes - footprint.countersBaselineBytes))} B`,
            `${footprint.reservationRecordBytes.toFixed(0)} B per request`,
          ],
          [
            `sliding-log ZSET baseline: ${footprint.slidingLogMembers} members (one per request: the shipped pro tier's 60 requests a minute), score = ms, member = a request id (encoding ${footprint.slidingLogEncoding})`,
            int(footprint.principals),
            `${int(footprint.slidingLogBytes)} B`,
            `**${int(footprint.slidingLogPerPrincipalLimit)} B** (${(footprint.slidingLogPerPrincipalLimit / footprint.slidingLogMembers).toFixed(1)} B a member)`,
          ],
        ],
      ),
      `A sliding log grows with the rate it admits (a tokens/min limit would need one member per request too, holding its token count); quotad's sliding-window counters stay the same size at any rate. The reservation records are the part of quotad's footprint that does grow with traffic: requests a second × (lease + idempotency window) × ${footprint.reservationRecordBytes.toFixed(0)} B — with the shipped 10 min + 1 h, 1,000 requests/s hold about ${int((1000 * 4200 * footprint.reservationRecordBytes) / 2 ** 20)} MiB.`,
    );
  }
}

/** The section on the batched path. */
function renderBatch(r: ReportContext): void {
  const { transport, batch, batchShape, p } = r;
  p('## Batched path (CheckQuotaBatch / RecordUsageBatch)');
  if (!batch) p('Not run (`--only` left it out).');
  else if (batch.skipped)
    p(
      `**Skipped:** ${batch.skipped}. The scenario runs as soon as the proto and the authority have the RPCs (${batchShape} checks, then the matching RecordUsageBatch), and the transport ceiling then gets a batched no-op variant too.`,
    );
  else if (batch.batch) {
    p(
      `8 batches in flight, each a CheckQuotaBatch of 64 checks then the RecordUsageBatch of the same 64: ${int(batch.batch.operationsPerSecond)} batch pairs/s, **${int(batch.batch.decisionsPerSecond)} decisions/s**, against ${int(transport?.closed?.decisionsPerSecond)} unary calls/s at the transport ceiling (${ratio(batch.batch.decisionsPerSecond, transport?.closed?.decisionsPerSecond)}). p50 ${ms(batch.batch.p50Ms)} and p99 ${ms(batch.batch.p99Ms)} per batch pair.` +
        (transport?.batch
          ? ` The no-op server's batched variant: ${int(transport.batch.decisionsPerSecond)} decisions/s.`
          : ''),
    );
  }
}

/** The section on the CPU profile of the authority. */
function renderProfile(r: ReportContext): void {
  const { profile, settings, p } = r;
  if (profile) {
    p(
      '## CPU profile of the authority (Redis store)',
      `\`quotad serve\` on the Redis store, with the V8 sampling profiler (1 ms interval) started and stopped through node:inspector around the measured period of a closed loop as above (bench/cpu-profiler.ts, preloaded with \`NODE_OPTIONS=--import=...\`, since Node refuses \`--cpu-prof\` in NODE_OPTIONS): ${int(profile.operationsPerSecond)} operations/s under the profiler, ${settings.seconds} s. Self time as a share of the samples in which the process was not idle; it was idle ${profile.idlePercent.toFixed(1)} % of the ${(profile.totalMs / 1000).toFixed(1)} s (waiting on sockets: a process that is idle that often is not what limits the throughput).`,
      '### By where the code lives',
      table(
        ['where', 'self %', 'self ms'],
        profile.byPlace.map((e) => [e.name, e.selfPercent.toFixed(1), int(e.selfMs)]),
      ),
      '### Top functions by self time',
      table(
        ['function', 'location', 'self %', 'self ms'],
        profile.top.map((e) => [`\`${e.name}\``, e.where, e.selfPercent.toFixed(1), int(e.selfMs)]),
      ),
    );
  }
}

/** The section on the burst at default settings. */
function renderBurstSection(r: ReportContext): void {
  const { results, p } = r;
  if (results.burst) p(...renderBurst(results.burst, table));
}

/** The section on Envoy's ShouldRateLimit beside CheckQuota. */
function renderEnvoySection(r: ReportContext): void {
  const { results, p } = r;
  if (results.envoy) p(...renderEnvoy(results.envoy, table));
}

/** The section on what a signed request costs. */
function renderSigningSection(r: ReportContext): void {
  const { results, p } = r;
  if (results.signing) p(...renderSigning(results.signing, table));
}

/** The section on the setup and command lines. */
function renderSetup(r: ReportContext): void {
  const { results, machine, settings, p } = r;
  p(
    '## Setup',
    table(
      ['', ''],
      [
        ['CPU', `${machine.cpu} (\`nproc\` ${machine.nproc})`],
        ['memory', String(machine.memory)],
        ['OS', String(machine.os)],
        ['load average (1, 5, 15 min)', `before ${machine.loadBefore}; after ${machine.loadAfter}`],
        ['Node', String(machine.node)],
        ['Redis', String(machine.redis)],
        ['@grpc/grpc-js / @grpc/proto-loader', `${machine.grpcJs} / ${machine.protoLoader}`],
        ['ioredis', String(machine.ioredis)],
        ['rate-limiter-flexible', String(machine.rateLimiterFlexible)],
        ['autocannon', String(machine.autocannon)],
        ['date', `${results.startedAt} → ${results.finishedAt}`],
        ['commit', `${machine.commit} (${machine.branch})`],
        ['scenarios', String(settings.scenarios)],
        ['load generators', `${settings.loadgens} process(es), one gRPC channel each`],
        ['principals', `${int(Number(settings.principals))} subjects in 97 orgs, tier \`bench\``],
        ['batched RPCs in the loaded proto', results.protoHasBatch ? 'yes' : 'no'],
      ],
    ),
    `- **Policy.** config/policy.yaml (its models, 10 min lease, 1 h idempotency window) plus a \`bench\` tier of exactly three limits per decision: requests/min (100,000, sliding 1 min window), tokens/min (100,000,000) and USD/day ($1,000,000, calendar day, UTC). Nothing is refused at these rates (denials would be counted in the errors column). Written to a temp dir and given as QUOTAD_POLICY.`,
    `- **Operation.** CheckQuota for gpt-4o-mini, 200 prompt tokens, 300 output tokens reserved (500 tokens, 210 micro-dollars), then RecordUsage COMPLETED with 200 + 120 tokens. Operation n uses subject \`bench-(n mod ${settings.principals})\` in org \`org-(subject mod 97)\` and a unique request id.`,
    `- **Load generator.** bench/loadgen.ts in its own process(es), forked by bench/run.ts and driven over IPC; one @grpc/grpc-js channel to the server, the QuotaService client the tests use. Closed loop: ${settings.concurrency} operations in flight. Open loop: operations sent on a fixed schedule (timers, each wake-up sends every operation whose time has come), latency measured from the intended time into a log-linear histogram (1.6 % buckets, merged exactly across processes).`,
    `- **Servers.** Each scenario's server is its own process: \`quotad serve\` from dist (LOG_LEVEL=info, which logs nothing per decision; QUOTAD_REDIS_TIMEOUT=1s so that queueing in a saturated closed loop is not turned into store failures), the no-op server (bench/noop-server.ts) or the rate-limiter-flexible server (bench/rlf-server.ts), all three loading quota.proto through src/api/proto.ts with the authority's loader options and answering the same messages. One private \`redis-server\` (harness/redis-server.ts, no persistence) for the whole run, flushed between scenarios.`,
    `- **rate-limiter-flexible.** RateLimiterUnion consumes the same points on every limiter, so it cannot charge 1 request, 500 tokens and 210 micro-dollars at once; the server consumes three RateLimiterRedis limiters together (Promise.all: three EVALSHA per CheckQuota, on the same client options as quotad's, each command its own write: with ioredis auto-pipelining it was slower) and settles with \`reward\`/\`penalty\` of actual minus estimate on tokens and dollars (two EVALSHA per RecordUsage). What that gives up against quotad: all-or-nothing (a request refused by one limiter stays charged on the others), a reservation in Redis (the estimate is kept in the server's memory by request id: another replica could not settle it), idempotency, sliding windows and calendar days (its windows are fixed and start at a key's first request).`,
    '### Command lines',
    ['```sh', ...Object.entries(results.commandLines).map(([k, v]) => `# ${k}\n${v}`), '```'].join('\n'),
  );
}

export async function renderReport(
  results: Results,
  files: { chartFile: string; outFile: string },
): Promise<string> {
  const by = (id: string) => results.grpc.find((s) => s.id === id && !s.skipped);
  const transport = by('transport');
  const redis = by('redis');
  const memory = by('memory');
  const rlf = by('rlf');
  const batch = results.grpc.find((s) => s.id === 'batch');
  const { storage, gateway, footprint, profile, machine, settings } = results;
  const batchShape = `${settings.batchInflight ?? 8} in flight × ${settings.batchSize ?? 64}`;
  const chart = relative(dirname(files.outFile), files.chartFile) || basename(files.chartFile);
  const out: string[] = [];
  const p = (...blocks: string[]) => {
    for (const block of blocks) if (block !== '') out.push(block, '');
  };

  p(
    '# Benchmark results',
    `Written by \`make bench\` (\`${results.commandLines.run}\`) on ${results.startedAt.slice(0, 16).replace('T', ' ')} UTC at commit ${machine.commit} (branch ${machine.branch}); the whole run took ${Math.floor(results.durationSeconds / 60)} min ${results.durationSeconds % 60} s. How to run it and what each scenario does: [README.md](README.md). Raw figures: [results/latest.json](results/latest.json).`,
    `**Read these figures as one machine's, in one run.** This machine has ${machine.nproc} vCPUs (${machine.cpu}), and the load generator, the server under test and Redis share them: every gRPC figure below is the whole system's on two cores, where the load generator's own gRPC client costs about as much CPU as the server (see "Closed loop and where the time goes"). Load average before the run: ${machine.loadBefore}; after: ${machine.loadAfter}.`,
  );

  // The hand-written summary across runs, kept as it is.
  p(readFileSync(join(REPO_ROOT, 'bench/summary.md'), 'utf8').trim());

  const ctx: ReportContext = {
    results,
    files,
    by,
    transport,
    redis,
    memory,
    rlf,
    batch,
    storage,
    gateway,
    gateways: gateway?.rounds ? compareGateways(gateway) : undefined,
    rounds: results.rounds ? compareRounds(results.rounds) : undefined,
    footprint,
    profile,
    machine,
    settings,
    batchShape,
    chart,
    p,
    out,
  };
  renderSideBySide(ctx);
  renderTargets(ctx);
  renderHowToReadIt(ctx);
  renderOpenLoop(ctx);
  renderClosedLoop(ctx);
  renderRounds(ctx);
  renderStorage(ctx);
  renderGateway(ctx);
  renderFootprint(ctx);
  renderBatch(ctx);
  renderProfile(ctx);
  renderBurstSection(ctx);
  renderEnvoySection(ctx);
  renderSigningSection(ctx);
  renderSetup(ctx);

  const text = out.join('\n');
  const config = (await prettier.resolveConfig(files.outFile)) ?? {};
  return prettier.format(text, { ...config, filepath: files.outFile });
}
