import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { REFUSAL_TRAILER } from '../../src/api/trailers.js';
import { startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { makeCertificates, type TestCertificates } from '../helpers/certificates.js';
import { runCli } from '../helpers/cli.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

const AUTHORITY_TOKEN = 'authority-token-0123456789abcdef';
const ADMIN_TOKEN = 'admin-token-for-the-tls-test-0123';

const quiet = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

let upstream: FakeUpstream;
before(async () => {
  upstream = await FakeUpstream.start();
});
after(() => upstream.close());

const check = (subject: string, requestId = `${subject}-1`) => ({
  requestId,
  principal: { subject, org: 'access', tier: 'free' },
  model: 'gpt-4o-mini',
  inputTokens: 10,
  maxOutputTokens: 10,
});

/** Requests the principal made in the current minute, read through `client`. */
async function requestsOf(client: QuotaClient, subject: string): Promise<number> {
  const usage = await client.getUsage({ principal: { subject, org: 'access', tier: 'free' } });
  return usage.limits.find((limit) => limit.name === 'requests_per_minute')?.used ?? -1;
}

function chat(gateway: RunningGateway, secret: string): Promise<Response> {
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

async function issueKey(authority: RunningAuthority): Promise<string> {
  const { secret } = await authority.keys.create({
    name: 'access',
    owner: 'test',
    org: 'access',
    tier: 'free',
    expiresInMs: 0,
  });
  return secret;
}

describe('QUOTAD_AUTHORITY_TOKEN', () => {
  let authority: RunningAuthority;
  let address: string;
  before(async () => {
    authority = await startAuthority(inProcessServeConfig([], { QUOTAD_AUTHORITY_TOKEN: AUTHORITY_TOKEN }), {
      logDestination: quiet(),
    });
    address = `127.0.0.1:${authority.grpcPort}`;
  });
  after(() => authority.stop());

  test('a QuotaService call without the token, or with another, is UNAUTHENTICATED and charges nothing', async () => {
    const trusted = quotaClient(address, { token: AUTHORITY_TOKEN });
    const strangers = [quotaClient(address), quotaClient(address, { token: 'x'.repeat(32) })];
    try {
      for (const [i, stranger] of strangers.entries()) {
        await assert.rejects(stranger.checkQuota(check(`stranger-${i}`)), (error: grpc.ServiceError) => {
          assert.equal(error.code, grpc.status.UNAUTHENTICATED);
          assert.equal(error.metadata.get(REFUSAL_TRAILER)[0], 'AUTHORITY_TOKEN');
          return true;
        });
        await assert.rejects(stranger.checkQuotaBatch({ checks: [check(`stranger-${i}`, 'batch')] }), {
          code: grpc.status.UNAUTHENTICATED,
        });
        assert.equal(await requestsOf(trusted, `stranger-${i}`), 0);
      }
      assert.equal((await trusted.checkQuota(check('trusted'))).allowed, true);
      assert.equal(await requestsOf(trusted, 'trusted'), 1);
    } finally {
      for (const client of [trusted, ...strangers]) client.close();
    }
  });

  test('a gateway sends it; without it, the gateway answers 503, never a 401 blaming the caller', async (t) => {
    const secret = await issueKey(authority);
    const start = (env: NodeJS.ProcessEnv) =>
      startGateway(
        inProcessGatewayConfig(authority.grpcPort, upstream.url, ['--authority-timeout', '5s'], env),
        {
          logDestination: quiet(),
        },
      );
    const withToken = await start({ QUOTAD_AUTHORITY_TOKEN: AUTHORITY_TOKEN });
    const without = await start({});
    t.after(async () => {
      await withToken.stop();
      await without.stop();
    });
    assert.equal((await chat(withToken, secret)).status, 200);
    assert.equal((await chat(without, secret)).status, 503);
    const usage = await fetch(`${without.url}/v1/usage`, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(usage.status, 503);
  });

  test('a gateway whose token the authority refuses answers 503 even with --fail-mode open, and sends nothing upstream', async (t) => {
    // A JWT caller skips the key confirmation, so the check itself meets the refusal.
    const jwtSecret = 'access-test-jwt-secret-0123456789abcdef';
    const gateway = await startGateway(
      inProcessGatewayConfig(
        authority.grpcPort,
        upstream.url,
        ['--authority-timeout', '5s', '--fail-mode', 'open'],
        {
          QUOTAD_AUTHORITY_TOKEN: 'a-token-the-authority-never-issued',
          QUOTAD_JWT_SECRET: jwtSecret,
        },
      ),
      { logDestination: quiet() },
    );
    t.after(() => gateway.stop());
    const token = await new SignJWT({ org: 'access', tier: 'free' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('svc-open')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(jwtSecret));
    const callsBefore = upstream.calls.length;
    const answer = await chat(gateway, token);
    assert.equal(answer.status, 503);
    assert.equal(((await answer.json()) as { error: { code: string } }).error.code, 'quota_unavailable');
    assert.equal(upstream.calls.length, callsBefore);
  });
});

describe('TLS on the gRPC port', () => {
  let dir: string;
  let certs: TestCertificates;
  let authority: RunningAuthority;
  let address: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quotad-mtls-'));
    certs = await makeCertificates(dir);
    authority = await startAuthority(
      inProcessServeConfig(
        ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey, '--tls-client-ca', certs.ca],
        { QUOTAD_ADMIN_TOKEN: ADMIN_TOKEN },
      ),
      { logDestination: quiet() },
    );
    address = `127.0.0.1:${authority.grpcPort}`;
  });
  after(async () => {
    await authority.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const tlsClient = async (cert?: string, key?: string) =>
    quotaClient(address, {
      credentials: grpc.credentials.createSsl(
        await readFile(certs.ca),
        key === undefined ? null : await readFile(key),
        cert === undefined ? null : await readFile(cert),
      ),
    });

  test("with --tls-client-ca, a client without a certificate, or with a stranger CA's, is refused", async () => {
    const refused = [
      quotaClient(address),
      await tlsClient(),
      await tlsClient(certs.strangerCert, certs.strangerKey),
    ];
    const admitted = await tlsClient(certs.clientCert, certs.clientKey);
    try {
      for (const [i, client] of refused.entries()) {
        await assert.rejects(client.checkQuota(check(`no-cert-${i}`), 2_000), {
          code: grpc.status.UNAVAILABLE,
        });
      }
      assert.equal((await admitted.checkQuota(check('with-cert'))).allowed, true);
      for (const i of refused.keys()) assert.equal(await requestsOf(admitted, `no-cert-${i}`), 0);
    } finally {
      for (const client of [...refused, admitted]) client.close();
    }
  });

  test('a gateway and the admin CLI reach it with --authority-ca, --authority-cert and --authority-key', async (t) => {
    const tlsFlags = [
      '--authority-ca',
      certs.ca,
      '--authority-cert',
      certs.clientCert,
      '--authority-key',
      certs.clientKey,
    ];
    const gateway = await startGateway(
      inProcessGatewayConfig(
        authority.grpcPort,
        upstream.url,
        ['--authority-timeout', '5s', ...tlsFlags],
        {},
      ),
      {
        logDestination: quiet(),
      },
    );
    t.after(() => gateway.stop());
    assert.equal((await chat(gateway, await issueKey(authority))).status, 200);
    const listed = await runCli(['keys', 'list', '--json', '--authority', address, ...tlsFlags], {
      QUOTAD_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    assert.equal(listed.code, 0, listed.stderr);
    const withoutCert = await runCli(['keys', 'list', '--authority', address, '--authority-ca', certs.ca], {
      QUOTAD_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    assert.equal(withoutCert.code, 3, 'unreachable without a client certificate');
  });
});

describe('--memory-max-entries', () => {
  let authority: RunningAuthority;
  let quota: QuotaClient;
  before(async () => {
    // The shipped free tier has five limits: a principal's first request takes six entries.
    authority = await startAuthority(inProcessServeConfig(['--memory-max-entries', '30'], {}), {
      logDestination: quiet(),
    });
    quota = quotaClient(`127.0.0.1:${authority.grpcPort}`);
  });
  after(async () => {
    quota.close();
    await authority.stop();
  });

  test('past the bound a new principal is RESOURCE_EXHAUSTED and charges nothing, and no live counter is evicted', async () => {
    for (let i = 0; i < 5; i += 1) assert.equal((await quota.checkQuota(check(`held-${i}`))).allowed, true);
    await assert.rejects(quota.checkQuota(check('one-too-many')), (error: grpc.ServiceError) => {
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(error.details, /maximum of 30 entries/);
      return true;
    });
    assert.equal(await requestsOf(quota, 'one-too-many'), 0);
    for (let i = 0; i < 5; i += 1) assert.equal(await requestsOf(quota, `held-${i}`), 1);
    // Settling a reservation it holds needs no new entry, so it still lands.
    const settled = await quota.recordUsage({
      requestId: 'held-0-1',
      principal: check('held-0').principal,
      model: 'gpt-4o-mini',
      inputTokens: 10,
      outputTokens: 3,
      outcome: 'COMPLETED',
    });
    assert.equal(settled.status, 'SETTLED');
    const metrics = await (await fetch(`http://127.0.0.1:${authority.metricsPort}/metrics`)).text();
    assert.match(metrics, /^quotad_memory_store_full_total\{store="memory"\} 1$/m);
    assert.match(metrics, /^quotad_memory_store_entries\{store="memory"\} 30$/m);
  });
});
