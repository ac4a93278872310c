/**
 * The `burst` scenario of `make bench` (issue #12): what quotad does with a burst at its default settings,
 * and with a stalled Redis.
 *
 * - burst: 200 requests at once (`--burst`) through `quotad gateway` to `quotad serve`, each its own process
 *   with no setting changed, the shipped config/policy.yaml, the demo upstream in a process of its own,
 *   on Redis and on the in-process store. Each round uses fresh keys of the `pro` tier (10 in flight and
 *   60 a minute per key), so the burst meets admissions and refusals by a limit. Every answer is counted
 *   by status and code: admitted (200), refused by a limit (429), or not decided (503, anything else).
 * - stall: Redis stopped with SIGSTOP under an authority at default settings; rounds of 10 concurrent
 *   checks of an `open` key with the gateway's default deadline, each round's slowest and fastest answer.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parseDuration } from '../src/core/duration.js';
import { GATEWAY_SETTINGS } from '../src/main/gateway-config.js';
import { AuthorityProcess } from '../harness/authority-process.js';
import { GatewayProcess, postChat } from '../harness/gateway-process.js';
import { adminClient, quotaClient } from '../harness/grpc-clients.js';
import type { TestRedisServer } from '../harness/redis-server.js';
import { Histogram } from './histogram.js';
import { startNodeServer } from './processes.js';

export interface BurstRound {
  requests: number;
  /** Answers by `status code` (e.g. `429 rate_limit_exceeded`; `200` for admitted). */
  answers: Record<string, number>;
  admitted: number;
  refusedByLimit: number;
  /** 503 of any code: not decided. */
  unavailable: number;
  other: number;
  /** From sending each request to its whole answer, as the client saw it. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** From the first request sent to the last answer. */
  wallMs: number;
}

export interface StallRound {
  /** Since Redis was stopped, when the round started. */
  atMs: number;
  minMs: number;
  maxMs: number;
  outcomes: Record<string, number>;
}

export interface BurstResult {
  ranAt: string;
  commit: string;
  burst: number;
  keysPerRound: number;
  deadlineMs: number;
  runs: { store: 'redis' | 'memory'; rounds: BurstRound[] }[];
  stall: { rounds: StallRound[]; afterResume: Record<string, number> };
  commandLines: string[];
}

export interface BurstContext {
  redis: TestRedisServer;
  dir: string;
  commit: string;
  burst: number;
  rounds: number;
  log(message: string): void;
}

const KEYS_PER_ROUND = 10;
const GATEWAY_DEADLINE_MS = parseDuration(GATEWAY_SETTINGS.authorityTimeout.default) as number;

async function spawnAuthority(env: Record<string, string>): Promise<AuthorityProcess> {
  return (await AuthorityProcess.spawn({ LOG_LEVEL: 'info', ...env })).ready();
}

async function burstRound(
  gatewayUrl: string,
  secrets: string[],
  burst: number,
  tag: string,
): Promise<BurstRound> {
  const latency = new Histogram();
  const answers: Record<string, number> = {};
  const started = performance.now();
  await Promise.all(
    Array.from({ length: burst }, async (_, i) => {
      const sent = performance.now();
      const response = await postChat(gatewayUrl, secrets[i % secrets.length] as string, `${tag}-${i}`);
      const body = (await response.json()) as { error?: { code?: string } };
      latency.recordMs(performance.now() - sent);
      const answer = `${response.status} ${body.error?.code ?? ''}`.trim();
      answers[answer] = (answers[answer] ?? 0) + 1;
    }),
  );
  const count = (match: (status: number) => boolean) =>
    Object.entries(answers).reduce((sum, [k, v]) => (match(Number(k.split(' ')[0])) ? sum + v : sum), 0);
  return {
    requests: burst,
    answers,
    admitted: count((s) => s === 200),
    refusedByLimit: count((s) => s === 429),
    unavailable: count((s) => s === 503),
    other: count((s) => s !== 200 && s !== 429 && s !== 503),
    p50Ms: latency.quantileMs(0.5),
    p99Ms: latency.quantileMs(0.99),
    maxMs: latency.maxMs(),
    wallMs: performance.now() - started,
  };
}

async function burstRun(ctx: BurstContext, store: 'redis' | 'memory') {
  const token = randomBytes(24).toString('hex');
  const env: Record<string, string> = { QUOTAD_ADMIN_TOKEN: token };
  if (store === 'redis') env.REDIS_URL = ctx.redis.url;
  const authority = await spawnAuthority(env);
  const upstream = await startNodeServer('upstream-server');
  const gateway = await GatewayProcess.spawn({
    QUOTAD_AUTHORITY: authority.grpcAddress,
    OPENAI_BASE_URL: upstream.address,
    LOG_LEVEL: 'info',
  });
  const admin = adminClient(authority.grpcAddress, token);
  try {
    await gateway.ready();
    const rounds: BurstRound[] = [];
    for (let round = 0; round < ctx.rounds; round++) {
      const secrets: string[] = [];
      for (let i = 0; i < KEYS_PER_ROUND; i++) {
        const org = `burst-${round}-${i % 3}`;
        secrets.push(
          (await admin.createKey({ name: `burst ${i}`, owner: 'bench', org, tier: 'pro' })).secret,
        );
      }
      // One request first, as traffic before a burst would have: the processes connect to each other.
      const first = await postChat(gateway.url, secrets[0] as string, `first-${store}-${round}`);
      if (first.status !== 200) throw new Error(`burst: the first request got ${first.status}`);
      const result = await burstRound(gateway.url, secrets, ctx.burst, `burst-${store}-${round}`);
      rounds.push(result);
      ctx.log(
        `burst: ${store} round ${round + 1}: ${JSON.stringify(result.answers)}, max ${Math.round(result.maxMs)} ms, all in ${Math.round(result.wallMs)} ms`,
      );
    }
    return { store, rounds };
  } finally {
    admin.close();
    await gateway.stop();
    await upstream.stop();
    await authority.stop();
  }
}

const STALL_POLICY = `version: 1
timezone: UTC
reservation: { lease: 10m, idempotency_window: 1h }
replicas: 1
models:
  gpt-4o-mini: { input_per_million: '0.15', output_per_million: '0.60' }
tiers:
  open:
    max_output_tokens: 100
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 1000000, window: 1m, on_store_failure: open }
`;

async function stallRun(ctx: BurstContext): Promise<BurstResult['stall']> {
  const policy = join(ctx.dir, 'stall-policy.yaml');
  await writeFile(policy, STALL_POLICY);
  const token = randomBytes(24).toString('hex');
  const authority = await spawnAuthority({
    REDIS_URL: ctx.redis.url,
    QUOTAD_POLICY: policy,
    QUOTAD_ADMIN_TOKEN: token,
  });
  const admin = adminClient(authority.grpcAddress, token);
  const client = quotaClient(authority.grpcAddress);
  try {
    const { secret } = await admin.createKey({ name: 'stall', owner: 'bench', org: 'stall', tier: 'open' });
    const apiKeySha256 = createHash('sha256').update(secret).digest();
    let n = 0;
    const check = async () => {
      const sent = performance.now();
      n += 1;
      const request = { requestId: `stall-${n}`, apiKeySha256, model: 'gpt-4o-mini', inputTokens: 10 };
      const outcome = await client.checkQuota(request, GATEWAY_DEADLINE_MS).then(
        (r) => `${r.code}${r.degraded ? ' (degraded)' : ''}`,
        (e: grpc.ServiceError) => grpc.status[e.code] ?? 'error',
      );
      return { ms: performance.now() - sent, outcome };
    };
    const round = async (at: number): Promise<StallRound> => {
      const answers = await Promise.all(Array.from({ length: 10 }, check));
      const outcomes: Record<string, number> = {};
      for (const { outcome } of answers) outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      const ms = answers.map((a) => a.ms);
      return { atMs: at, minMs: Math.min(...ms), maxMs: Math.max(...ms), outcomes };
    };
    await round(0);
    // Long enough that the cached key must be looked up again (--key-cache-ttl 1s, unconfirmed) in vain.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await round(0);
    const rounds: StallRound[] = [];
    ctx.redis.pause();
    const stopped = performance.now();
    try {
      while (performance.now() - stopped < 5_000) rounds.push(await round(performance.now() - stopped));
    } finally {
      await ctx.redis.resume();
    }
    const afterResume = (await round(0)).outcomes;
    ctx.log(
      `stall: ${rounds.map((r) => `${Math.round(r.atMs)} ms: max ${Math.round(r.maxMs)}`).join('; ')}; after resume ${JSON.stringify(afterResume)}`,
    );
    return { rounds, afterResume };
  } finally {
    client.close();
    admin.close();
    await authority.stop();
  }
}

export async function burstScenario(ctx: BurstContext): Promise<BurstResult> {
  const runs = [];
  for (const store of ['redis', 'memory'] as const) {
    const redis = ctx.redis.client();
    await redis.flushall();
    redis.disconnect();
    runs.push(await burstRun(ctx, store));
  }
  const stall = await stallRun(ctx);
  return {
    ranAt: new Date().toISOString(),
    commit: ctx.commit,
    burst: ctx.burst,
    keysPerRound: KEYS_PER_ROUND,
    deadlineMs: GATEWAY_DEADLINE_MS,
    runs,
    stall,
    commandLines: [
      'QUOTAD_ADMIN_TOKEN=<random> [REDIS_URL=redis://127.0.0.1:<port>] QUOTAD_GRPC_ADDR=127.0.0.1:<free port> QUOTAD_METRICS_ADDR=127.0.0.1:<free port> node dist/src/main/cli.js serve',
      'node dist/bench/upstream-server.js',
      'QUOTAD_AUTHORITY=<authority> OPENAI_BASE_URL=<upstream>/v1 QUOTAD_GATEWAY_ADDR=127.0.0.1:<free port> node dist/src/main/cli.js gateway',
      `stall: REDIS_URL=<redis> QUOTAD_POLICY=<tmp>/stall-policy.yaml (one tier, requests_per_minute on_store_failure: open) node dist/src/main/cli.js serve; redis-server stopped with SIGSTOP for 5 s`,
    ],
  };
}

const ms = (x: number) => `${Math.round(x)} ms`;

/** The scenario's section of RESULTS.md. */
export function renderBurst(
  result: BurstResult,
  table: (h: string[], r: (string | number)[][]) => string,
): string[] {
  const rows = result.runs.flatMap((run) =>
    run.rounds.map((r, i) => [
      run.store === 'redis' ? 'Redis' : 'in-process',
      i + 1,
      r.requests,
      r.admitted,
      r.refusedByLimit,
      r.unavailable,
      r.other,
      Object.entries(r.answers)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', '),
      ms(r.p50Ms),
      ms(r.p99Ms),
      ms(r.maxMs),
      ms(r.wallMs),
    ]),
  );
  const outcomes = (counts: Record<string, number>) =>
    Object.entries(counts)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
  const shown = result.stall.rounds.slice(0, 3);
  const rest = result.stall.rounds.slice(3);
  const stallRows = shown.map((r) => [ms(r.atMs), ms(r.minMs), ms(r.maxMs), outcomes(r.outcomes)]);
  if (rest.length > 0) {
    const total: Record<string, number> = {};
    for (const r of rest) for (const [k, v] of Object.entries(r.outcomes)) total[k] = (total[k] ?? 0) + v;
    stallRows.push([
      `${ms(rest[0]?.atMs ?? 0)} to ${ms(rest.at(-1)?.atMs ?? 0)} (${rest.length} rounds)`,
      ms(Math.min(...rest.map((r) => r.minMs))),
      ms(Math.max(...rest.map((r) => r.maxMs))),
      outcomes(total),
    ]);
  }
  return [
    '## A burst at default settings, and a stalled store',
    `Measured on its own (\`node dist/bench/run.js --only burst\`, which rewrites only this section) on ${result.ranAt.slice(0, 16).replace('T', ' ')} UTC at commit ${result.commit}. ${result.burst} requests at once (\`postChat\`: gpt-4o-mini, one short message, \`max_tokens\` 16) from the benchmark's process through \`quotad gateway\` to \`quotad serve\`, each its own process with **no setting changed** (the gateway's \`--authority-timeout\` ${result.deadlineMs} ms, \`--authority-batch on\`; the authority's \`--redis-timeout\` and the shipped config/policy.yaml), and the demo upstream in its own process. Each round: ${result.keysPerRound} fresh keys of the \`pro\` tier (10 in flight and 60 a minute each) in 3 orgs, one request first, then the burst. Admitted is 200, refused by a limit 429, not decided 503.`,
    table(
      [
        'store',
        'round',
        'requests',
        'admitted',
        'refused by a limit',
        '503',
        'other',
        'answers',
        'p50',
        'p99',
        'slowest',
        'whole burst',
      ],
      rows,
    ),
    `**A stalled Redis.** \`quotad serve\` at default settings on Redis, with one tier whose limit is \`on_store_failure: open\`; the key resolved and cached, then left 1.5 s (past \`--key-cache-ttl\`) so that every check must look it up again; then Redis stopped with SIGSTOP for 5 s (connections open, nothing answered). Rounds of 10 concurrent CheckQuota of that key over gRPC from the benchmark's process, each with the gateway's default deadline (${result.deadlineMs} ms). The first round waits for Redis up to \`--redis-timeout\`; once Redis has said nothing for that long, checks wait for it 50 ms per command (the key lookup, then the reserve) before the failure policy decides. The next round after SIGCONT: ${outcomes(result.stall.afterResume)}.`,
    table(['round started after SIGSTOP', 'fastest', 'slowest', 'answers'], stallRows),
    ['```sh', ...result.commandLines, '```'].join('\n'),
  ];
}
