import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthorityProcess, REPO_ROOT } from '../../harness/authority-process.js';
import { healthClient, quotaClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const SHIPPED_POLICY = join(REPO_ROOT, 'config/policy.yaml');

describe('quotad serve as a process', () => {
  let redis: TestRedisServer;
  let dir: string;

  before(async () => {
    redis = await TestRedisServer.start();
    dir = await mkdtemp(join(tmpdir(), 'quotad-e2e-'));
  });
  after(async () => {
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('without REDIS_URL it serves on the in-process store and says it is single-instance', async (t) => {
    const quotad = await AuthorityProcess.spawn({});
    t.after(() => quotad.stop());
    await quotad.ready();
    const warning = await quotad.waitForLog('no REDIS_URL');
    assert.equal(warning.level, 'warn');
    assert.match(String(warning.msg), /single instance/);
  });

  test('SIGTERM during load fails no in-flight call, and the process exits 0', async () => {
    const quotad = await AuthorityProcess.spawn({
      REDIS_URL: redis.url,
      QUOTAD_REDIS_TIMEOUT: '2s',
      QUOTAD_SHUTDOWN_DELAY: '1s',
      LOG_LEVEL: 'info',
    });
    await quotad.ready();
    const client = quotaClient(quotad.grpcAddress);
    const health = healthClient(quotad.grpcAddress);
    let draining = false;
    const watch = health.watch({ service: '' });
    watch.on('data', ({ status }: { status: string }) => {
      if (status === 'NOT_SERVING') draining = true;
    });
    watch.on('error', () => undefined);

    let completed = 0;
    const failures: Error[] = [];
    let signalled = false;
    const worker = async (id: number) => {
      for (let n = 0; !draining; n++) {
        try {
          await client.checkQuota({
            requestId: `load-${id}-${n}`,
            principal: { subject: `load-${id}-${n}`, org: 'load', tier: 'enterprise' },
            model: 'gpt-4o',
            inputTokens: 10,
            maxOutputTokens: 10,
          });
          completed += 1;
        } catch (error) {
          failures.push(error as Error);
        }
        if (completed >= 300 && !signalled) {
          signalled = true;
          quotad.child.kill('SIGTERM');
        }
      }
    };
    await Promise.all(Array.from({ length: 32 }, (_, id) => worker(id)));
    const code = await quotad.exitCode();
    watch.cancel();
    client.close();
    health.close();
    assert.deepEqual(failures, []);
    assert.ok(completed >= 300);
    assert.equal(code, 0);
  });

  test('SIGTERM the moment it says it serves still shuts it down cleanly: exit 0', async () => {
    const quotad = await AuthorityProcess.spawn({ REDIS_URL: redis.url });
    await quotad.ready();
    quotad.child.kill('SIGTERM');
    assert.equal(await quotad.exitCode(), 0);
    await quotad.waitForLog('signal received');
  });

  test('SIGTERM while it is still starting stops it once started: exit 0, not killed', async () => {
    const quotad = await AuthorityProcess.spawn({ REDIS_URL: redis.url });
    await quotad.waitForLog('redis ready');
    quotad.child.kill('SIGTERM');
    assert.equal(await quotad.exitCode(), 0);
  });

  test('a malformed policy at start stops the process with exit 2 and names the field and line', async () => {
    const policy = join(dir, 'bad.yaml');
    const text = await readFile(SHIPPED_POLICY, 'utf8');
    await writeFile(policy, text.replace('window: 1m', 'window: soon'));
    const quotad = await AuthorityProcess.spawn({ QUOTAD_POLICY: policy });
    assert.equal(await quotad.exitCode(), 2);
    assert.match(quotad.stderr, /bad\.yaml:\d+:\d+ tiers\.free\.limits\[0\]\.window: /);
  });

  test('an edited policy applies without a restart; a bad edit is rejected and the last good one stays', async (t) => {
    const policyDir = await mkdtemp(join(dir, 'reload-'));
    const policy = join(policyDir, 'policy.yaml');
    await copyFile(SHIPPED_POLICY, policy);
    const quotad = await AuthorityProcess.spawn({ QUOTAD_POLICY: policy });
    t.after(() => quotad.stop());
    await quotad.ready();
    const client = quotaClient(quotad.grpcAddress);
    t.after(() => client.close());

    const shipped = await readFile(policy, 'utf8');
    const replaceAtomically = async (text: string) => {
      await writeFile(join(policyDir, '.policy.tmp'), text);
      await rename(join(policyDir, '.policy.tmp'), policy);
    };
    const reloaded = quotad.nextLog('policy reloaded');
    await replaceAtomically(shipped.replace(/limit: 10\n/, 'limit: 1\n'));
    await reloaded;
    const who = { subject: 'reload-user', org: 'reload', tier: 'free' };
    const ask = (requestId: string) =>
      client.checkQuota({
        requestId,
        principal: who,
        model: 'gpt-4o-mini',
        inputTokens: 10,
        maxOutputTokens: 10,
      });
    assert.equal((await ask('r1')).allowed, true);
    const second = await ask('r2');
    assert.equal(second.allowed, false);
    assert.equal(second.limits.find((l) => l.name === 'requests_per_minute')?.limit, 1);

    const rejected = quotad.nextLog('policy edit rejected');
    await replaceAtomically('tiers: [this is not a policy');
    const line = await rejected;
    assert.match(String(line.err), /policy\.yaml:\d+:\d+/);
    assert.match(await quotad.metrics(), /^quotad_policy_valid 0$/m);
    assert.equal((await ask('r2')).limits.find((l) => l.name === 'requests_per_minute')?.limit, 1);
  });

  test('every limit in force has its exceeded series at 0, so rate() sees its first denial; a reload adds new ones', async (t) => {
    const policyDir = await mkdtemp(join(dir, 'series-'));
    const policy = join(policyDir, 'policy.yaml');
    await copyFile(SHIPPED_POLICY, policy);
    const quotad = await AuthorityProcess.spawn({ QUOTAD_POLICY: policy });
    t.after(() => quotad.stop());
    await quotad.ready();
    const series = (limit: string, shadow: boolean) =>
      new RegExp(`^quotad_limit_exceeded_total\\{limit="${limit}",shadow="${shadow}"\\} 0$`, 'm');
    const before = await quotad.metrics();
    for (const limit of ['requests_per_minute', 'tokens_per_minute', 'tokens_per_day', 'spend_per_day']) {
      assert.match(before, series(limit, false));
    }

    const reloaded = quotad.nextLog('policy reloaded');
    const shipped = await readFile(policy, 'utf8');
    const withShadow = shipped.replace(
      /( {2}free:\n(?:.*\n)*? {4}limits:\n)/,
      '$1      - name: requests_per_hour_preview\n        type: rate\n        unit: requests\n        limit: 100\n        window: 1h\n        shadow: true\n',
    );
    assert.notEqual(withShadow, shipped);
    await writeFile(join(policyDir, '.policy.tmp'), withShadow);
    await rename(join(policyDir, '.policy.tmp'), policy);
    await reloaded;
    assert.match(await quotad.metrics(), series('requests_per_hour_preview', true));
  });
});
