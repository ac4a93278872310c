import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { ManualClock } from '../../src/core/clock.js';
import { descriptor } from '../../harness/rls-client.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { configDirectory, fresh, rlsSuite, startRlsAuthority, type RlsAuthority } from './envoy-rls-suite.js';

let redis: TestRedisServer;

rlsSuite({
  name: 'redis',
  env: () => ({ REDIS_URL: redis.url }),
  setUp: async () => {
    redis = await TestRedisServer.start();
  },
});

describe('Envoy domains on one Redis shared by two authorities', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 5));
  let dir: string;
  let a: RlsAuthority;
  let b: RlsAuthority;

  before(async () => {
    dir = await configDirectory();
    [a, b] = await Promise.all([
      startRlsAuthority(dir, { REDIS_URL: redis.url }, clock),
      startRlsAuthority(dir, { REDIS_URL: redis.url }, clock),
    ]);
  });

  after(async () => {
    for (const authority of [a, b]) {
      authority.client.close();
      await authority.running.stop();
    }
    await rm(dir, { recursive: true, force: true });
    await redis.stop();
  });

  test('they share the counters: 20/minute across both admits 20 of 100 concurrent calls', async () => {
    const value = fresh();
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 ? a : b).client.shouldRateLimit({
          domain: 'rls-test',
          descriptors: [descriptor([['burst', value]])],
        }),
      ),
    );
    assert.equal(answers.filter((answer) => answer.overall_code === 'OK').length, 20);
  });

  test("a reservation made through one is settled through the other, and every key is in the domain's slot", async () => {
    const [tokens, id] = [fresh(), fresh('req')];
    await a.client.shouldRateLimit({
      domain: 'rls-test',
      descriptors: [
        descriptor(
          [
            ['tokens', tokens],
            ['quotad.reserve', id],
          ],
          900,
        ),
        descriptor([['user', fresh()]]),
      ],
    });
    const settled = await b.client.shouldRateLimit({
      domain: 'rls-test',
      descriptors: [
        descriptor(
          [
            ['tokens', tokens],
            ['quotad.settle', id],
          ],
          10,
        ),
      ],
    });
    assert.equal(settled.statuses[0]?.limit_remaining, 990);
    const inspector = redis.client();
    const keys = await inspector.keys('quotad:{envoy:*');
    await inspector.quit();
    const ofThisRequest = keys.filter((key) => key.includes(':res:') || key.includes(':rl:'));
    assert.ok(ofThisRequest.length >= 3, keys.join(', '));
    for (const key of keys) assert.match(key, /^quotad:\{envoy:[^{}]+\}:(rl:\d+|res):[0-9a-f]{64}$/);
    assert.ok(keys.some((key) => key.startsWith('quotad:{envoy:rls-test}:res:')));
  });
});
