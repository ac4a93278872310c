import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { GATEWAY_SETTINGS } from '../../src/main/gateway-config.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { runCli } from '../helpers/cli.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { GatewayProcess, postChat } from '../../harness/gateway-process.js';
import { adminClient, type AdminClient } from '../../harness/grpc-clients.js';

/** What a client got back from the gateway: status, headers and the parsed JSON body. */
interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

interface OpenAIErrorBody {
  error: { message: unknown; type: unknown; param: unknown; code: unknown };
}

describe('quotad gateway as a process', { timeout: 20_000 }, () => {
  const token = randomBytes(16).toString('hex');
  let authority: AuthorityProcess;
  let admin: AdminClient;
  let upstream: FakeUpstream;
  /** Two gateways sharing the authority, for the rate test. */
  let pair: GatewayProcess[] = [];
  /** A gateway of its own for the SIGTERM test, with a grace far below the default 30s. */
  let draining: GatewayProcess;
  /** Every gateway started, to stop in `after`. */
  const gateways: GatewayProcess[] = [];
  let orgs = 0;
  const secrets: string[] = [];

  /** A gateway in front of the shared authority and upstream. */
  async function spawnGateway(args: string[] = []): Promise<GatewayProcess> {
    const gateway = await GatewayProcess.spawn(
      {
        QUOTAD_AUTHORITY: authority.grpcAddress,
        OPENAI_BASE_URL: upstream.url,
        // The first check also connects; a loaded test machine must not turn that into a 503.
        QUOTAD_AUTHORITY_TIMEOUT: '2s',
        LOG_LEVEL: 'info',
      },
      args,
    );
    gateways.push(gateway);
    return gateway;
  }

  // Every process starts at once: a gateway connects to the authority when it first needs it.
  before(async () => {
    upstream = await FakeUpstream.start();
    authority = await AuthorityProcess.spawn({ QUOTAD_ADMIN_TOKEN: token, LOG_LEVEL: 'info' });
    pair = await Promise.all([spawnGateway(), spawnGateway()]);
    draining = await spawnGateway(['--shutdown-grace', '3s']);
    await Promise.all([authority, ...pair, draining].map((child) => child.ready()));
    admin = adminClient(authority.grpcAddress, token);
  });
  after(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop()));
    admin?.close();
    await authority?.stop();
    await upstream?.close();
  });

  /** A new free-tier key in an org of its own, so no test's counters touch another's. */
  async function createKey(): Promise<{ id: string; secret: string }> {
    orgs += 1;
    const org = `gateway-e2e-${orgs}`;
    const created = await admin.createKey({ name: org, owner: 'e2e', org, tier: 'free', expiresInMs: 0 });
    secrets.push(created.secret);
    return { id: created.key?.id ?? '', secret: created.secret };
  }

  async function chat(gateway: GatewayProcess, secret: string, requestId: string): Promise<Answer> {
    const response = await postChat(gateway.url, secret, requestId);
    return { status: response.status, headers: response.headers, body: (await response.json()) as unknown };
  }

  test('two gateway processes sharing one authority admit exactly 10 requests a minute for a free key; the 11th gets 429 with Retry-After', async () => {
    const key = await createKey();
    const callsBefore = upstream.calls.length;

    const answers: Answer[] = [];
    const requestIds: string[] = [];
    for (let n = 0; n < 11; n += 1) {
      requestIds.push(randomUUID());
      answers.push(await chat(pair[n % 2]!, key.secret, requestIds[n]!));
    }

    assert.deepEqual(
      answers.map((answer) => answer.status),
      [...Array<number>(10).fill(200), 429],
    );
    assert.deepEqual(
      answers.slice(0, 10).map((answer) => answer.headers.get('x-ratelimit-remaining-requests')),
      ['9', '8', '7', '6', '5', '4', '3', '2', '1', '0'],
    );
    assert.equal(upstream.calls.length - callsBefore, 10);

    // A sliding-window counter may make a client wait into the next window: at most two windows (2m).
    const denied = answers[10]!;
    const retryAfter = denied.headers.get('retry-after') ?? '';
    assert.match(retryAfter, /^\d+$/);
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 120, `retry-after ${retryAfter}`);
    const retryAfterMs = denied.headers.get('retry-after-ms') ?? '';
    assert.match(retryAfterMs, /^\d+$/);
    assert.equal(Number(retryAfter), Math.max(1, Math.ceil(Number(retryAfterMs) / 1000)));
    const { error } = denied.body as OpenAIErrorBody;
    assert.equal(typeof error.message, 'string');
    assert.equal(typeof error.type, 'string');
    assert.equal(error.param, null);
    assert.equal(error.code, 'rate_limit_exceeded');

    // Each gateway logged the requests sent to it, under this key, with the status the client saw.
    await Promise.all(
      answers.map(async (answer, n) => {
        const line = await pair[n % 2]!.waitForLog('request', (l) => l.requestId === requestIds[n]);
        assert.equal(line.keyId, key.id);
        assert.equal(line.status, answer.status);
      }),
    );
  });

  test('SIGTERM lets in-flight requests finish and the gateway exits 0', async (t) => {
    const key = await createKey();
    const release = upstream.hold();
    t.after(release);
    const callsBefore = upstream.calls.length;

    const arrived = upstream.nextCall();
    const inFlight = chat(draining, key.secret, randomUUID());
    await arrived;
    draining.child.kill('SIGTERM');
    await draining.waitForLog('shutting down');
    release();

    const answer = await inFlight;
    assert.equal(answer.status, 200);
    assert.equal(await draining.exitCode(), 0);
    assert.equal(upstream.calls.length - callsBefore, 1);
    // It exited because the request finished (the client keeps its connection alive, as SDKs do), not
    // because the grace period ran out.
    assert.deepEqual(
      draining.lines.filter((line) => line.level === 'warn').map((line) => line.msg),
      [],
    );
  });

  test('a bad setting exits 2 naming it', async () => {
    const gateway = await spawnGateway(['--fail-mode', 'sideways']);
    assert.equal(await gateway.exitCode(), 2);
    assert.match(gateway.stderr, /^quotad: --fail-mode .*sideways/);
    assert.ok(!gateway.lines.some((line) => line.msg === 'quotad gateway serving'));
  });

  test('quotad gateway --help lists every setting', async () => {
    const run = await runCli(['gateway', '--help']);
    assert.equal(run.code, 0, run.stderr);
    for (const setting of Object.values(GATEWAY_SETTINGS)) {
      assert.match(run.stdout, new RegExp(`^\\s+--${setting.flag} <value>, ${setting.env}\\b`, 'm'));
    }
  });

  test("no process's output holds a key it served", () => {
    assert.ok(secrets.length >= 2);
    for (const child of [authority, ...gateways]) {
      const output = JSON.stringify(child.lines) + child.stderr;
      for (const secret of secrets) assert.ok(!output.includes(secret));
    }
  });
});
