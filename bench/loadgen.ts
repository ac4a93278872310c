/**
 * The gRPC load generator of `make bench`, run as a child process of bench/run.ts (forked, with IPC): one
 * QuotaService channel to the target, then one load phase per message from the parent, each answered
 * with its counts and latency histograms.
 *
 *   node dist/bench/loadgen.js <target host:port> <principals> <index> <of>
 *
 * Closed loop: `concurrency` operations in flight, each next one sent when one ends. Open loop: operations
 * sent at `rate` a second on a fixed schedule whatever the answers do, and each one's latency measured
 * from the time it was meant to be sent, so a stall is charged to every operation it delayed (no
 * coordinated omission). An operation is a CheckQuota then its RecordUsage (`pair`), a CheckQuota alone
 * (`check`), or a CheckQuotaBatch of `batchSize` checks then the matching RecordUsageBatch (`batch`).
 *
 * With several load generators, generator `index` of `of` takes operation numbers index, index + of, ...
 * so their principals interleave, and each is given its share of the rate or concurrency.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Unary } from '../src/api/client.js';
import { quotaClient } from '../harness/grpc-clients.js';
import { checkRequest, recordRequest } from './common.js';
import { Histogram } from './histogram.js';

export type Operation = 'pair' | 'check' | 'batch';

export interface PhaseRequest {
  type: 'phase';
  mode: 'closed' | 'open';
  op: Operation;
  /** Closed loop: operations in flight. */
  concurrency: number;
  /** Open loop: operations a second. */
  rate: number;
  warmupMs: number;
  measureMs: number;
  batchSize: number;
}

export interface PhaseResult {
  type: 'result';
  /** Operations that started and ended inside the measured period (open loop: meant to start in it). */
  operations: number;
  /** Decisions in them: CheckQuota and RecordUsage answers (batch items count one each). */
  decisions: number;
  /** gRPC calls in them. */
  calls: number;
  denied: number;
  /** Failed operations by gRPC status (or item error) name; not in the histograms. */
  errors: Record<string, number>;
  /** Open loop: operations still unanswered 30 s after the last was sent. */
  unfinished: number;
  measuredMs: number;
  /** Latency of each operation: from its intended send time (open loop) or its send time (closed loop). */
  latency: ReturnType<Histogram['toJSON']>;
  /** Open loop: from the actual send time, i.e. without the generator's own scheduling delay. */
  service: ReturnType<Histogram['toJSON']>;
  /** Open loop: actual send time minus intended send time (the generator's own delay). */
  lag: ReturnType<Histogram['toJSON']>;
  /** This process's CPU seconds (user + system) over the phase. */
  cpuSeconds: number;
  /** Every call sent in the whole phase (warm-up and stragglers included), by method; batch items apart. */
  sent: Record<string, number>;
}

const [target, principalsArg, indexArg, ofArg] = process.argv.slice(2);
if (!target || !process.send) throw new Error('loadgen.ts runs as a forked child of bench/run.ts');
const principals = Number(principalsArg);
const index = Number(indexArg);
const of = Number(ofArg);
const client = quotaClient(target);
const tag = randomBytes(4).toString('hex');
const DEADLINE_MS = 30_000;
let sequence = 0;
/** Calls sent so far in the current phase, by method, and the items of batch calls (`<method> items`). */
let sentCalls: Record<string, number> = {};

function call(method: string, request: unknown): Promise<unknown> {
  const fn = (client as unknown as Record<string, Unary<unknown, unknown> | undefined>)[method];
  sentCalls[method] = (sentCalls[method] ?? 0) + 1;
  const batch = request as { checks?: unknown[]; records?: unknown[] };
  const items = batch.checks ?? batch.records;
  if (items) sentCalls[`${method} items`] = (sentCalls[`${method} items`] ?? 0) + items.length;
  if (!fn)
    return Promise.reject(Object.assign(new Error(`no ${method}`), { code: grpc.status.UNIMPLEMENTED }));
  return fn(request, DEADLINE_MS);
}

interface Outcome {
  decisions: number;
  calls: number;
  denied: number;
  /** Item errors inside a batch answer, by code. */
  itemErrors?: Record<string, number>;
}

interface BatchResult {
  response?: { allowed?: boolean };
  error?: { code: number; message: string };
  outcome?: string;
}

async function operation(op: Operation, batchSize: number): Promise<Outcome> {
  if (op === 'batch') {
    const numbers = Array.from({ length: batchSize }, () => sequence++ * of + index);
    const ids = numbers.map((n) => `${tag}-${n}`);
    const checks = (await call('checkQuotaBatch', {
      checks: numbers.map((n, i) => checkRequest(ids[i] as string, n, principals)),
    })) as { results: BatchResult[] };
    const records = (await call('recordUsageBatch', {
      records: numbers.map((n, i) => recordRequest(ids[i] as string, n, principals)),
    })) as { results: BatchResult[] };
    const itemErrors: Record<string, number> = {};
    let denied = 0;
    // With the authority's loader options (oneofs: true) `outcome` names the member that is set.
    const failed = (result: BatchResult) =>
      result.outcome ? result.outcome === 'error' : Boolean(result.error);
    for (const result of [...checks.results, ...records.results]) {
      if (failed(result) && result.error) {
        const name = grpc.status[result.error.code] ?? String(result.error.code);
        itemErrors[name] = (itemErrors[name] ?? 0) + 1;
      }
    }
    for (const result of checks.results) if (!failed(result) && !result.response?.allowed) denied += 1;
    return { decisions: checks.results.length + records.results.length, calls: 2, denied, itemErrors };
  }
  const n = sequence++ * of + index;
  const requestId = `${tag}-${n}`;
  const answer = (await call('checkQuota', checkRequest(requestId, n, principals))) as { allowed: boolean };
  if (op === 'check') return { decisions: 1, calls: 1, denied: answer.allowed ? 0 : 1 };
  await call('recordUsage', recordRequest(requestId, n, principals));
  return { decisions: 2, calls: 2, denied: answer.allowed ? 0 : 1 };
}

function errorName(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? (grpc.status[code] ?? String(code)) : String(error);
}

async function runPhase(phase: PhaseRequest): Promise<PhaseResult> {
  const latency = new Histogram();
  const service = new Histogram();
  const lag = new Histogram();
  const errors: Record<string, number> = {};
  const totals = { operations: 0, decisions: 0, calls: 0, denied: 0, unfinished: 0 };
  const cpu = process.cpuUsage();
  sentCalls = {};
  const start = performance.now() + 5;
  const measureFrom = start + phase.warmupMs;
  const measureTo = measureFrom + phase.measureMs;

  const finish = (outcome: Outcome | undefined, error: unknown, intended: number, sent: number) => {
    const ended = performance.now();
    if (intended < measureFrom || (phase.mode === 'closed' && ended > measureTo)) return;
    if (phase.mode === 'open' && intended >= measureTo) return;
    if (error !== undefined || !outcome) {
      const name = errorName(error);
      errors[name] = (errors[name] ?? 0) + 1;
      return;
    }
    if (outcome.itemErrors && Object.keys(outcome.itemErrors).length > 0) {
      for (const [name, count] of Object.entries(outcome.itemErrors))
        errors[name] = (errors[name] ?? 0) + count;
      return;
    }
    totals.operations += 1;
    totals.decisions += outcome.decisions;
    totals.calls += outcome.calls;
    totals.denied += outcome.denied;
    latency.recordMs(ended - intended);
    if (phase.mode === 'open') {
      service.recordMs(ended - sent);
      lag.recordMs(sent - intended);
    }
  };

  const launch = (intended: number): Promise<void> => {
    const sent = performance.now();
    return operation(phase.op, phase.batchSize).then(
      (outcome) => finish(outcome, undefined, intended, sent),
      (error: unknown) => finish(undefined, error, intended, sent),
    );
  };

  await new Promise((resolve) => setTimeout(resolve, Math.max(0, start - performance.now())));
  if (phase.mode === 'closed') {
    const worker = async () => {
      while (performance.now() < measureTo) await launch(performance.now());
    };
    await Promise.all(Array.from({ length: phase.concurrency }, worker));
  } else {
    const intervalMs = 1000 / phase.rate;
    const pending = new Set<Promise<void>>();
    const maxInFlight = 20_000;
    let next = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        while (pending.size < maxInFlight) {
          const intended = start + next * intervalMs;
          if (intended > now || intended >= measureTo) break;
          next += 1;
          const done = launch(intended).finally(() => pending.delete(done));
          pending.add(done);
        }
        if (start + next * intervalMs >= measureTo) return resolve();
        setTimeout(tick, Math.max(0, start + next * intervalMs - performance.now()));
      };
      tick();
    });
    const drained = Promise.all(pending).then(() => true);
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 30_000).unref());
    if (!(await Promise.race([drained, timeout]))) totals.unfinished = pending.size;
  }
  const used = process.cpuUsage(cpu);
  return {
    type: 'result',
    ...totals,
    errors,
    measuredMs: phase.measureMs,
    latency: latency.toJSON(),
    service: service.toJSON(),
    lag: lag.toJSON(),
    cpuSeconds: (used.user + used.system) / 1e6,
    sent: sentCalls,
  };
}

process.on('message', (message: PhaseRequest | { type: 'exit' }) => {
  if (message.type === 'exit') {
    client.close();
    process.disconnect();
    return;
  }
  runPhase(message).then(
    (result) => process.send?.(result),
    (error: unknown) => process.send?.({ type: 'error', message: String(error) }),
  );
});
process.send({ type: 'ready' });
