import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

/** Not shaped like an OpenAI key: only knowing it as the configured secret can catch it. */
const UPSTREAM_KEY = 'upstream-credential-9f8e7d6c5b4a3928';

const lines: string[] = [];
let authority: RunningAuthority;
let upstream: FakeUpstream;
let gateway: RunningGateway;
let secret: string;

function capture(): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
}

before(async () => {
  upstream = await FakeUpstream.start({ apiKey: UPSTREAM_KEY });
  authority = await startAuthority(inProcessServeConfig([], {}), { logDestination: capture() });
  gateway = await startGateway(
    inProcessGatewayConfig(
      authority.grpcPort,
      upstream.url,
      ['--log-level', 'debug', '--authority-timeout', '5s'],
      {
        OPENAI_API_KEY: UPSTREAM_KEY,
      },
    ),
    { logDestination: capture() },
  );
  ({ secret } = await authority.keys.create({
    name: 'upstream secrets',
    owner: 'test',
    org: 'secrets',
    tier: 'pro',
    expiresInMs: 0,
  }));
});

after(async () => {
  await gateway.stop();
  await authority.stop();
  await upstream.close();
});

function chat(): Promise<Response> {
  return fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 5,
    }),
  });
}

test("an upstream 5xx echoing the gateway's upstream key leaves no trace of it in the logs", async () => {
  upstream.failNext(500, 1, { message: `Incorrect API key provided: ${UPSTREAM_KEY}.` });
  const response = await chat();
  assert.equal(response.status, 502);
  const logged = lines.find((line) => line.includes('"upstream failed"'));
  assert.ok(logged, 'the failure is logged');
  assert.match(logged, /Incorrect API key provided: \[redacted\]/);
  for (const line of lines) assert.ok(!line.includes(UPSTREAM_KEY), `a log line holds the key: ${line}`);
});

test('an upstream 4xx echoing the key is passed on to the client without it', async () => {
  upstream.failNext(400, 1, { message: `Key ${UPSTREAM_KEY} may not use this model.` });
  const response = await chat();
  assert.equal(response.status, 400);
  const body = await response.text();
  assert.ok(!body.includes(UPSTREAM_KEY), body);
  assert.match(body, /Key \[redacted\] may not use this model/);
  for (const line of lines) assert.ok(!line.includes(UPSTREAM_KEY), `a log line holds the key: ${line}`);
});
