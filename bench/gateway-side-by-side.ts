/**
 * The `gateway` scenario of `make bench`: quotad's gateway side by side with Portkey's open-source gateway
 * (npm @portkey-ai/gateway, a dev dependency), the gateway a user would pick instead, and with calling the
 * upstream directly, all against one demo upstream (bench/upstream-server.ts) in its own process.
 *
 * Every process is started once and stays up: the upstream, two authorities (in-process store and Redis),
 * a quotad gateway in front of each, and Portkey. Then, round after round, each target is loaded in turn
 * by autocannon in a process of its own (bench/http-load.ts), at 1 connection (a lone caller: the added
 * latency) and at 32 (throughput). Alternating rounds spread the machine's drift over every target alike;
 * the report gives each round's ratios and their median.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { AuthorityProcess } from '../harness/authority-process.js';
import { eventually } from '../harness/eventually.js';
import { GatewayProcess } from '../harness/gateway-process.js';
import { adminClient } from '../harness/grpc-clients.js';
import { freePort, type TestRedisServer } from '../harness/redis-server.js';
import { BENCH_TIER, processCpuSeconds } from './common.js';
import { Histogram } from './histogram.js';
import { benchScript, startNodeServer, stopChild } from './processes.js';
import { GATEWAY_TARGETS } from './comparisons.js';
import type { CpuShare, GatewayResult, GatewayRun, GatewayTarget } from './result-types.js';

export const GATEWAY_BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello to the benchmark' }],
  max_tokens: 16,
});

export interface GatewayScenarioOptions {
  redis: TestRedisServer;
  redisPid: number;
  policyPath: string;
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  connections: number[];
  log: (message: string) => void;
}

interface Target {
  url: string;
  headers: Record<string, string>;
  /** The processes whose CPU this target's requests cost, besides autocannon's. */
  watch: Record<string, number>;
  /** A quotad gateway's /metrics, for where its requests' time went. */
  metricsUrl?: string;
}

/**
 * The stages of a model call in a quotad gateway, each a histogram (and label filter) on its /metrics; the
 * mean per stage over a run is the growth of its sum over the growth of its count.
 */
const STAGE_SERIES: Record<string, { name: string; labels: string }> = {
  intake: { name: 'quotad_gateway_stage_duration_seconds', labels: 'stage="intake"' },
  estimate: { name: 'quotad_gateway_stage_duration_seconds', labels: 'stage="estimate"' },
  decide: { name: 'quotad_gateway_decision_duration_seconds', labels: '' },
  upstream: { name: 'quotad_gateway_upstream_duration_seconds', labels: 'route="chat_completions"' },
  relay: { name: 'quotad_gateway_stage_duration_seconds', labels: 'stage="relay"' },
  total: { name: 'quotad_gateway_request_duration_seconds', labels: 'route="chat_completions"' },
};

type StageTotals = Record<string, { sum: number; count: number }>;

/** Each stage's histogram sum and count, summed over the label sets that match its filter. */
async function stageTotals(metricsUrl: string): Promise<StageTotals> {
  const lines = (await (await fetch(metricsUrl)).text()).split('\n');
  const totals: StageTotals = {};
  for (const [stage, { name, labels }] of Object.entries(STAGE_SERIES)) {
    const total = { sum: 0, count: 0 };
    for (const line of lines) {
      const part = line.startsWith(`${name}_sum`)
        ? 'sum'
        : line.startsWith(`${name}_count`)
          ? 'count'
          : undefined;
      if (!part || !line.includes(labels)) continue;
      total[part] += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    totals[stage] = total;
  }
  return totals;
}

/** Mean milliseconds per stage between two readings. */
function stageMeans(before: StageTotals, after: StageTotals): Record<string, number> {
  const means: Record<string, number> = {};
  for (const stage of Object.keys(STAGE_SERIES)) {
    const count = (after[stage]?.count ?? 0) - (before[stage]?.count ?? 0);
    const sum = (after[stage]?.sum ?? 0) - (before[stage]?.sum ?? 0);
    means[stage] = count > 0 ? (1000 * sum) / count : NaN;
  }
  return means;
}

const require = createRequire(import.meta.url);

/** Portkey's server script, as its package's `bin` names it. */
export function portkeyScript(): { path: string; version: string } {
  const manifest = require.resolve('@portkey-ai/gateway/package.json');
  const pkg = require(manifest) as { version: string; bin: string | Record<string, string> };
  const bin = typeof pkg.bin === 'string' ? pkg.bin : (Object.values(pkg.bin)[0] as string);
  return { path: join(dirname(manifest), bin), version: pkg.version };
}

/** Starts Portkey's gateway on a free port and waits until it answers `GET /`. */
async function startPortkey(): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const { path } = portkeyScript();
  const child = spawn(process.execPath, [path, `--port=${port}`, '--headless'], {
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`Portkey exited with ${code}: ${stderr}`))),
  );
  const started = Date.now();
  for (;;) {
    const up = await Promise.race([
      fetch(url).then(
        (r) => r.status === 200,
        () => false,
      ),
      exited,
    ]);
    if (up) break;
    if (Date.now() - started > 30_000) throw new Error(`Portkey never answered on ${url}: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url, pid: child.pid as number, stop: () => stopChild(child) };
}

async function runHttpLoad(options: object): Promise<string> {
  const child = spawn(process.execPath, [benchScript('http-load'), JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`http-load exited with ${code}`);
  return stdout;
}

async function cpuOf(watch: Record<string, number>): Promise<Record<string, number>> {
  const entries = await Promise.all(
    Object.entries(watch).map(async ([name, pid]) => [name, await processCpuSeconds(pid)] as const),
  );
  return Object.fromEntries(entries);
}

/** Until /readyz says an authority is connected (the gateway logs nothing at warn to wait for). */
async function readyGateway(gateway: GatewayProcess): Promise<void> {
  await eventually(
    () =>
      fetch(`${gateway.url}/readyz`).then(
        (r) => (r.status === 200 ? true : undefined),
        () => undefined,
      ),
    () => `the gateway never became ready: ${gateway.stderr}`,
    { intervalMs: 50 },
  );
}

export async function gatewayScenario(o: GatewayScenarioOptions): Promise<GatewayResult> {
  const client = o.redis.client();
  await client.flushall();
  client.disconnect();
  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startNodeServer('upstream-server');
    stops.push(upstream.stop);
    const adminToken = randomBytes(24).toString('hex');
    const authorityEnv = {
      LOG_LEVEL: 'info', // logs nothing per decision; says when it serves, which ready() waits for
      QUOTAD_POLICY: o.policyPath,
      QUOTAD_ADMIN_TOKEN: adminToken,
    };
    const gatewayEnv = { OPENAI_BASE_URL: upstream.address, LOG_LEVEL: 'warn' };
    const targets: Partial<Record<GatewayTarget, Target>> = {
      direct: {
        url: `${upstream.address}/chat/completions`,
        headers: { 'content-type': 'application/json' },
        watch: { upstream: upstream.pid },
      },
    };
    for (const store of ['memory', 'redis'] as const) {
      const authority = await (
        await AuthorityProcess.spawn(
          store === 'redis' ? { ...authorityEnv, REDIS_URL: o.redis.url } : authorityEnv,
        )
      ).ready();
      stops.push(() => authority.stop());
      const admin = adminClient(authority.grpcAddress, adminToken);
      const { secret } = await admin.createKey({
        name: 'bench',
        owner: 'bench',
        org: 'bench',
        tier: BENCH_TIER,
      });
      admin.close();
      const gateway = await GatewayProcess.spawn({ ...gatewayEnv, QUOTAD_AUTHORITY: authority.grpcAddress });
      stops.push(() => gateway.stop());
      await readyGateway(gateway);
      targets[`quotad-${store}`] = {
        url: `${gateway.url}/v1/chat/completions`,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        watch: {
          gateway: gateway.child.pid as number,
          authority: authority.child.pid as number,
          ...(store === 'redis' ? { redis: o.redisPid } : {}),
          upstream: upstream.pid,
        },
        metricsUrl: `${gateway.url}/metrics`,
      };
    }
    const portkey = await startPortkey();
    stops.push(portkey.stop);
    targets.portkey = {
      url: `${portkey.url}/v1/chat/completions`,
      headers: {
        'content-type': 'application/json',
        authorization: 'Bearer sk-bench',
        'x-portkey-provider': 'openai',
        'x-portkey-custom-host': upstream.address,
      },
      watch: { gateway: portkey.pid, upstream: upstream.pid },
    };

    for (const [name, target] of Object.entries(targets)) {
      const response = await fetch(target.url, {
        method: 'POST',
        headers: target.headers,
        body: GATEWAY_BODY,
      });
      const text = await response.text();
      if (response.status !== 200)
        throw new Error(`${name}: the sanity request got ${response.status}: ${text}`);
    }

    const runs: GatewayRun[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      for (const connections of o.connections) {
        for (const name of GATEWAY_TARGETS) {
          const target = targets[name] as Target;
          const options = {
            url: target.url,
            headers: target.headers,
            body: GATEWAY_BODY,
            connections,
            warmupSeconds: o.warmupSeconds,
            seconds: o.seconds,
          };
          // CPU is read around the whole autocannon process, warm-up included, and divided by every
          // request it sent: the warm-up's requests cost CPU too.
          const stagesBefore = target.metricsUrl ? await stageTotals(target.metricsUrl) : undefined;
          const before = await cpuOf(target.watch);
          const out = JSON.parse(await runHttpLoad(options)) as {
            requests: number;
            warmupRequests?: number;
            seconds: number;
            non2xx: number;
            errors: number;
            timeouts: number;
            latency: ReturnType<Histogram['toJSON']>;
            cpuSeconds: number;
          };
          const after = await cpuOf(target.watch);
          const stagesMs =
            target.metricsUrl && stagesBefore
              ? stageMeans(stagesBefore, await stageTotals(target.metricsUrl))
              : undefined;
          const latency = new Histogram().merge(out.latency);
          const allRequests = out.requests + (out.warmupRequests ?? 0);
          const cpuMsPerRequest: CpuShare = { autocannon: (1000 * out.cpuSeconds) / out.requests };
          for (const k of Object.keys(target.watch))
            cpuMsPerRequest[k] = (1000 * ((after[k] ?? NaN) - (before[k] ?? NaN))) / allRequests;
          const run: GatewayRun = {
            round,
            target: name,
            connections,
            requests: out.requests,
            requestsPerSecond: out.requests / o.seconds,
            p50Ms: latency.quantileMs(0.5),
            p99Ms: latency.quantileMs(0.99),
            meanMs: latency.meanMs(),
            non2xx: out.non2xx,
            errors: out.errors + out.timeouts,
            cpuMsPerRequest,
            ...(stagesMs ? { stagesMs } : {}),
          };
          if (run.non2xx > 0 || run.errors > 0)
            throw new Error(`${name} ×${connections}: ${run.non2xx} non-2xx answers, ${run.errors} errors`);
          runs.push(run);
          o.log(
            `gateway round ${round}: ${name} ×${connections}: ${Math.round(run.requestsPerSecond)} req/s, p50 ${run.p50Ms.toFixed(3)} ms, p99 ${run.p99Ms.toFixed(3)} ms; CPU ms/request ${Object.entries(
              cpuMsPerRequest,
            )
              .map(([k, v]) => `${k} ${v.toFixed(3)}`)
              .join(', ')}`,
          );
        }
      }
    }
    const { version } = portkeyScript();
    return {
      runs,
      rounds: o.rounds,
      seconds: o.seconds,
      warmupSeconds: o.warmupSeconds,
      portkeyVersion: version,
      commandLines: [
        `LOG_LEVEL=info QUOTAD_POLICY=<tmp>/policy.yaml QUOTAD_ADMIN_TOKEN=<random> [REDIS_URL=redis://127.0.0.1:<port>] QUOTAD_GRPC_ADDR=127.0.0.1:<free port> node dist/src/main/cli.js serve   (one on each store)`,
        `QUOTAD_AUTHORITY=<authority> OPENAI_BASE_URL=<upstream>/v1 LOG_LEVEL=warn QUOTAD_GATEWAY_ADDR=127.0.0.1:<free port> node dist/src/main/cli.js gateway   (one per authority; every other setting at its default)`,
        `NODE_ENV=production node node_modules/@portkey-ai/gateway/build/start-server.js --port=<free port> --headless   (Portkey ${version}; requests carry x-portkey-provider: openai and x-portkey-custom-host: <upstream>/v1)`,
        upstream.commandLine,
        `node dist/bench/http-load.js '<json options>' (autocannon in its own process; ${o.warmupSeconds} s warm-up, ${o.seconds} s measured)`,
      ],
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}
