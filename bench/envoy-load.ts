/**
 * A closed-loop load of one kind of call, for the `envoy` scenario of `make bench`: `concurrency` calls in
 * flight, each next one sent when one ends, for `seconds` after `warmup` seconds; prints one JSON line.
 *
 *   node dist/bench/envoy-load.js <host:port> <check|rls1|rls3> <concurrency> <seconds> <warmup> <principals>
 *
 * check: CheckQuota alone (the bench tier: three limits). rls1: ShouldRateLimit with one descriptor
 * (`user`); rls3: three (`user`, `route`, and `tokens` of the user with hits_addend 500), as Envoy sends
 * them, from a client built from Envoy's proto. Call n is for subject n mod principals.
 */
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { quotaClient } from '../harness/grpc-clients.js';
import { descriptor, rlsClient, type RlsRequest } from '../harness/rls-client.js';
import { checkRequest } from './common.js';
import { Histogram } from './histogram.js';

export const ENVOY_BENCH_DOMAIN = 'bench';

const [target, op, concurrencyArg, secondsArg, warmupArg, principalsArg] = process.argv.slice(2);
if (!target || !op)
  throw new Error('usage: envoy-load.js <host:port> <check|rls1|rls3> <c> <s> <warmup> <principals>');
const concurrency = Number(concurrencyArg);
const principals = Number(principalsArg);
const tag = randomBytes(4).toString('hex');

function rlsRequest(n: number): RlsRequest {
  const user = `bench-${n % principals}`;
  const descriptors = [descriptor([['user', user]])];
  if (op === 'rls3') {
    descriptors.push(descriptor([['route', `r${n % 10}`]]), descriptor([['tokens', user]], 500));
  }
  return { domain: ENVOY_BENCH_DOMAIN, descriptors };
}

const quota = op === 'check' ? quotaClient(target) : undefined;
const rls = op === 'check' ? undefined : rlsClient(target);
let sequence = 0;
const callOnce = async (): Promise<boolean> => {
  const n = sequence++;
  if (quota) return (await quota.checkQuota(checkRequest(`${tag}-${n}`, n, principals))).allowed;
  return (await (rls as NonNullable<typeof rls>).shouldRateLimit(rlsRequest(n))).overall_code === 'OK';
};

const latency = new Histogram();
const errors: Record<string, number> = {};
let over = 0;
let measuring = false;
let stopped = false;
let calls = 0;
async function worker(): Promise<void> {
  while (!stopped) {
    const started = performance.now();
    try {
      const ok = await callOnce();
      if (measuring) {
        latency.recordMs(performance.now() - started);
        calls += 1;
        if (!ok) over += 1;
      }
    } catch (error) {
      const code = String((error as grpc.ServiceError).code ?? error);
      if (measuring) errors[code] = (errors[code] ?? 0) + 1;
    }
  }
}
const workers = Array.from({ length: concurrency }, () => worker());
await new Promise((resolve) => setTimeout(resolve, Number(warmupArg) * 1000));
measuring = true;
const startedAt = performance.now();
await new Promise((resolve) => setTimeout(resolve, Number(secondsArg) * 1000));
measuring = false;
const measuredMs = performance.now() - startedAt;
stopped = true;
await Promise.all(workers);
quota?.close();
rls?.close();
process.stdout.write(
  `${JSON.stringify({
    op,
    calls,
    callsPerSecond: calls / (measuredMs / 1000),
    p50Ms: latency.quantileMs(0.5),
    p99Ms: latency.quantileMs(0.99),
    over,
    errors,
  })}\n`,
);
process.exit(0);
