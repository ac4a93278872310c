import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { checkApiKey } from '../../src/keys/api-key.js';
import { startAuthority } from '../../src/main/serve.js';
import { quotaClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

let redis: TestRedisServer;
before(async () => {
  redis = await TestRedisServer.start();
});
after(() => redis.stop());

/** Starts an authority with --demo-key on; returns what it printed on the banner and in its logs. */
async function startWithDemoKey(env: Record<string, string>) {
  let banner = '';
  const logs: string[] = [];
  const config = inProcessServeConfig(['--demo-key', 'on'], env);
  const running = await startAuthority(config, {
    bannerOutput: { write: (text: string) => (banner += text) },
    logDestination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(chunk.toString());
        done();
      },
    }),
  });
  return { running, banner, logs: logs.join('') };
}

test('a first run prints one demo key, marked as such, that works at once and is never logged', async (t) => {
  const { running, banner, logs } = await startWithDemoKey({});
  t.after(() => running.stop());
  const secret = /qd_demo_[0-9A-Za-z]{38}/.exec(banner)?.[0] as string;
  assert.match(banner, /DEMO API key/);
  assert.ok(banner.includes(`export DEMO_KEY=${secret}\n`));
  assert.ok(
    banner.includes(`curl -i http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $DEMO_KEY"`),
  );
  assert.match(banner, /in-process store forgets every key/);
  const checked = checkApiKey(secret);
  assert.ok(checked.ok);
  const client = quotaClient(`127.0.0.1:${running.grpcPort}`);
  t.after(() => client.close());
  const answer = await client.checkQuota({
    requestId: 'demo-1',
    apiKeySha256: checked.sha256,
    model: 'gpt-4o-mini',
    inputTokens: 10,
    maxOutputTokens: 10,
  });
  assert.equal(answer.code, 'OK');
  assert.equal(answer.key?.tier, 'free');
  assert.ok(!logs.includes(secret.slice(8)), 'the demo secret is in the logs');
  assert.match(logs, /DEMO API key created/);
});

test('a store that already holds keys gets no demo key', async () => {
  const env = { REDIS_URL: redis.url };
  const first = await startWithDemoKey(env);
  await first.running.stop();
  const second = await startWithDemoKey(env);
  await second.running.stop();
  assert.match(first.banner, /qd_demo_/);
  assert.equal(second.banner, '');
  assert.match(second.logs, /demo key not created: the store already holds API keys/);
});
