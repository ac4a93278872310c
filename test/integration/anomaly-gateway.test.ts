import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

const UPSTREAM_KEY = 'sk-upstream-anomaly-test-0000';
const MINUTE = 60_000;

const POLICY = `
version: 1
models:
  gpt-4o-mini: { input_per_million: '0.15', output_per_million: '0.60' }
tiers:
  guarded:
    max_output_tokens: 50
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 100000, window: 1m }
alerts:
  budget_thresholds: []
  anomaly:
    factor: 5
    interval: 1m
    half_life: 10m
    min_history: 10m
    min_requests: 10
    cooldown: 15m
    action: { guarded: block }
`;

const silent = () => new Writable({ write: (_chunk, _encoding, done) => done() });
let dir: string;
let clock: ManualClock;
let authority: RunningAuthority;
let upstream: FakeUpstream;
let gateway: RunningGateway;
let secret: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quotad-anomaly-'));
  await writeFile(join(dir, 'policy.yaml'), POLICY);
  clock = new ManualClock(Date.UTC(2026, 5, 1, 9));
  upstream = await FakeUpstream.start({ apiKey: UPSTREAM_KEY });
  authority = await startAuthority(inProcessServeConfig(['--policy', join(dir, 'policy.yaml')], {}), {
    clock,
    logDestination: silent(),
  });
  gateway = await startGateway(
    inProcessGatewayConfig(authority.grpcPort, upstream.url, ['--authority-timeout', '5s'], {
      OPENAI_API_KEY: UPSTREAM_KEY,
    }),
    { logDestination: silent() },
  );
  ({ secret } = await authority.keys.create({
    name: 'anomaly',
    owner: 'test',
    org: 'anomaly-org',
    tier: 'guarded',
    expiresInMs: 0,
  }));
});

after(async () => {
  await gateway.stop();
  await authority.stop();
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

function chat(): Promise<Response> {
  return fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    }),
  });
}

test('a blocked anomaly is a 429 at the gateway, naming it, with Retry-After up to the cool-down', async () => {
  // Two requests a minute for 12 minutes, then 30 in half a minute.
  for (let i = 0; i < 24; i++) {
    assert.equal((await chat()).status, 200);
    clock.advance(MINUTE / 2);
  }
  let refused: Response | undefined;
  for (let i = 0; i < 30 && !refused; i++) {
    const response = await chat();
    if (response.status !== 200) refused = response;
    else await response.arrayBuffer();
    clock.advance(1_000);
  }
  assert.ok(refused, 'the spike was never refused');
  const body = (await refused.json()) as { error: { message: string } };
  const retryAfter = Number(refused.headers.get('retry-after'));
  assert.deepEqual(
    {
      status: refused.status,
      names: /usage anomaly/.test(body.error.message),
      retryAfter: retryAfter > 0 && retryAfter <= 15 * 60 * 1.5,
    },
    { status: 429, names: true, retryAfter: true },
  );
});
