import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ApiKey__Output } from '../../src/gen/quotad/v1/ApiKey.js';
import type { CheckQuotaResponse__Output } from '../../src/gen/quotad/v1/CheckQuotaResponse.js';
import type { CreateKeyResponse__Output } from '../../src/gen/quotad/v1/CreateKeyResponse.js';
import type { RotateKeyResponse__Output } from '../../src/gen/quotad/v1/RotateKeyResponse.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { runCli, type CliRun } from '../helpers/cli.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { freePort } from '../../harness/redis-server.js';

/** Any full secret, whichever key it belongs to (hints are the prefix and a few characters only). */
const ANY_SECRET = /qd_live_[0-9A-Za-z]{38}/;

describe('quotad keys against a running authority', () => {
  const token = randomBytes(16).toString('hex');
  /** Every secret the tests were handed, to look for in places they must never be. */
  const secrets: string[] = [];
  let quotad: AuthorityProcess;
  let quota: QuotaClient;
  let orgs = 0;

  before(async () => {
    quotad = await AuthorityProcess.spawn({ QUOTAD_ADMIN_TOKEN: token, LOG_LEVEL: 'info' });
    await quotad.ready();
    quota = quotaClient(quotad.grpcAddress);
  });
  after(async () => {
    quota?.close();
    await quotad?.stop();
  });

  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliRun> =>
    runCli(args, { QUOTAD_AUTHORITY: quotad.grpcAddress, QUOTAD_ADMIN_TOKEN: token, ...env });

  /** A new free-tier key in an org of its own, so no test's counters touch another's. */
  async function createKey(): Promise<{ id: string; secret: string }> {
    orgs += 1;
    const org = `e2e-${orgs}`;
    const run = await cli([
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
    assert.equal(run.code, 0, run.stderr);
    const created = JSON.parse(run.stdout) as CreateKeyResponse__Output;
    secrets.push(created.secret);
    return { id: created.key?.id ?? '', secret: created.secret };
  }

  async function listedKeys(): Promise<ApiKey__Output[]> {
    const run = await cli(['keys', 'list', '--json']);
    assert.equal(run.code, 0, run.stderr);
    return (JSON.parse(run.stdout) as { keys: ApiKey__Output[] }).keys;
  }

  /** A small free-tier request made, as a gateway would, with the SHA-256 of the secret. */
  const check = (secret: string): Promise<CheckQuotaResponse__Output> =>
    quota.checkQuota({
      requestId: randomUUID(),
      apiKeySha256: createHash('sha256').update(secret, 'utf8').digest(),
      model: 'gpt-4o-mini',
      inputTokens: 10,
      maxOutputTokens: 10,
    });

  test('a created key is allowed by CheckQuota until keys revoke, then refused as KEY_REVOKED', async () => {
    const { id, secret } = await createKey();
    const first = await check(secret);
    assert.equal(first.allowed, true, first.code);
    assert.equal(first.key?.id, id);

    const revoked = await cli(['keys', 'revoke', id]);
    assert.equal(revoked.code, 0, revoked.stderr);

    const second = await check(secret);
    assert.equal(second.code, 'KEY_REVOKED');
    assert.equal(second.allowed, false);
  });

  test('keys list --json includes a created key, and neither list nor show prints a secret', async () => {
    const { id, secret } = await createKey();
    assert.ok((await listedKeys()).some((key) => key.id === id));

    const outputs = await Promise.all([
      cli(['keys', 'list']),
      cli(['keys', 'list', '--json']),
      cli(['keys', 'show', id]),
      cli(['keys', 'show', id, '--json']),
    ]);
    for (const run of outputs) {
      assert.equal(run.code, 0, run.stderr);
      assert.ok(run.stdout.includes(id));
      assert.ok(!run.stdout.includes(secret));
      assert.doesNotMatch(run.stdout, ANY_SECRET);
    }
  });

  test('a wrong admin token exits 4, names QUOTAD_ADMIN_TOKEN and creates nothing', async () => {
    const before = (await listedKeys()).length;
    const run = await cli(
      ['keys', 'create', '--name', 'intruder', '--owner', 'x', '--org', 'x', '--tier', 'free'],
      { QUOTAD_ADMIN_TOKEN: randomBytes(16).toString('hex') },
    );
    assert.equal(run.code, 4);
    assert.match(run.stderr, /^quotad: .*QUOTAD_ADMIN_TOKEN/);
    assert.equal(run.stdout, '');
    assert.equal((await listedKeys()).length, before);
  });

  test('an address with nothing listening exits 3 within the timeout, naming it and QUOTAD_AUTHORITY', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const started = performance.now();
    const run = await cli(['keys', 'list', '--timeout', '1s'], { QUOTAD_AUTHORITY: address });
    assert.equal(run.code, 3, run.stderr);
    assert.ok(performance.now() - started < 5_000, 'answered within the timeout and process start-up');
    assert.ok(run.stderr.includes(address), run.stderr);
    assert.match(run.stderr, /QUOTAD_AUTHORITY/);
  });

  test('keys show of an unknown id exits 5', async () => {
    const run = await cli(['keys', 'show', 'key_doesnotexist0000']);
    assert.equal(run.code, 5, run.stderr);
    assert.match(run.stderr, /^quotad: /);
  });

  test('keys create without --org exits 2 and names the flag', async () => {
    const run = await cli(['keys', 'create', '--name', 'n', '--owner', 'o', '--tier', 'free']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^quotad: --org is required/);
  });

  test('keys limits --set rpm=1 applies at once: the second request of the minute is OVER_LIMIT', async () => {
    const { id, secret } = await createKey();
    const set = await cli(['keys', 'limits', id, '--set', 'rpm=1']);
    assert.equal(set.code, 0, set.stderr);

    assert.equal((await check(secret)).allowed, true);
    const second = await check(secret);
    assert.equal(second.code, 'OVER_LIMIT');
    assert.equal(second.allowed, false);
  });

  test('keys rotate --overlap 0s prints a new secret that works, while the old one is KEY_EXPIRED', async () => {
    const { id, secret: old } = await createKey();
    const run = await cli(['keys', 'rotate', id, '--overlap', '0s', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const rotated = JSON.parse(run.stdout) as RotateKeyResponse__Output;
    secrets.push(rotated.secret);
    assert.notEqual(rotated.secret, old);

    const fresh = await check(rotated.secret);
    assert.equal(fresh.allowed, true, fresh.code);
    assert.equal(fresh.key?.id, id);
    assert.equal((await check(old)).code, 'KEY_EXPIRED');
  });

  test("usage prints a table of the key's limits, requests_per_minute among them", async () => {
    const { id, secret } = await createKey();
    await check(secret);
    const run = await cli(['usage', id]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^NAME\s+KIND\s+USED\s+REMAINING\s+LIMIT\s+RESETS IN$/m);
    assert.match(run.stdout, /^requests_per_minute\s+rate\s+1\s+9\s+10\s/m);
  });

  test('keys limits ID with neither --set nor --unset shows the overrides and changes nothing', async () => {
    const { id } = await createKey();
    assert.equal((await cli(['keys', 'limits', id, '--set', 'rpm=3'])).code, 0);
    const shown = await cli(['keys', 'limits', id, '--json']);
    assert.equal(shown.code, 0, shown.stderr);
    const key = JSON.parse(shown.stdout) as ApiKey__Output;
    assert.deepEqual(
      key.limits.map((o) => [o.name, o.value]),
      [['requests_per_minute', '3']],
    );
  });

  test("usage --json prints the shape of the gateway's GET /v1/usage", async () => {
    const { id, secret } = await createKey();
    await check(secret);
    const run = await cli(['usage', id, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const usage = JSON.parse(run.stdout) as {
      object: string;
      tier: string;
      key: { id: string };
      limits: Record<string, unknown>[];
    };
    assert.deepEqual([usage.object, usage.tier, usage.key.id], ['usage', 'free', id]);
    const rpm = usage.limits.find((l) => l.name === 'requests_per_minute');
    assert.deepEqual(
      [rpm?.kind, rpm?.unit, rpm?.used, rpm?.window_seconds, typeof rpm?.resets_in_ms],
      ['rate', 'requests', 1, 60, 'number'],
    );
  });

  test("usage --help is the usage command's help, not the key commands'", async () => {
    const run = await cli(['usage', '--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage: quotad usage ID \[flags\]\n/);
    assert.doesNotMatch(run.stdout, /keys create/);
  });

  test("an unreachable authority is named with the reason, without grpc-js's empty resolution note", async () => {
    const run = await cli(['keys', 'list', '--timeout', '1s'], {
      QUOTAD_AUTHORITY: `127.0.0.1:${await freePort()}`,
    });
    assert.equal(run.code, 3);
    assert.match(run.stderr, /did not answer \(.*ECONNREFUSED.*\); is it running there\?/);
    assert.doesNotMatch(run.stderr, /Resolution note/);
  });

  // Runs last (tests in a describe run in order): by now every secret above has been issued and used.
  test("no issued secret appears in the authority's log output", () => {
    assert.ok(secrets.length >= 6);
    const logs = quotad.lines.map((line) => JSON.stringify(line)).join('\n') + quotad.stderr;
    for (const secret of secrets) assert.ok(!logs.includes(secret), 'a secret was logged');
    assert.doesNotMatch(logs, ANY_SECRET);
  });
});
