import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CSV_COLUMNS, usdText } from '../../src/gateway/request-log.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { eventually } from '../../harness/eventually.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { GatewayProcess, postChat } from '../../harness/gateway-process.js';
import { adminClient, type AdminClient } from '../../harness/grpc-clients.js';

describe('the request log file (--request-log)', { timeout: 30_000 }, () => {
  const token = randomBytes(16).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'quotad-request-log-'));
  const jsonlPath = join(dir, 'requests.jsonl');
  const csvPath = join(dir, 'requests.csv');
  let authority: AuthorityProcess;
  let admin: AdminClient;
  let upstream: FakeUpstream;
  let jsonlGateway: GatewayProcess;
  let csvGateway: GatewayProcess;
  let orgs = 0;

  before(async () => {
    upstream = await FakeUpstream.start();
    authority = await AuthorityProcess.spawn({ QUOTAD_ADMIN_TOKEN: token, LOG_LEVEL: 'info' });
    const env = { QUOTAD_AUTHORITY: authority.grpcAddress, OPENAI_BASE_URL: upstream.url, LOG_LEVEL: 'info' };
    jsonlGateway = await GatewayProcess.spawn(env, ['--request-log', jsonlPath]);
    csvGateway = await GatewayProcess.spawn(
      { ...env, QUOTAD_REQUEST_LOG: csvPath, QUOTAD_REQUEST_LOG_FORMAT: 'csv' },
      [],
    );
    await Promise.all([authority, jsonlGateway, csvGateway].map((child) => child.ready()));
    admin = adminClient(authority.grpcAddress, token);
  });
  after(async () => {
    await Promise.all([jsonlGateway, csvGateway].map((gateway) => gateway?.stop()));
    admin?.close();
    await authority?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function createKey(): Promise<{ id: string; secret: string }> {
    orgs += 1;
    const org = `request-log-${orgs}`;
    const created = await admin.createKey({ name: org, owner: 'e2e', org, tier: 'free', expiresInMs: 0 });
    return { id: created.key?.id ?? '', secret: created.secret };
  }

  /** The line of `path` that holds `requestId`, once it is written. */
  function lineWith(path: string, requestId: string): Promise<string> {
    return eventually(
      async () => {
        const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
        return text.split('\n').find((line) => line.includes(requestId));
      },
      () => `no line for ${requestId} in ${path}`,
    );
  }

  test('jsonl: one object per request with its key, client, model, status, tokens, settled cost and latency', async () => {
    const key = await createKey();
    const requestId = randomUUID();
    const response = await postChat(jsonlGateway.url, key.secret, requestId);
    assert.equal(response.status, 200);
    await response.text();
    const entry = JSON.parse(await lineWith(jsonlPath, requestId)) as Record<string, unknown>;
    const usage = await admin.getKeyUsage({ id: key.id });
    assert.deepEqual(
      { ...entry, time: typeof entry.time, latencyMs: typeof entry.latencyMs },
      {
        time: 'string',
        requestId,
        keyId: key.id,
        client: '127.0.0.1',
        model: 'gpt-4o-mini',
        status: 200,
        inputTokens: entry.inputTokens,
        outputTokens: entry.outputTokens,
        costUsd: usdText(usage.usage?.usdMicrosSpent ?? -1),
        latencyMs: 'number',
      },
    );
    assert.ok((entry.outputTokens as number) > 0 && (entry.inputTokens as number) > 0);
  });

  test('csv: a header line, then one row per request in the documented columns; a refusal costs nothing', async () => {
    const key = await createKey();
    const served = randomUUID();
    assert.equal((await postChat(csvGateway.url, key.secret, served)).status, 200);
    const refused = randomUUID();
    // Another last character (a key ending in x would otherwise stay itself and be served).
    const wrong = `${key.secret.slice(0, -1)}${key.secret.endsWith('x') ? 'y' : 'x'}`;
    const response = await postChat(csvGateway.url, wrong, refused);
    assert.equal(response.status, 401);
    const row = (await lineWith(csvPath, served)).split(',');
    const refusedRow = (await lineWith(csvPath, refused)).split(',');
    assert.equal(readFileSync(csvPath, 'utf8').split('\n')[0], CSV_COLUMNS.join(','));
    const usage = await admin.getKeyUsage({ id: key.id });
    assert.deepEqual(
      [row[1], row[2], row[3], row[4], row[5], row[8]],
      [served, key.id, '127.0.0.1', 'gpt-4o-mini', '200', usdText(usage.usage?.usdMicrosSpent ?? -1)],
    );
    assert.deepEqual([refusedRow[1], refusedRow[2], refusedRow[5], refusedRow[8]], [refused, '', '401', '']);
  });

  test('no API key and no admin token appear in either file', async () => {
    const key = await createKey();
    const requestId = randomUUID();
    await (await postChat(jsonlGateway.url, key.secret, requestId)).text();
    await (await postChat(csvGateway.url, key.secret, requestId)).text();
    const files = `${await lineWith(jsonlPath, requestId)}${await lineWith(csvPath, requestId)}`;
    assert.ok(!files.includes(key.secret) && !files.includes(token));
    assert.ok(!readFileSync(jsonlPath, 'utf8').includes('qd_live_'));
    assert.ok(!readFileSync(csvPath, 'utf8').includes('qd_live_'));
  });

  test('SIGHUP reopens the file: after logrotate renames it, later lines go to a new file (csv with its header)', async () => {
    const key = await createKey();
    const before = randomUUID();
    await (await postChat(csvGateway.url, key.secret, before)).text();
    await lineWith(csvPath, before);
    const rotated = `${csvPath}.1`;
    renameSync(csvPath, rotated);
    const reopened = csvGateway.nextLog('request log reopened');
    csvGateway.child.kill('SIGHUP');
    await reopened;
    const later = randomUUID();
    await (await postChat(csvGateway.url, key.secret, later)).text();
    await lineWith(csvPath, later);
    const fresh = readFileSync(csvPath, 'utf8').split('\n');
    assert.deepEqual(
      [fresh[0], fresh.some((line) => line.includes(before)), readFileSync(rotated, 'utf8').includes(later)],
      [CSV_COLUMNS.join(','), false, false],
    );
  });
});
