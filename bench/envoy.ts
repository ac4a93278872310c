/**
 * The `envoy` scenario of `make bench`: Envoy's ShouldRateLimit with one and three descriptors beside
 * CheckQuota on the same server, and the transport ceilings of both (no-op servers answering at once),
 * each a closed loop from bench/envoy-load.ts in its own process. `--only envoy` rewrites only this section
 * of RESULTS.md and keeps the other scenarios' figures of the last run.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { AuthorityProcess } from '../harness/authority-process.js';
import type { TestRedisServer } from '../harness/redis-server.js';
import { benchScript, startNodeServer } from './processes.js';

export interface EnvoyPoint {
  server: string;
  call: string;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  over: number;
  errors: Record<string, number>;
}

export interface EnvoyResult {
  ranAt: string;
  commit: string;
  concurrency: number;
  seconds: number;
  principals: number;
  /** 1-minute load average before and after: the machine is shared, so rows of one run compare best. */
  loadBefore: string;
  loadAfter: string;
  points: EnvoyPoint[];
  commandLines: string[];
}

export interface EnvoyContext {
  redis: TestRedisServer;
  dir: string;
  policyPath: string;
  commit: string;
  concurrency: number;
  seconds: number;
  warmupSeconds: number;
  principals: number;
  log: (message: string) => void;
}

/** The bench domain: limits no load here reaches, so every call is decided and charged. */
const ENVOY_CONFIG = `domain: bench
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 1000000000 }
  - key: route
    rate_limit: { unit: minute, requests_per_unit: 4000000000 }
  - key: tokens
    rate_limit: { unit: minute, requests_per_unit: 4000000000 }
`;

const CALLS = {
  check: 'CheckQuota',
  rls1: 'ShouldRateLimit, 1 descriptor',
  rls3: 'ShouldRateLimit, 3 descriptors',
};

async function load(ctx: EnvoyContext, address: string, op: keyof typeof CALLS) {
  const args = [
    benchScript('envoy-load'),
    address,
    op,
    String(ctx.concurrency),
    String(ctx.seconds),
    String(ctx.warmupSeconds),
    String(ctx.principals),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`envoy-load ${op} exited with ${code}`);
  return JSON.parse(out) as Omit<EnvoyPoint, 'server' | 'call'>;
}

export async function envoyScenario(ctx: EnvoyContext): Promise<EnvoyResult> {
  const loadBefore = os.loadavg()[0]?.toFixed(2) ?? '';
  const envoyDir = join(ctx.dir, 'envoy');
  await mkdir(envoyDir, { recursive: true });
  await writeFile(join(envoyDir, 'bench.yaml'), ENVOY_CONFIG);
  const points: EnvoyPoint[] = [];
  const measure = async (server: string, address: string, ops: (keyof typeof CALLS)[]) => {
    for (const op of ops) {
      const point = { server, call: CALLS[op], ...(await load(ctx, address, op)) };
      ctx.log(
        `envoy: ${server}, ${point.call}: ${Math.round(point.callsPerSecond)} calls/s, p50 ${point.p50Ms.toFixed(2)} ms, p99 ${point.p99Ms.toFixed(2)} ms`,
      );
      points.push(point);
    }
  };
  for (const [script, ops] of [
    ['noop-server', ['check']],
    ['noop-rls-server', ['rls1', 'rls3']],
  ] as const) {
    const server = await startNodeServer(script);
    try {
      await measure('transport ceiling (no-op server)', `127.0.0.1:${server.address}`, [...ops]);
    } finally {
      await server.stop();
    }
  }
  for (const store of ['redis', 'memory'] as const) {
    const client = ctx.redis.client();
    await client.flushall();
    client.disconnect();
    const env: Record<string, string> = {
      LOG_LEVEL: 'info',
      QUOTAD_POLICY: ctx.policyPath,
      QUOTAD_REDIS_TIMEOUT: '1s',
      QUOTAD_ENVOY_CONFIG: envoyDir,
    };
    if (store === 'redis') env.REDIS_URL = ctx.redis.url;
    const quotad = await (await AuthorityProcess.spawn(env)).ready();
    try {
      await measure(`quotad serve, ${store === 'redis' ? 'Redis' : 'memory'} store`, quotad.grpcAddress, [
        'check',
        'rls1',
        'rls3',
      ]);
    } finally {
      await quotad.stop();
    }
  }
  return {
    ranAt: new Date().toISOString(),
    commit: ctx.commit,
    concurrency: ctx.concurrency,
    seconds: ctx.seconds,
    principals: ctx.principals,
    loadBefore,
    loadAfter: os.loadavg()[0]?.toFixed(2) ?? '',
    points,
    commandLines: [
      'node dist/bench/noop-server.js; node dist/bench/noop-rls-server.js',
      '[REDIS_URL=redis://127.0.0.1:<port>] QUOTAD_POLICY=<tmp>/policy.yaml QUOTAD_ENVOY_CONFIG=<tmp>/envoy QUOTAD_REDIS_TIMEOUT=1s QUOTAD_GRPC_ADDR=127.0.0.1:<free port> node dist/src/main/cli.js serve',
      `node dist/bench/envoy-load.js <server> <check|rls1|rls3> ${ctx.concurrency} ${ctx.seconds} ${ctx.warmupSeconds} ${ctx.principals}`,
    ],
  };
}

/** The scenario's section of RESULTS.md. */
export function renderEnvoy(
  result: EnvoyResult,
  table: (h: string[], r: (string | number)[][]) => string,
): string[] {
  const ceiling = (call: string) =>
    result.points.find((p) => p.server.startsWith('transport') && p.call === call)?.callsPerSecond;
  const rows = result.points.map((p) => {
    const top = ceiling(p.call);
    return [
      p.server,
      p.call,
      Math.round(p.callsPerSecond).toLocaleString('en-US'),
      top && !p.server.startsWith('transport') ? `${Math.round((100 * p.callsPerSecond) / top)} %` : '—',
      `${p.p50Ms.toFixed(2)} ms`,
      `${p.p99Ms.toFixed(2)} ms`,
      [...Object.entries(p.errors).map(([k, v]) => `${k} ${v}`), ...(p.over ? [`over ${p.over}`] : [])].join(
        ', ',
      ) || '0',
    ];
  });
  return [
    "## Envoy's ShouldRateLimit beside CheckQuota",
    `Measured with \`node dist/bench/run.js --only envoy\` (part of \`make bench\`; alone it rewrites only this section) on ${result.ranAt.slice(0, 16).replace('T', ' ')} UTC at commit ${result.commit}. Each row is a closed loop of ${result.concurrency} calls in flight for ${result.seconds} s (after a warm-up) from bench/envoy-load.ts in its own process, one channel; the server is its own process. CheckQuota is the bench tier's three limits (requests, tokens, dollars); ShouldRateLimit asks the \`bench\` domain with one descriptor (\`user\`) or three (\`user\`, \`route\`, \`tokens\` with \`hits_addend\` 500), one sliding-window counter each, for ${result.principals.toLocaleString('en-US')} users. Nothing is refused (over would be counted in the last column). The share is of the transport ceiling of the same call: a no-op grpc-js server answering a fixed response at once (bench/noop-server.ts, bench/noop-rls-server.ts). The machine is shared (1-minute load average ${result.loadBefore} before, ${result.loadAfter} after): compare rows of one run, and read a share over 100 % as noise between rows measured a minute apart.`,
    table(['server', 'call', 'calls/s', 'of the ceiling', 'p50', 'p99', 'errors'], rows),
    ['```sh', ...result.commandLines, '```'].join('\n'),
  ];
}
