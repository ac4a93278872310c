import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { CreateKeyResponse__Output } from '../../src/gen/quotad/v1/CreateKeyResponse.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { eventually } from '../../harness/eventually.js';
import { GatewayProcess, postChat } from '../../harness/gateway-process.js';
import { runCli } from '../helpers/cli.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';

/** A Redis topology a test file starts once, and how `quotad serve` reaches it. */
export interface Topology {
  /** The environment that points `quotad serve` at it (QUOTAD_REDIS_CLUSTER, or the sentinels and name). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * The whole product on one topology, each part a real process: `quotad serve` on it, the admin CLI
 * creating and revoking a key, and `quotad gateway` serving a request with that key (the upstream faked).
 */
export function endToEndOn(mode: string, startTopology: () => Promise<Topology>): void {
  const token = randomBytes(16).toString('hex');
  let topology: Topology;
  let upstream: FakeUpstream;
  let authority: AuthorityProcess;
  let gateway: GatewayProcess;

  before(async () => {
    [topology, upstream] = await Promise.all([startTopology(), FakeUpstream.start()]);
    authority = await AuthorityProcess.spawn({
      ...topology.env,
      QUOTAD_ADMIN_TOKEN: token,
      LOG_LEVEL: 'info',
    });
    gateway = await GatewayProcess.spawn({
      QUOTAD_AUTHORITY: authority.grpcAddress,
      OPENAI_BASE_URL: upstream.url,
      QUOTAD_AUTHORITY_TIMEOUT: '2s',
      LOG_LEVEL: 'info',
    });
    await Promise.all([authority.ready(), gateway.ready()]);
  });
  after(async () => {
    await gateway?.stop();
    await authority?.stop();
    await upstream?.close();
    await topology?.stop();
  });

  const cli = (args: string[]) =>
    runCli([...args, '--authority', authority.grpcAddress], { QUOTAD_ADMIN_TOKEN: token });

  test(`on ${mode}: quotad serve, a key created and revoked with the CLI, and quotad gateway serving with it`, async () => {
    const store = await authority.waitForLog('quotad authority serving');
    assert.equal(store.store, 'redis');
    await authority.waitForLog('redis ready', (line) => line.mode === mode);

    const org = `e2e-${mode}`;
    const created = await cli([
      'keys',
      'create',
      '--name',
      org,
      '--owner',
      'e2e',
      '--org',
      org,
      '--tier',
      'free',
      '--json',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const { key, secret } = JSON.parse(created.stdout) as CreateKeyResponse__Output;
    const id = key?.id ?? '';

    const served = await postChat(gateway.url, secret, `${mode}-1`);
    assert.equal(served.status, 200, await served.clone().text());
    const body = (await served.json()) as { choices?: unknown[] };
    assert.ok((body.choices ?? []).length > 0, 'the upstream answered through the gateway');

    const revoked = await cli(['keys', 'revoke', id]);
    assert.equal(revoked.code, 0, revoked.stderr);
    let attempt = 1;
    const refused = await eventually(
      async () => {
        const response = await postChat(gateway.url, secret, `${mode}-${++attempt}`);
        return response.status === 200 ? undefined : response;
      },
      () => 'the revoked key was still served',
    );
    assert.equal(refused.status, 403);
  });
}
