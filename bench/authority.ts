/**
 * The decision logic without the transport: QuotaAuthority.check + record, in one process, one at a time.
 *
 *   node dist/bench/authority.js [--store memory|redis] [--operations 50000] [--credential principal|key]
 *
 * With --store redis a private redis-server is started; time then includes one round trip per call.
 * --credential key asks with the SHA-256 of one of 10,000 API keys instead of a principal.
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { parsePolicy } from '../src/policy/load.js';
import type { Credential } from '../src/authority/quota-authority.js';
import { sha256 } from '../src/keys/api-key.js';
import type { KeyStore } from '../src/store/key-store.js';
import { MemoryKeyStore } from '../src/store/memory-key-store.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { RedisKeyStore } from '../src/store/redis/redis-key-store.js';
import { createRedisClient, RedisStore } from '../src/store/redis/redis-store.js';
import type { QuotaStore } from '../src/store/store.js';
import { composeAuthority } from '../src/main/compose-authority.js';
import { createLogger } from '../src/telemetry/logger.js';
import { AuthorityMetrics } from '../src/telemetry/metrics.js';
import { REPO_ROOT } from '../harness/authority-process.js';
import { TestRedisServer } from '../harness/redis-server.js';

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory' },
    operations: { type: 'string', default: '50000' },
    credential: { type: 'string', default: 'principal' },
  },
});
const operations = Number(values.operations);
const policy = parsePolicy(readFileSync(`${REPO_ROOT}config/policy.yaml`, 'utf8'), 'config/policy.yaml');
const clock = { now: () => Date.now() };

const redis = values.store === 'redis' ? await TestRedisServer.start() : undefined;
let store: QuotaStore;
let keyStore: KeyStore;
if (redis) {
  const client = createRedisClient(redis.url, { commandTimeoutMs: 1_000 });
  await client.connect();
  store = new RedisStore({ redis: client });
  keyStore = new RedisKeyStore({ redis: client });
} else {
  store = new MemoryStore({ clock });
  keyStore = new MemoryKeyStore({ clock });
}
const metrics = new AuthorityMetrics({ version: 'bench', collectDefault: false, storeKind: store.kind });
const { authority, keys } = composeAuthority({
  store,
  keyStore,
  fallback: new MemoryStore({ clock, sweepIntervalMs: 0 }),
  policy: () => policy,
  clock,
  metrics,
  // Logged lines are dropped: this measures decisions, not logging.
  logger: createLogger({
    level: 'info',
    name: 'quotad-bench',
    destination: new Writable({ write: (_chunk, _encoding, done) => done() }),
  }),
  keyCacheTtlMs: 1_000,
});
const keyHashes: Buffer[] = [];
if (values.credential === 'key') {
  for (let i = 0; i < 10_000; i++) {
    const { secret } = await keys.create({
      name: `k${i}`,
      owner: 'bench',
      org: `o${i % 97}`,
      tier: 'pro',
      expiresInMs: 0,
    });
    keyHashes.push(sha256(secret));
  }
}
const credentialOf = (i: number): Credential =>
  values.credential === 'key'
    ? { apiKeySha256: keyHashes[i % 10_000] as Buffer }
    : { principal: { subject: `s${i % 10_000}`, org: `o${i % 97}`, tier: 'pro' } };

const run = async (count: number) => {
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const credential = credentialOf(i);
    const requestId = `r${process.pid}-${started}-${i}`;
    await authority.check({
      requestId,
      ...credential,
      model: 'gpt-4o-mini',
      inputTokens: 200,
      maxOutputTokens: 300,
      dryRun: false,
    });
    await authority.record({
      requestId,
      ...credential,
      model: 'gpt-4o-mini',
      inputTokens: 200,
      outputTokens: 120,
      outcome: 'completed',
    });
  }
  return performance.now() - started;
};
await run(Math.min(5_000, operations)); // warm-up
const elapsedMs = await run(operations);
console.log(
  JSON.stringify({
    store: values.store,
    credential: values.credential,
    operations,
    operationsPerSecond: Math.round(operations / (elapsedMs / 1_000)),
  }),
);
await keyStore.close();
await store.close();
await redis?.stop();
