import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { ManualClock } from '../../src/core/clock.js';
import { descriptor, type RlsResponse } from '../../harness/rls-client.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { configDirectory, fresh, startRlsAuthority, type RlsAuthority } from './envoy-rls-suite.js';

type Mode = 'open' | 'closed' | 'local';

describe('--envoy-on-store-failure decides while Redis is down', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 5));
  let redis: TestRedisServer;
  let dir: string;
  const authorities = new Map<Mode, RlsAuthority>();
  const ask = (mode: Mode, value: string): Promise<RlsResponse> =>
    (authorities.get(mode) as RlsAuthority).client.shouldRateLimit({
      domain: 'rls-test',
      descriptors: [descriptor([['burst', value]]), descriptor([['shadow', value]])],
    });

  before(async () => {
    redis = await TestRedisServer.start();
    dir = await configDirectory();
    for (const mode of ['open', 'closed', 'local'] as const) {
      const env = {
        REDIS_URL: redis.url,
        QUOTAD_ENVOY_ON_STORE_FAILURE: mode,
        QUOTAD_REDIS_TIMEOUT: '200ms',
      };
      authorities.set(mode, await startRlsAuthority(dir, env, clock));
    }
    await redis.kill();
  });

  after(async () => {
    for (const authority of authorities.values()) {
      authority.client.close();
      await authority.running.stop();
    }
    await rm(dir, { recursive: true, force: true });
    await redis.stop();
  });

  test('open: OK, the limit named but nothing counted', async () => {
    const answer = await ask('open', fresh());
    assert.equal(answer.overall_code, 'OK');
    assert.equal(answer.statuses[0]?.current_limit?.requests_per_unit, 20);
    assert.equal(answer.statuses[0]?.limit_remaining, undefined);
  });

  test('closed: OVER_LIMIT for every limited descriptor', async () => {
    const answer = await ask('closed', fresh());
    assert.deepEqual(
      [answer.overall_code, ...answer.statuses.map((s) => s.code)],
      ['OVER_LIMIT', 'OVER_LIMIT', 'OVER_LIMIT'],
    );
  });

  test('local: counts in this process at limit ÷ replicas (one replica: the whole 20)', async () => {
    const value = fresh();
    const answers: RlsResponse[] = [];
    for (let i = 0; i < 25; i++) answers.push(await ask('local', value));
    assert.equal(answers.filter((a) => a.overall_code === 'OK').length, 20);
    const lines = await (
      authorities.get('local') as RlsAuthority
    ).running.metrics.registry.getSingleMetricAsString('quotad_envoy_degraded_decisions_total');
    assert.match(lines, /quotad_envoy_degraded_decisions_total\{mode="local"\} 25/);
  });
});
