/**
 * What an unauthenticated QuotaService caller can make an in-process store hold: CheckQuota for that many
 * new principals (shipped policy, tier free: five limits, so six entries each with the reservation), over
 * gRPC to an authority on the in-process store, and the heap it took.
 *
 *   node --expose-gc dist/bench/memory-store.js [--principals 100000] [--max-entries 1000000]
 *
 * The authority runs in this process so the heap can be measured after a full GC; the client's own garbage
 * is collected with it. RSS is reported too, but it keeps what the GC freed.
 */
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { parseServeConfig } from '../src/main/config.js';
import { startAuthority } from '../src/main/serve.js';
import { quotaClient } from '../harness/grpc-clients.js';

const { values } = parseArgs({
  options: {
    principals: { type: 'string', default: '100000' },
    'max-entries': { type: 'string', default: '1000000' },
  },
});
const principals = Number(values.principals);
const BATCH = 500;

function heapMb(): { heap: number; rss: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  gc();
  gc();
  const { heapUsed, rss } = process.memoryUsage();
  return { heap: heapUsed / 1e6, rss: rss / 1e6 };
}

async function main() {
  const authority = await startAuthority(
    parseServeConfig(
      [
        '--grpc-addr',
        '127.0.0.1:0',
        '--metrics-addr',
        '127.0.0.1:0',
        '--log-level',
        'error',
        '--memory-max-entries',
        values['max-entries'] as string,
      ],
      {},
    ),
    { logDestination: new Writable({ write: (_chunk, _encoding, done) => done() }) },
  );
  const quota = quotaClient(`127.0.0.1:${authority.grpcPort}`);
  const check = (i: number) => ({
    requestId: `r-${i}`,
    principal: { subject: `s-${i}`, org: `o-${i % 97}`, tier: 'free' },
    model: 'gpt-4o-mini',
    inputTokens: 10,
    maxOutputTokens: 10,
  });
  for (let i = 0; i < 100; i += 1) await quota.checkQuota(check(principals + i));
  const before = heapMb();
  let admitted = 0;
  let refused = 0;
  for (let from = 0; from < principals; from += BATCH) {
    const checks = Array.from({ length: Math.min(BATCH, principals - from) }, (_, j) => check(from + j));
    const { results } = await quota.checkQuotaBatch({ checks }, 60_000);
    for (const result of results) {
      if (result.response?.allowed) admitted += 1;
      else if (result.error?.code === grpc.status.RESOURCE_EXHAUSTED) refused += 1;
    }
  }
  const after = heapMb();
  const grown = after.heap - before.heap;
  console.log(
    JSON.stringify({
      principals,
      maxEntries: Number(values['max-entries']),
      admitted,
      refused,
      heapBeforeMb: Math.round(before.heap),
      heapAfterMb: Math.round(after.heap),
      heapPerAdmittedPrincipalBytes: admitted > 0 ? Math.round((grown * 1e6) / admitted) : 0,
      rssBeforeMb: Math.round(before.rss),
      rssAfterMb: Math.round(after.rss),
    }),
  );
  quota.close();
  await authority.stop();
}

await main();
