import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthorityProcess, REPO_ROOT } from '../../harness/authority-process.js';
import { runCli } from '../helpers/cli.js';
import { descriptor, rlsClient } from '../../harness/rls-client.js';

describe('quotad serve --envoy-config, as a process', () => {
  let bad: string;

  before(async () => {
    bad = await mkdtemp(join(tmpdir(), 'quotad-envoy-bad-'));
    await writeFile(
      join(bad, 'a.yaml'),
      'domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: fortnight\n      requests_per_unit: 1\n',
    );
  });

  after(async () => {
    await rm(bad, { recursive: true, force: true });
  });

  test('an invalid directory at start exits 2, naming the file, line and reason', async () => {
    const run = await runCli([
      'serve',
      '--grpc-addr',
      '127.0.0.1:0',
      '--metrics-addr',
      '127.0.0.1:0',
      '--envoy-config',
      bad,
    ]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /a\.yaml:5:\d+ descriptors\[0\]\.rate_limit\.unit: /);
  });

  test('with the shipped example, Envoy calls are answered on the gRPC port from QUOTAD_ENVOY_CONFIG', async () => {
    const quotad = await (
      await AuthorityProcess.spawn({ QUOTAD_ENVOY_CONFIG: join(REPO_ROOT, 'test/fixtures/envoy/readme') })
    ).ready();
    const client = rlsClient(quotad.grpcAddress);
    try {
      const ask = () =>
        client.shouldRateLimit({
          domain: 'edge_proxy_per_ip',
          descriptors: [descriptor([['remote_address', '50.0.0.5']])],
        });
      assert.equal((await ask()).overall_code, 'OVER_LIMIT');
    } finally {
      client.close();
      await quotad.stop();
    }
  });
});
