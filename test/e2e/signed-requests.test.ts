import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { signRequest } from '../../src/keys/signing.js';
import { AUDIT_STREAM } from '../../src/store/keys.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { runCli } from '../helpers/cli.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { GatewayProcess } from '../../harness/gateway-process.js';
import { adminClient, type AdminClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const PATH = '/v1/chat/completions';
const BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello.' }],
  max_tokens: 16,
});

interface SigningKey {
  id: string;
  secret: string;
  signingSecret: string;
}

interface Signed {
  timestamp: string;
  nonce: string;
  signature: string;
}

function sign(signingSecret: string, options: { body?: string; ageS?: number; nonce?: string } = {}): Signed {
  const timestamp = String(Math.floor(Date.now() / 1000) - (options.ageS ?? 0));
  const nonce = options.nonce ?? randomBytes(16).toString('base64url');
  const signature = signRequest(signingSecret, {
    timestamp,
    nonce,
    method: 'POST',
    path: PATH,
    body: options.body ?? BODY,
  });
  return { timestamp, nonce, signature };
}

async function post(
  gateway: GatewayProcess,
  secret: string,
  signed: Signed | undefined,
  body = BODY,
): Promise<{ status: number; code: unknown }> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${secret}`,
    'content-type': 'application/json',
  };
  if (signed) {
    headers['x-quotad-timestamp'] = signed.timestamp;
    headers['x-quotad-nonce'] = signed.nonce;
    headers['x-quotad-signature'] = signed.signature;
  }
  const response = await fetch(`${gateway.url}${PATH}`, { method: 'POST', headers, body });
  const json = (await response.json()) as { error?: { code?: unknown } };
  return { status: response.status, code: json.error?.code ?? null };
}

describe('signed requests through two gateways on one authority on Redis', { timeout: 60_000 }, () => {
  const adminToken = randomBytes(16).toString('hex');
  const signingKey = randomBytes(32).toString('hex');
  let redis: TestRedisServer;
  let authority: AuthorityProcess;
  let upstream: FakeUpstream;
  let gateways: GatewayProcess[] = [];
  let admin: AdminClient;
  let orgs = 0;

  before(async () => {
    redis = await TestRedisServer.start();
    upstream = await FakeUpstream.start();
    authority = await AuthorityProcess.spawn({
      REDIS_URL: redis.url,
      QUOTAD_ADMIN_TOKEN: adminToken,
      QUOTAD_SIGNING_KEY: signingKey,
      LOG_LEVEL: 'info',
    });
    const env = {
      QUOTAD_AUTHORITY: authority.grpcAddress,
      OPENAI_BASE_URL: upstream.url,
      QUOTAD_AUTHORITY_TIMEOUT: '5s',
      LOG_LEVEL: 'info',
    };
    gateways = await Promise.all([GatewayProcess.spawn(env), GatewayProcess.spawn(env)]);
    await Promise.all([authority, ...gateways].map((child) => child.ready()));
    admin = adminClient(authority.grpcAddress, adminToken);
  });
  after(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop()));
    admin?.close();
    await authority?.stop();
    await upstream?.close();
    await redis?.stop();
  });

  async function createKey(signing: 'required' | 'optional'): Promise<SigningKey> {
    orgs += 1;
    const org = `signing-${orgs}`;
    const created = await admin.createKey({
      name: org,
      owner: 'e2e',
      org,
      tier: 'pro',
      expiresInMs: 0,
      signing,
    });
    return { id: created.key?.id ?? '', secret: created.secret, signingSecret: created.signingSecret };
  }

  /** Requests the key's one-minute rate has counted: what it was charged. */
  async function charged(key: SigningKey): Promise<number> {
    const usage = await admin.getKeyUsage({ id: key.id });
    return usage.usage?.limits.find((limit) => limit.name === 'requests_per_minute')?.used ?? -1;
  }

  test('a signed request passes, through either gateway, and is charged once', async () => {
    const key = await createKey('required');
    assert.match(key.signingSecret, /^qd_sign_[0-9a-f]{64}$/);
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    assert.deepEqual(
      [
        (await post(a, key.secret, sign(key.signingSecret))).status,
        (await post(b, key.secret, sign(key.signingSecret))).status,
      ],
      [200, 200],
    );
    assert.equal(await charged(key), 2);
  });

  test('missing, wrong, tampered-body, other-secret, stale and replayed requests get their codes and charge nothing', async () => {
    const key = await createKey('required');
    const other = await createKey('required');
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    const used = sign(key.signingSecret);
    assert.equal((await post(a, key.secret, used)).status, 200);
    const callsBefore = upstream.calls.length;
    const wrong = { ...sign(key.signingSecret), signature: `v1=${'0'.repeat(64)}` };
    const tampered = sign(key.signingSecret);
    const answers = [
      await post(a, key.secret, undefined),
      await post(b, key.secret, wrong),
      await post(a, key.secret, tampered, BODY.replace('Say hello.', 'Say hello!')),
      await post(b, key.secret, sign(other.signingSecret)),
      await post(a, key.secret, sign(key.signingSecret, { ageS: 301 })),
      await post(b, key.secret, used),
    ];
    assert.deepEqual(answers, [
      { status: 401, code: 'signature_required' },
      { status: 401, code: 'invalid_signature' },
      { status: 401, code: 'invalid_signature' },
      { status: 401, code: 'invalid_signature' },
      { status: 401, code: 'signature_expired' },
      { status: 401, code: 'replayed_request' },
    ]);
    assert.deepEqual([await charged(key), upstream.calls.length], [1, callsBefore]);
  });

  test('100 concurrent copies of one signed request, across both gateways, admit exactly one', async () => {
    const key = await createKey('required');
    const signed = sign(key.signingSecret);
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) => post(gateways[i % 2] as GatewayProcess, key.secret, signed)),
    );
    const statuses = answers.map((answer) => `${answer.status} ${String(answer.code)}`);
    assert.deepEqual(
      [
        statuses.filter((s) => s === '200 null').length,
        statuses.filter((s) => s === '401 replayed_request').length,
      ],
      [1, 99],
    );
    assert.equal(await charged(key), 1);
  });

  test('an optional key takes unsigned requests and verifies a signature when one is sent', async () => {
    const key = await createKey('optional');
    const [a] = gateways as [GatewayProcess];
    const wrong = { ...sign(key.signingSecret), signature: `v1=${'a'.repeat(64)}` };
    assert.deepEqual(
      [
        (await post(a, key.secret, undefined)).status,
        (await post(a, key.secret, sign(key.signingSecret))).status,
        (await post(a, key.secret, wrong)).code,
      ],
      [200, 200, 'invalid_signature'],
    );
  });

  test('a malformed signature header is refused before the body is read, naming the header', async () => {
    const key = await createKey('required');
    const [a] = gateways as [GatewayProcess];
    const answers = [
      await post(a, key.secret, { ...sign(key.signingSecret), nonce: 'short' }),
      await post(a, key.secret, { ...sign(key.signingSecret), timestamp: 'yesterday' }),
    ];
    assert.deepEqual(
      answers.map((answer) => answer.code),
      ['invalid_signature', 'invalid_signature'],
    );
    assert.equal(await charged(key), 0);
  });

  test("rotating the key rotates its signing secret with the same overlap: the old pair keeps working, the pairs don't mix", async () => {
    const key = await createKey('required');
    const rotated = await admin.rotateKey({ id: key.id, overlapMs: 60_000 });
    assert.notEqual(rotated.signingSecret, key.signingSecret);
    const [a] = gateways as [GatewayProcess];
    assert.deepEqual(
      [
        (await post(a, rotated.secret, sign(rotated.signingSecret))).status,
        (await post(a, key.secret, sign(key.signingSecret))).status,
        (await post(a, rotated.secret, sign(key.signingSecret))).code,
      ],
      [200, 200, 'invalid_signature'],
    );
  });

  test('quotad keys create --signing prints the signing secret once; keys signing changes the mode, audited without secrets', async () => {
    const env = { QUOTAD_ADMIN_TOKEN: adminToken, QUOTAD_AUTHORITY: authority.grpcAddress };
    const created = await runCli(
      [
        'keys',
        'create',
        '--name',
        'cli',
        '--owner',
        'o',
        '--org',
        'signing-cli',
        '--tier',
        'pro',
        '--signing',
        'required',
        '--json',
      ],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    const { key, signingSecret } = JSON.parse(created.stdout) as {
      key: { id: string; signing: string };
      signingSecret: string;
    };
    assert.deepEqual([key.signing, /^qd_sign_[0-9a-f]{64}$/.test(signingSecret)], ['required', true]);
    const optional = await runCli(['keys', 'signing', key.id, 'optional', '--json'], env);
    const answer = JSON.parse(optional.stdout) as { key: { signing: string }; signingSecret: string };
    assert.deepEqual([answer.key.signing, answer.signingSecret], ['optional', '']);
    const bad = await runCli(['keys', 'signing', key.id, 'sometimes'], env);
    assert.equal(bad.code, 2);
    const { records } = await admin.listAuditRecords({ keyId: key.id, action: 'SetKeySigning' });
    assert.deepEqual(
      records.map((r) => [r.outcome, r.before?.signing, r.after?.signing]),
      [
        ['INVALID_ARGUMENT', undefined, undefined],
        ['OK', 'required', 'optional'],
      ],
    );
    const inspect = redis.client();
    const stream = JSON.stringify(await inspect.xrange(AUDIT_STREAM, '-', '+'));
    await inspect.quit();
    assert.ok(
      stream.includes('SetKeySigning') && !stream.includes('qd_sign_') && !stream.includes(signingSecret),
    );
  });

  test('no signing secret or API key appears in either process log', () => {
    const logs = JSON.stringify([authority.lines, ...gateways.map((gateway) => gateway.lines)]);
    assert.ok(
      !/qd_sign_[0-9a-f]{8}/.test(logs) && !/qd_live_[0-9A-Za-z]{8}/.test(logs) && !logs.includes(signingKey),
    );
  });
});
