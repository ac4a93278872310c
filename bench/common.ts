/**
 * What the `make bench` scenarios share: the bench tier and its policy file, the request every operation
 * sends, the fixed answers of the no-op servers, the QuotaService definition as the authority loads it,
 * and a process's CPU time read from /proc.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parse, stringify } from 'yaml';
import { loadQuotaPackage } from '../src/api/proto.js';
import type { CheckQuotaRequest } from '../src/gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse } from '../src/gen/quotad/v1/CheckQuotaResponse.js';
import type { LimitStatus } from '../src/gen/quotad/v1/LimitStatus.js';
import type { RecordUsageRequest } from '../src/gen/quotad/v1/RecordUsageRequest.js';
import type { RecordUsageResponse } from '../src/gen/quotad/v1/RecordUsageResponse.js';
import { REPO_ROOT } from '../harness/authority-process.js';

export const BENCH_TIER = 'bench';
export const ORGS = 97;

/**
 * The bench tier's three limits, as quotad's policy states them and as rate-limiter-flexible is given them.
 * High enough that nothing is refused in a run (10,000 principals at a few thousand operations a second is
 * well under one request a second each); denials are counted and reported all the same.
 */
export const BENCH_LIMITS = {
  requestsPerMinute: 100_000,
  tokensPerMinute: 100_000_000,
  usdPerDayMicros: 1_000_000_000_000, // $1,000,000
};

/** Every CheckQuota: gpt-4o-mini ($0.15 / $0.60 per million), 200 prompt tokens, 300 output reserved. */
export const CHECK = { model: 'gpt-4o-mini', inputTokens: 200, maxOutputTokens: 300 } as const;
/** Every RecordUsage: the same prompt and 120 output tokens, completed. */
export const RECORD = { model: 'gpt-4o-mini', inputTokens: 200, outputTokens: 120 } as const;
/** gpt-4o-mini's prices in micro-dollars per million tokens, as config/policy.yaml states them. */
export const PRICE = { input: 150_000, output: 600_000 } as const;
export const usdMicros = (input: number, output: number) =>
  Math.ceil((input * PRICE.input + output * PRICE.output) / 1_000_000);

/** config/policy.yaml (its models, lease and idempotency window) plus the three-limit `bench` tier. */
export async function writeBenchPolicy(dir: string): Promise<string> {
  const file = parse(await readFile(join(REPO_ROOT, 'config/policy.yaml'), 'utf8')) as {
    tiers: Record<string, unknown>;
  };
  file.tiers[BENCH_TIER] = {
    max_output_tokens: 4000,
    max_input_tokens: 32000,
    limits: [
      {
        name: 'requests_per_minute',
        type: 'rate',
        unit: 'requests',
        limit: BENCH_LIMITS.requestsPerMinute,
        window: '1m',
      },
      {
        name: 'tokens_per_minute',
        type: 'rate',
        unit: 'tokens',
        limit: BENCH_LIMITS.tokensPerMinute,
        window: '1m',
      },
      {
        name: 'spend_per_day',
        type: 'budget',
        unit: 'usd',
        limit: (BENCH_LIMITS.usdPerDayMicros / 1_000_000).toFixed(2),
        period: 'day',
      },
    ],
  };
  const path = join(dir, 'policy.yaml');
  await writeFile(path, stringify(file));
  return path;
}

/** The principal of operation number `n`: one of `principals` subjects, in one of 97 orgs. */
export function principalOf(n: number, principals: number) {
  const subject = n % principals;
  return { subject: `bench-${subject}`, org: `org-${subject % ORGS}`, tier: BENCH_TIER };
}

export function checkRequest(requestId: string, n: number, principals: number): CheckQuotaRequest {
  return { requestId, principal: principalOf(n, principals), ...CHECK };
}

export function recordRequest(requestId: string, n: number, principals: number): RecordUsageRequest {
  return { requestId, principal: principalOf(n, principals), ...RECORD, outcome: 'COMPLETED' };
}

/** QuotaService as the authority loads it (src/api/proto.ts: same files, same loader options). */
export function quotaServiceDefinition(): grpc.ServiceDefinition {
  return loadQuotaPackage().proto.quotad.v1.QuotaService.service;
}

/**
 * Serves QuotaService with `handlers` on a free loopback port, prints `listening <port>` for bench/run.ts,
 * and on SIGTERM stops gracefully, runs `onStop`, and exits.
 */
export async function serveQuotaOnLoopback(
  handlers: grpc.UntypedServiceImplementation,
  onStop: () => void = () => {},
): Promise<void> {
  const server = new grpc.Server();
  server.addService(quotaServiceDefinition(), handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  process.stdout.write(`listening ${port}\n`);
  process.once('SIGTERM', () =>
    server.tryShutdown(() => {
      onStop();
      process.exit(0);
    }),
  );
}

/** Whether the loaded proto has the batched RPCs (CheckQuotaBatch and RecordUsageBatch). */
export function protoHasBatch(): boolean {
  const service = quotaServiceDefinition();
  return 'CheckQuotaBatch' in service && 'RecordUsageBatch' in service;
}

/** Limit statuses shaped like the authority's for the bench tier (what a caller of any server gets). */
export function benchLimitStatuses(
  nowMs: number,
  used: { requests: number; tokens: number; micros: number },
) {
  const dayStart = nowMs - (nowMs % 86_400_000);
  const rate = (name: string, unit: LimitStatus['unit'], limit: number, usedNow: number): LimitStatus => ({
    name,
    unit,
    kind: 'RATE',
    limit,
    used: usedNow,
    remaining: Math.max(0, limit - usedNow),
    resetAfterMs: 120_000 - (nowMs % 60_000),
    exceeded: false,
    shadow: false,
    retryAfterMs: 0,
    windowMs: 60_000,
    periodStartMs: 0,
    periodEndMs: 0,
  });
  return [
    rate('requests_per_minute', 'REQUESTS', BENCH_LIMITS.requestsPerMinute, used.requests),
    rate('tokens_per_minute', 'TOKENS', BENCH_LIMITS.tokensPerMinute, used.tokens),
    {
      name: 'spend_per_day',
      unit: 'USD_MICROS',
      kind: 'BUDGET',
      limit: BENCH_LIMITS.usdPerDayMicros,
      used: used.micros,
      remaining: BENCH_LIMITS.usdPerDayMicros - used.micros,
      resetAfterMs: dayStart + 86_400_000 - nowMs,
      exceeded: false,
      shadow: false,
      retryAfterMs: 0,
      windowMs: 0,
      periodStartMs: dayStart,
      periodEndMs: dayStart + 86_400_000,
    },
  ] satisfies LimitStatus[];
}

const RESERVED_TOKENS = CHECK.inputTokens + CHECK.maxOutputTokens;
const RESERVED_MICROS = usdMicros(CHECK.inputTokens, CHECK.maxOutputTokens);
const CHARGED_MICROS = usdMicros(RECORD.inputTokens, RECORD.outputTokens);

/** An allowed CheckQuotaResponse as the authority answers one for the bench tier. */
export function allowedCheckResponse(nowMs: number): CheckQuotaResponse {
  return {
    allowed: true,
    code: 'OK',
    reason: '',
    retryAfterMs: 0,
    limits: benchLimitStatuses(nowMs, { requests: 7, tokens: 3_500, micros: 1_470 }),
    reservation: { expiresAtMs: nowMs + 600_000, tokens: RESERVED_TOKENS, usdMicros: RESERVED_MICROS },
    maxOutputTokens: 4000,
    degraded: false,
    duplicate: false,
    model: CHECK.model,
    key: null,
    warning: '',
  };
}

/** A SETTLED RecordUsageResponse as the authority answers one for the bench tier. */
export function settledRecordResponse(nowMs: number): RecordUsageResponse {
  return {
    status: 'SETTLED',
    charged: {
      inputTokens: RECORD.inputTokens,
      outputTokens: RECORD.outputTokens,
      usdMicros: CHARGED_MICROS,
    },
    reservedTokens: RESERVED_TOKENS,
    reservedUsdMicros: RESERVED_MICROS,
    limits: benchLimitStatuses(nowMs, { requests: 7, tokens: 3_320, micros: 1_362 }),
    late: false,
  };
}

/** User + system CPU seconds a process has used so far (Linux /proc; clock ticks of 1/100 s). */
export async function processCpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** CPU seconds the whole machine has spent busy (all cores, not idle or waiting on I/O), from /proc/stat. */
export async function machineCpuSeconds(): Promise<number> {
  try {
    const [cpu] = (await readFile('/proc/stat', 'utf8')).split('\n');
    const ticks = (cpu as string).trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = ticks;
    return (user + nice + system + irq + softirq + steal) / 100;
  } catch {
    return NaN;
  }
}
