import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { sha256 } from '../../src/keys/api-key.js';
import { startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

const JWT_SECRET = 'namespaces-test-jwt-secret-0123456789abcdef';

let authority: RunningAuthority;
let upstream: FakeUpstream;
let gateway: RunningGateway;
let quota: QuotaClient;
let key: { id: string; secret: string; org: string };

const quiet = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

before(async () => {
  upstream = await FakeUpstream.start();
  authority = await startAuthority(inProcessServeConfig([], {}), { logDestination: quiet() });
  gateway = await startGateway(
    inProcessGatewayConfig(authority.grpcPort, upstream.url, ['--authority-timeout', '5s'], {
      QUOTAD_JWT_SECRET: JWT_SECRET,
    }),
    { logDestination: quiet() },
  );
  quota = quotaClient(`127.0.0.1:${authority.grpcPort}`);
  const { record, secret } = await authority.keys.create({
    name: 'namespaces',
    owner: 'test',
    org: 'acme',
    tier: 'free',
    expiresInMs: 0,
  });
  key = { id: record.id, secret, org: record.org };
});

after(async () => {
  quota.close();
  await gateway.stop();
  await authority.stop();
  await upstream.close();
});

/** The key's requests in the current minute, as the authority counts them. */
async function keyRequests(): Promise<number> {
  const usage = await quota.getUsage({ apiKeySha256: sha256(key.secret) });
  return usage.limits.find((limit) => limit.name === 'requests_per_minute')?.used ?? -1;
}

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 20 };

test("a JWT naming an API key's id as its sub is refused and charges nothing to the key", async () => {
  const token = await new SignJWT({ org: key.org, tier: 'free' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(key.id)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(JWT_SECRET));
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(chat),
  });
  assert.equal(response.status, 401);
  assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'invalid_token');
  assert.equal(await keyRequests(), 0);
});

test("a QuotaService principal naming an API key's id is INVALID_ARGUMENT and charges nothing", async () => {
  const principal = { subject: key.id, org: key.org, tier: 'free' };
  const calls = [
    () =>
      quota.checkQuota({
        requestId: 'borrowed-1',
        principal,
        model: 'gpt-4o-mini',
        inputTokens: 10,
        maxOutputTokens: 10,
      }),
    () =>
      quota.recordUsage({
        requestId: 'borrowed-2',
        principal,
        model: 'gpt-4o-mini',
        inputTokens: 10,
        outputTokens: 10,
        outcome: 'COMPLETED',
      }),
  ];
  for (const call of calls) {
    await assert.rejects(call(), (error: grpc.ServiceError) => {
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.match(error.details, /^principal\.subject: must not start with 'key_'/);
      return true;
    });
  }
  assert.equal(await keyRequests(), 0);
});

test('the key itself is still decided and charged as its id', async () => {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
    body: JSON.stringify(chat),
  });
  assert.equal(response.status, 200);
  await gateway.settler.drain();
  assert.equal(await keyRequests(), 1);
});
