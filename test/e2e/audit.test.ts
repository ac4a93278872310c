import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AuditRecord__Output } from '../../src/gen/quotad/v1/AuditRecord.js';
import { AUDIT_STREAM } from '../../src/store/keys.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { runCli } from '../helpers/cli.js';
import { eventually } from '../../harness/eventually.js';
import { adminClient, type AdminClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';

const hex = (token: string) => createHash('sha256').update(token).digest('hex');

describe('named admin tokens and the audit trail, on Redis', { timeout: 40_000 }, () => {
  const envToken = randomBytes(16).toString('hex');
  const alice = randomBytes(16).toString('hex');
  const bob = randomBytes(16).toString('hex');
  const auditor = randomBytes(16).toString('hex');
  const carol = randomBytes(16).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'quotad-audit-'));
  const tokensFile = join(dir, 'admin-tokens.yaml');
  let redis: TestRedisServer;
  let authority: AuthorityProcess;
  const clients: AdminClient[] = [];
  const secrets: string[] = [];

  function writeTokens(entries: [string, string, string][]): void {
    const lines = entries.map(
      ([name, role, token]) => `  - { name: ${name}, role: ${role}, sha256: ${hex(token)} }`,
    );
    writeFileSync(tokensFile, `tokens:\n${lines.join('\n')}\n`);
  }

  function client(token: string): AdminClient {
    const made = adminClient(authority.grpcAddress, token);
    clients.push(made);
    return made;
  }

  before(async () => {
    redis = await TestRedisServer.start();
    writeTokens([
      ['alice', 'admin', alice],
      ['bob', 'admin', bob],
      ['auditor', 'read-only', auditor],
    ]);
    authority = await AuthorityProcess.spawn({
      REDIS_URL: redis.url,
      QUOTAD_ADMIN_TOKEN: envToken,
      QUOTAD_ADMIN_TOKENS_FILE: tokensFile,
      LOG_LEVEL: 'debug',
    });
    await authority.ready();
  });
  after(async () => {
    for (const each of clients) each.close();
    await authority?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function trail(keyId: string): Promise<AuditRecord__Output[]> {
    const { records } = await client(auditor).listAuditRecords({ keyId, pageSize: 100 });
    return [...records].reverse();
  }

  test('create, rotate, limits and revoke by two named tokens are each recorded once, with actor, change and peer', async () => {
    const created = await client(alice).createKey({
      name: 'ci',
      owner: 'o',
      org: 'audit-1',
      tier: 'pro',
      expiresInMs: 0,
    });
    const id = created.key?.id ?? '';
    const rotated = await client(bob).rotateKey({ id, overlapMs: 60_000 });
    await client(alice).setKeyLimits({ id, set: [{ name: 'rpm', value: '100' }], unset: [] });
    await client(bob).revokeKey({ id });
    secrets.push(created.secret, rotated.secret);
    const records = await trail(id);
    assert.deepEqual(
      records.map((r) => [r.actor, r.action, r.keyId, r.outcome]),
      [
        ['alice', 'CreateKey', id, 'OK'],
        ['bob', 'RotateKey', id, 'OK'],
        ['alice', 'SetKeyLimits', id, 'OK'],
        ['bob', 'RevokeKey', id, 'OK'],
      ],
    );
    const [create, rotate, limits, revoke] = records as AuditRecord__Output[];
    assert.deepEqual(
      [
        create?.before,
        rotate?.before?.secrets,
        rotate?.after?.secrets,
        limits?.before?.limits,
        limits?.after?.limits,
      ],
      [null, 1, 2, [], [{ name: 'requests_per_minute', value: '100' }]],
    );
    assert.deepEqual([revoke?.before?.state, revoke?.after?.state], ['ACTIVE', 'REVOKED']);
    assert.ok(records.every((r) => r.peer.includes('127.0.0.1') && r.timeMs > 0));
  });

  test('a read-only token may list and show but is refused on create, and the refusal is recorded', async () => {
    const listed = await client(auditor).listKeys({ pageSize: 10 });
    assert.ok(Array.isArray(listed.keys));
    await assert.rejects(
      client(auditor).createKey({ name: 'x', owner: 'o', org: 'audit-2', tier: 'pro', expiresInMs: 0 }),
      (error: grpc.ServiceError) => error.code === grpc.status.PERMISSION_DENIED,
    );
    const { records } = await client(alice).listAuditRecords({ actor: 'auditor', action: 'CreateKey' });
    assert.deepEqual(
      records.map((r) => [r.actor, r.action, r.outcome, r.after]),
      [['auditor', 'CreateKey', 'PERMISSION_DENIED', null]],
    );
    assert.equal((await client(auditor).listKeys({ org: 'audit-2', pageSize: 10 })).keys.length, 0);
  });

  test('an unknown token is refused and recorded with no actor; QUOTAD_ADMIN_TOKEN acts as admin', async () => {
    await assert.rejects(
      client(randomBytes(16).toString('hex')).revokeKey({ id: 'key_0000000000000000000' }),
      (error: grpc.ServiceError) => error.code === grpc.status.UNAUTHENTICATED,
    );
    const created = await client(envToken).createKey({
      name: 'e',
      owner: 'o',
      org: 'audit-3',
      tier: 'pro',
      expiresInMs: 0,
    });
    secrets.push(created.secret);
    const refused = await client(envToken).listAuditRecords({ action: 'RevokeKey', pageSize: 1 });
    assert.deepEqual(
      refused.records.map((r) => [r.actor, r.keyId, r.outcome]),
      [['', 'key_0000000000000000000', 'UNAUTHENTICATED']],
    );
    assert.deepEqual(
      (await trail(created.key?.id ?? '')).map((r) => r.actor),
      ['admin'],
    );
  });

  test('the tokens file is re-read on change: a new token works, a removed one is refused', async () => {
    writeTokens([
      ['alice', 'admin', alice],
      ['carol', 'admin', carol],
      ['auditor', 'read-only', auditor],
    ]);
    await eventually(
      () =>
        client(carol)
          .listKeys({ pageSize: 1 })
          .then(
            () => true,
            () => undefined,
          ),
      () => 'carol was never accepted',
    );
    await assert.rejects(
      client(bob).listKeys({ pageSize: 1 }),
      (error: grpc.ServiceError) => error.code === grpc.status.UNAUTHENTICATED,
    );
  });

  test('quotad audit prints the trail as a table and as JSON, filtered by key, actor, action and since', async () => {
    const created = await client(alice).createKey({
      name: 'cli',
      owner: 'o',
      org: 'audit-4',
      tier: 'pro',
      expiresInMs: 0,
    });
    const id = created.key?.id ?? '';
    secrets.push(created.secret);
    await client(alice).setKeyLimits({ id, set: [{ name: 'tpm', value: '5000' }], unset: [] });
    const env = { QUOTAD_ADMIN_TOKEN: auditor, QUOTAD_AUTHORITY: authority.grpcAddress };
    const json = await runCli(
      ['audit', '--key', id, '--actor', 'alice', '--action', 'SetKeyLimits', '--since', '1h', '--json'],
      env,
    );
    assert.equal(json.code, 0, json.stderr);
    const { records } = JSON.parse(json.stdout) as { records: AuditRecord__Output[] };
    assert.deepEqual(
      records.map((r) => [r.actor, r.action, r.keyId]),
      [['alice', 'SetKeyLimits', id]],
    );
    const text = await runCli(['audit', '--key', id], env);
    const lines = text.stdout.trim().split('\n');
    assert.deepEqual(
      [
        lines[0]?.split(/\s+/).slice(0, 5),
        lines.length,
        lines[1]?.includes('SetKeyLimits'),
        lines[2]?.includes('CreateKey'),
      ],
      [['TIME', 'ACTOR', 'ACTION', 'KEY', 'OUTCOME'], 3, true, true],
    );
  });

  test('no token, key secret or hash of either is in the audit stream or the logs', async () => {
    const inspect = redis.client();
    const stream = JSON.stringify(await inspect.xrange(AUDIT_STREAM, '-', '+'));
    await inspect.quit();
    const logs = JSON.stringify(authority.lines) + authority.stderr;
    assert.ok(stream.includes('alice') && stream.includes('RotateKey'), 'the stream holds the trail');
    const forbidden = [envToken, alice, bob, auditor, carol, ...secrets];
    const leaks = forbidden
      .flatMap((value) => [value, hex(value)])
      .filter((value) => stream.includes(value) || logs.includes(value));
    assert.deepEqual(leaks, []);
  });
});
