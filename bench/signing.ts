/**
 * The `signing` scenario of `make bench` (issue #17): what a signed request costs.
 *
 * - cpu: in this process, the authority's work per signed request (derive the signing secret, HMAC the
 *   signed text, compare in constant time) and the gateway's (SHA-256 of the body), per body size; and the
 *   client's (signRequest), for comparison.
 * - end to end: `quotad serve` on Redis with QUOTAD_SIGNING_KEY, and CheckQuota over gRPC in a closed loop
 *   (64 in flight) for a key with signing off and one with signing required, alternating rounds, so the
 *   difference is the verification plus the nonce's EXISTS and SET inside reserve.lua.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import os from 'node:os';
import { deriveSigningSecret, signRequest, verifySignature } from '../src/keys/signing.js';
import { sha256 } from '../src/keys/api-key.js';
import { AuthorityProcess } from '../harness/authority-process.js';
import { adminClient, quotaClient, type QuotaClient } from '../harness/grpc-clients.js';
import type { TestRedisServer } from '../harness/redis-server.js';
import { BENCH_TIER, CHECK } from './common.js';
import { Histogram } from './histogram.js';

export interface SigningCpuRow {
  bodyBytes: number;
  /** Microseconds per request, median of 5 runs. */
  verifyUs: number;
  bodyHashUs: number;
  clientSignUs: number;
}

export interface SigningLoopRow {
  signing: 'off' | 'required';
  operationsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  refused: number;
}

export interface SigningResult {
  ranAt: string;
  commit: string;
  seconds: number;
  inFlight: number;
  /** The machine's load average (1, 5, 15 min) before and after: other work on it skews every figure. */
  load: string;
  cpu: SigningCpuRow[];
  loop: SigningLoopRow[];
  commandLines: string[];
}

export interface SigningContext {
  redis: TestRedisServer;
  dir: string;
  policyPath: string;
  commit: string;
  seconds: number;
  log: (message: string) => void;
}

const IN_FLIGHT = 64;
const ROUNDS = 3;
const BODY_SIZES = [256, 4_096, 65_536, 1_048_576];

function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** Microseconds per call of `run`, the median of 5 timed batches of `count` after a warm-up batch. */
function microsPerCall(count: number, run: (i: number) => void): number {
  for (let i = 0; i < count; i++) run(i);
  const runs = [];
  for (let r = 0; r < 5; r++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < count; i++) run(i);
    runs.push(Number(process.hrtime.bigint() - started) / 1_000 / count);
  }
  return Math.round(median(runs) * 100) / 100;
}

function cpuRows(): SigningCpuRow[] {
  const master = randomBytes(32);
  const secretHash = sha256('qd_live_bench').toString('hex');
  return BODY_SIZES.map((bodyBytes) => {
    const body = 'x'.repeat(bodyBytes);
    const count = bodyBytes >= 65_536 ? 200 : 20_000;
    const timestamp = String(Math.floor(Date.now() / 1000));
    const request = {
      timestamp,
      nonce: 'abcdefghijklmnopqrstuv',
      method: 'POST',
      path: '/v1/chat/completions',
      body,
    };
    const signingSecret = deriveSigningSecret(master, 'key_bench', secretHash);
    const input = {
      ...request,
      signature: signRequest(signingSecret, request),
      bodySha256: createHash('sha256').update(body).digest(),
    };
    return {
      bodyBytes,
      verifyUs: microsPerCall(20_000, () => {
        const secret = deriveSigningSecret(master, 'key_bench', secretHash);
        if (!verifySignature(input, secret, Date.now(), 300_000).ok)
          throw new Error('bench signature refused');
      }),
      bodyHashUs: microsPerCall(count, () => createHash('sha256').update(body, 'utf8').digest()),
      clientSignUs: microsPerCall(count, () => signRequest(signingSecret, request)),
    };
  });
}

async function closedLoop(
  client: QuotaClient,
  key: { sha256: Buffer; signingSecret: string },
  seconds: number,
): Promise<Omit<SigningLoopRow, 'signing'>> {
  const histogram = new Histogram();
  const until = performance.now() + seconds * 1000;
  let done = 0;
  let refused = 0;
  const worker = async () => {
    while (performance.now() < until) {
      const started = performance.now();
      const signature = key.signingSecret
        ? (() => {
            const timestamp = String(Math.floor(Date.now() / 1000));
            const nonce = randomBytes(16).toString('base64url');
            const body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}';
            return {
              timestamp,
              nonce,
              signature: signRequest(key.signingSecret, {
                timestamp,
                nonce,
                method: 'POST',
                path: '/v1/chat/completions',
                body,
              }),
              method: 'POST',
              path: '/v1/chat/completions',
              bodySha256: createHash('sha256').update(body).digest(),
            };
          })()
        : undefined;
      const answer = await client.checkQuota(
        { requestId: randomUUID(), apiKeySha256: key.sha256, ...CHECK, ...(signature ? { signature } : {}) },
        10_000,
      );
      histogram.recordMs(performance.now() - started);
      done += 1;
      if (!answer.allowed) refused += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const elapsed = (performance.now() - started) / 1000;
  return {
    operationsPerSecond: Math.round(done / elapsed),
    p50Ms: Math.round(histogram.quantileMs(0.5) * 100) / 100,
    p99Ms: Math.round(histogram.quantileMs(0.99) * 100) / 100,
    refused,
  };
}

export async function signingScenario(ctx: SigningContext): Promise<SigningResult> {
  ctx.log('signing: cpu per request');
  const loadBefore = loadAverage();
  const cpu = cpuRows();
  const flush = ctx.redis.client();
  await flush.flushall();
  flush.disconnect();
  const adminToken = randomBytes(16).toString('hex');
  const authority = await AuthorityProcess.spawn({
    REDIS_URL: ctx.redis.url,
    QUOTAD_POLICY: ctx.policyPath,
    QUOTAD_ADMIN_TOKEN: adminToken,
    QUOTAD_SIGNING_KEY: randomBytes(32).toString('hex'),
    QUOTAD_REDIS_TIMEOUT: '1s',
    LOG_LEVEL: 'info',
  });
  await authority.ready();
  const admin = adminClient(authority.grpcAddress, adminToken);
  const client = quotaClient(authority.grpcAddress);
  const rows: SigningLoopRow[] = [];
  try {
    const keys = {} as Record<'off' | 'required', { sha256: Buffer; signingSecret: string }>;
    for (const signing of ['off', 'required'] as const) {
      const created = await admin.createKey({
        name: `bench-${signing}`,
        owner: 'bench',
        org: `bench-signing-${signing}`,
        tier: BENCH_TIER,
        expiresInMs: 0,
        signing,
      });
      keys[signing] = { sha256: sha256(created.secret), signingSecret: created.signingSecret };
    }
    // Warm both paths (connections, script cache, JIT) before measuring.
    for (const signing of ['off', 'required'] as const) await closedLoop(client, keys[signing], 1);
    const runs: Record<'off' | 'required', Omit<SigningLoopRow, 'signing'>[]> = { off: [], required: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const signing of ['off', 'required'] as const) {
        ctx.log(`signing: closed loop, signing ${signing}, round ${round + 1}`);
        runs[signing].push(await closedLoop(client, keys[signing], ctx.seconds));
      }
    }
    for (const signing of ['off', 'required'] as const) {
      const each = runs[signing];
      rows.push({
        signing,
        operationsPerSecond: median(each.map((r) => r.operationsPerSecond)),
        p50Ms: median(each.map((r) => r.p50Ms)),
        p99Ms: median(each.map((r) => r.p99Ms)),
        refused: each.reduce((sum, r) => sum + r.refused, 0),
      });
    }
  } finally {
    client.close();
    admin.close();
    await authority.stop();
  }
  return {
    ranAt: new Date().toISOString(),
    commit: ctx.commit,
    seconds: ctx.seconds,
    inFlight: IN_FLIGHT,
    load: `before ${loadBefore}; after ${loadAverage()}`,
    cpu,
    loop: rows,
    commandLines: [
      `node dist/bench/run.js --only signing --seconds ${ctx.seconds}   # or make bench BENCH_ARGS="--only signing"`,
      'REDIS_URL=redis://127.0.0.1:<port> QUOTAD_POLICY=<tmp>/policy.yaml QUOTAD_ADMIN_TOKEN=<random> QUOTAD_SIGNING_KEY=<random> node dist/src/main/cli.js serve',
    ],
  };
}

/** The scenario's section of RESULTS.md. */
export function renderSigning(
  result: SigningResult,
  table: (h: string[], r: (string | number)[][]) => string,
): string[] {
  const [off, required] = [
    result.loop.find((r) => r.signing === 'off'),
    result.loop.find((r) => r.signing === 'required'),
  ];
  const cost =
    off && required
      ? `Here signing required answered ${(((off.operationsPerSecond - required.operationsPerSecond) / off.operationsPerSecond) * 100).toFixed(1)} % fewer CheckQuota/s than signing off (the load generator's own signing, in the same process, is part of that), with p50 ${required.p50Ms} ms against ${off.p50Ms} ms. The verification itself is the table above: microseconds, against milliseconds for the decision's round trip.`
      : '';
  return [
    '## Signed requests (signing cost per request)',
    `Measured ${result.ranAt} at ${result.commit}, load average ${result.load} (on 2 cores shared with other work: read the figures as orders of magnitude). In one process, per request: the authority's verification (derive the key's signing secret with HMAC-SHA256 from QUOTAD_SIGNING_KEY, HMAC the signed text, compare in constant time), the gateway's SHA-256 of the body, and a client's signing (body hash and HMAC), medians of 5 batches:`,
    table(
      ['body', 'authority: verify (µs)', 'gateway: body SHA-256 (µs)', 'client: sign (µs)'],
      result.cpu.map((r) => [
        `${r.bodyBytes.toLocaleString('en-US')} B`,
        r.verifyUs,
        r.bodyHashUs,
        r.clientSignUs,
      ]),
    ),
    `End to end on the authority: \`quotad serve\` on Redis, CheckQuota over gRPC by API key hash, closed loop of ${result.inFlight} in flight, ${result.seconds} s a round, ${ROUNDS} rounds each alternating, medians (the signed loop also signs each request in the load generator; the signed path adds the verification and the nonce's EXISTS and SET inside reserve.lua, in the same round trip):`,
    table(
      ['signing', 'CheckQuota/s', 'p50', 'p99', 'refused'],
      result.loop.map((r) => [
        r.signing,
        r.operationsPerSecond.toLocaleString('en-US'),
        `${r.p50Ms} ms`,
        `${r.p99Ms} ms`,
        r.refused,
      ]),
    ),
    cost,
    ['```sh', ...result.commandLines, '```'].join('\n'),
  ];
}
