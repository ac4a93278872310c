import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { connectAuthority } from '../../src/gateway/authority-client.js';
import { Settler } from '../../src/gateway/settlement.js';
import { sha256 } from '../../src/keys/api-key.js';
import { startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { GatewayMetrics } from '../../src/telemetry/gateway-metrics.js';
import { eventually } from '../../harness/eventually.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

const lines: string[] = [];
let redis: TestRedisServer;
let authority: RunningAuthority;
let upstream: FakeUpstream;
let gateway: RunningGateway;
let quota: QuotaClient;

function capture(): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
}

const logged = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);

before(async () => {
  redis = await TestRedisServer.start();
  upstream = await FakeUpstream.start();
  authority = await startAuthority(
    inProcessServeConfig([], { REDIS_URL: redis.url, QUOTAD_REDIS_TIMEOUT: '100ms' }),
    { logDestination: capture() },
  );
  gateway = await startGateway(
    inProcessGatewayConfig(authority.grpcPort, upstream.url, ['--authority-timeout', '2s'], {}),
    { logDestination: capture(), settlementBackoffMs: [20, 40] },
  );
  quota = quotaClient(`127.0.0.1:${authority.grpcPort}`);
});

after(async () => {
  redis.thaw();
  quota.close();
  await gateway.stop();
  await authority.stop();
  await upstream.close();
  await redis.stop();
});

test('settlements that time out on a stalled Redis are logged as of unknown outcome, and are recorded once Redis resumes', async () => {
  const { secret } = await authority.keys.create({
    name: 'stalled settlement',
    owner: 'test',
    org: 'stalled',
    tier: 'pro',
    expiresInMs: 0,
  });
  const release = upstream.hold();
  const answer = fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 5,
    }),
  });
  await upstream.nextCall();
  redis.freeze();
  release();
  const response = await answer;
  assert.equal(response.status, 200);
  const { usage } = (await response.json()) as { usage: { total_tokens: number } };
  await gateway.settler.drain();
  redis.thaw();
  const recorded = await eventually(
    async () => {
      const now = await quota.getUsage({ apiKeySha256: sha256(secret) }).catch(() => undefined);
      return now && now.tokensUsed === usage.total_tokens ? now.tokensUsed : undefined;
    },
    () => 'the settlement sent while Redis was stalled never landed',
  );
  assert.equal(recorded, usage.total_tokens, 'recorded once, though three attempts reached Redis');

  assert.deepEqual(
    logged().filter((line) => String(line.msg).includes('not recorded')),
    [],
    'no line claims a loss that did not happen',
  );
  const unknown = logged().filter((line) => String(line.msg).startsWith('settlement outcome unknown'));
  assert.equal(unknown.length, 1);
  assert.equal(unknown[0]?.attempts, 3);
  const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
  assert.match(metrics, /^quotad_gateway_settlements_total\{result="unknown"\} 1$/m);
  assert.match(metrics, /^quotad_gateway_settlements_total\{result="failed"\} 0$/m);
});

test('a settlement the authority refuses is logged as not recorded, and counted as failed', async () => {
  const metrics = new GatewayMetrics({ version: 'test', collectDefault: false });
  const refusedLines: string[] = [];
  const logger = createLogger({
    level: 'info',
    name: 'settler-test',
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        refusedLines.push(chunk.toString());
        done();
      },
    }),
  });
  const client = connectAuthority(`127.0.0.1:${authority.grpcPort}`);
  const settler = new Settler({
    authority: client,
    metrics,
    logger,
    attemptTimeoutMs: 2_000,
    backoffMs: [10],
  });
  settler.settle(
    {
      requestId: 'never-issued-key',
      apiKeySha256: sha256('qd_live_not-a-key-anyone-was-given'),
      model: 'gpt-4o-mini',
      inputTokens: 10,
      outputTokens: 5,
      outcome: 'COMPLETED',
    },
    { metricModel: 'gpt-4o-mini' },
  );
  await settler.drain();
  client.close();
  assert.equal(refusedLines.length, 1);
  const line = JSON.parse(refusedLines[0] as string) as Record<string, unknown>;
  assert.equal(line.msg, 'settlement refused by the authority: this usage is not recorded');
  assert.equal(line.attempts, 1);
  const text = await metrics.registry.metrics();
  assert.match(text, /^quotad_gateway_settlements_total\{result="failed"\} 1$/m);
});
