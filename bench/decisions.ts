/**
 * Decisions per second and latency of the authority over gRPC: each operation is a CheckQuota followed by
 * its RecordUsage, on the shipped policy's `pro` tier (five limits), spread over many principals.
 *
 *   node dist/bench/decisions.js [--store redis|memory] [--seconds 10] [--concurrency 64] [--principals 10000]
 *                                [--credential principal|key|both]
 *
 * --credential key asks with API keys (one per principal, issued through AdminService first), so each
 * decision also resolves a key; `both` measures principals then keys against the same authority.
 *
 * The authority runs as its own process (`quotad serve`), the load from this one; with --store redis the
 * script starts a private redis-server. Compare runs made on the same machine in the same session.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sha256 } from '../src/keys/api-key.js';
import { AuthorityProcess } from '../harness/authority-process.js';
import { adminClient, quotaClient } from '../harness/grpc-clients.js';
import { TestRedisServer } from '../harness/redis-server.js';

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'redis' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '64' },
    principals: { type: 'string', default: '10000' },
    credential: { type: 'string', default: 'principal' },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const principals = Number(values.principals);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function main() {
  const redis = values.store === 'redis' ? await TestRedisServer.start() : undefined;
  // info: the authority logs nothing per decision at info, and says when it serves.
  const adminToken = randomBytes(24).toString('hex');
  const env: Record<string, string> = {
    LOG_LEVEL: 'info',
    QUOTAD_REDIS_TIMEOUT: '1s',
    QUOTAD_ADMIN_TOKEN: adminToken,
  };
  if (redis) env.REDIS_URL = redis.url;
  const quotad = await (await AuthorityProcess.spawn(env)).ready();
  const client = quotaClient(quotad.grpcAddress);
  const credentials = values.credential === 'both' ? ['principal', 'key'] : [values.credential as string];
  const keyHashes = credentials.includes('key') ? await issueKeys(quotad.grpcAddress, adminToken) : [];

  const credentialOf = (n: number, kind: string) =>
    kind === 'key'
      ? { apiKeySha256: keyHashes[n % principals] as Buffer }
      : { principal: { subject: `bench-${n % principals}`, org: `org-${n % 97}`, tier: 'pro' } };

  const run = async (durationMs: number, record: boolean, kind: string) => {
    const latencies: number[] = [];
    let denied = 0;
    const deadline = performance.now() + durationMs;
    let sequence = 0;
    const worker = async () => {
      while (performance.now() < deadline) {
        sequence += 1;
        const n = sequence;
        const credential = credentialOf(n, kind);
        const requestId = `bench-${process.pid}-${kind}-${n}`;
        const started = performance.now();
        const answer = await client.checkQuota({
          requestId,
          ...credential,
          model: 'gpt-4o-mini',
          inputTokens: 200,
          maxOutputTokens: 300,
        });
        if (!answer.allowed) denied += 1;
        await client.recordUsage({
          requestId,
          ...credential,
          model: 'gpt-4o-mini',
          inputTokens: 200,
          outputTokens: 120,
          outcome: 'COMPLETED',
        });
        if (record) latencies.push(performance.now() - started);
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { latencies, denied, elapsedMs: performance.now() - started };
  };

  for (const kind of credentials) {
    await run(2_000, false, kind); // warm-up: JIT, connections, script cache, key cache
    const { latencies, denied, elapsedMs } = await run(seconds * 1_000, true, kind);
    latencies.sort((a, b) => a - b);
    const result = {
      store: values.store,
      credential: kind,
      concurrency,
      principals,
      operations: latencies.length,
      denied,
      operationsPerSecond: Math.round(latencies.length / (elapsedMs / 1_000)),
      grpcCallsPerSecond: Math.round((2 * latencies.length) / (elapsedMs / 1_000)),
      p50Ms: Number(percentile(latencies, 50).toFixed(2)),
      p99Ms: Number(percentile(latencies, 99).toFixed(2)),
      p999Ms: Number(percentile(latencies, 99.9).toFixed(2)),
    };
    console.log(JSON.stringify(result));
  }
  client.close();
  await quotad.stop();
  await redis?.stop();
}

/** Issues one `pro` key per principal through AdminService and returns their SHA-256 hashes. */
async function issueKeys(address: string, token: string): Promise<Buffer[]> {
  const admin = adminClient(address, token);
  const hashes: Buffer[] = [];
  for (let first = 0; first < principals; first += 200) {
    const batch = Array.from({ length: Math.min(200, principals - first) }, (_, i) =>
      admin.createKey({
        name: `bench ${first + i}`,
        owner: 'bench',
        org: `org-${(first + i) % 97}`,
        tier: 'pro',
      }),
    );
    for (const created of await Promise.all(batch)) {
      hashes.push(sha256(created.secret));
    }
  }
  admin.close();
  return hashes;
}

await main();
