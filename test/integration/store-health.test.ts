import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { eventually } from '../../harness/eventually.js';
import { healthClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

const DOWN_AFTER_MS = 1_000;

let redis: TestRedisServer;
let authority: RunningAuthority;
let health: ReturnType<typeof healthClient>;

before(async () => {
  redis = await TestRedisServer.start();
  authority = await startAuthority(
    inProcessServeConfig(['--store-down-after', `${DOWN_AFTER_MS}ms`, '--redis-timeout', '200ms'], {
      REDIS_URL: redis.url,
    }),
    {
      logDestination: new Writable({
        write(_chunk, _encoding, done) {
          done();
        },
      }),
    },
  );
  health = healthClient(`127.0.0.1:${authority.grpcPort}`);
});
after(async () => {
  health.close();
  await authority.stop();
  await redis.stop();
});

function status(service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    health.check({ service }, (error, response) => (error ? reject(error) : resolve(response?.status ?? ''))),
  );
}

test('QuotaService health turns NOT_SERVING only once Redis has answered nothing for --store-down-after, and SERVING again when it answers', async () => {
  assert.equal(await status('quotad.v1.QuotaService'), 'SERVING');

  await redis.kill();
  const killedAt = performance.now();
  assert.equal(await status('quotad.v1.QuotaService'), 'SERVING', 'a moment without Redis is no outage');
  await eventually(
    async () => ((await status('quotad.v1.QuotaService')) === 'NOT_SERVING' ? true : undefined),
    () => 'QuotaService stayed SERVING with Redis gone',
    { timeoutMs: 10_000, intervalMs: 50 },
  );
  const tookMs = performance.now() - killedAt;
  // The threshold counts from the last answer, at most one probe interval (250 ms) before the kill.
  assert.ok(
    tookMs >= DOWN_AFTER_MS - 300,
    `NOT_SERVING ${Math.round(tookMs)} ms after, before the threshold`,
  );
  // Within the threshold, plus one probe interval and a command timeout, plus slack for a loaded machine.
  assert.ok(tookMs < DOWN_AFTER_MS + 250 + 200 + 1_500, `NOT_SERVING only after ${Math.round(tookMs)} ms`);
  assert.equal(await status(''), 'SERVING', "the server's own status stays: calls are still answered");

  await redis.resume();
  await eventually(
    async () => ((await status('quotad.v1.QuotaService')) === 'SERVING' ? true : undefined),
    () => 'QuotaService stayed NOT_SERVING with Redis back',
  );
});
