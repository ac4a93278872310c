import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, HELP_WIDTH, parseServeConfig, serveUsage } from '../../src/main/config.js';
import { gatewayUsage, parseGatewayConfig } from '../../src/main/gateway-config.js';

test('with nothing set, serve uses the documented defaults and the in-process store', () => {
  assert.deepEqual(parseServeConfig([], {}), {
    redisUrl: undefined,
    redis: undefined,
    redisWaitReplicas: 0,
    policyPath: 'config/policy.yaml',
    grpcAddress: { host: '0.0.0.0', port: 8081 },
    metricsAddress: { host: '0.0.0.0', port: 9464 },
    logLevel: 'info',
    redisTimeoutMs: 1_000,
    shutdownDelayMs: 0,
    shutdownGraceMs: 10_000,
    maxConnectionAgeMs: 300_000,
    keyCacheTtlMs: 1_000,
    memoryMaxEntries: 1_000_000,
    tls: undefined,
    demoKey: false,
    demoGateway: 'http://127.0.0.1:8080',
    envoyConfigDir: undefined,
    envoyOnStoreFailure: 'open',
    adminToken: undefined,
    adminTokensFile: undefined,
    audit: { retentionMs: 90 * 86_400_000, maxRecords: 100_000 },
    authorityToken: undefined,
    signingKey: undefined,
    signatureMaxAgeMs: 300_000,
  });
});

test('--envoy-on-store-failure takes open, closed or local', () => {
  assert.equal(parseServeConfig([], { QUOTAD_ENVOY_ON_STORE_FAILURE: 'local' }).envoyOnStoreFailure, 'local');
  assert.equal(parseServeConfig(['--envoy-on-store-failure', 'closed'], {}).envoyOnStoreFailure, 'closed');
  assert.throws(() => parseServeConfig(['--envoy-on-store-failure', 'deny'], {}), ConfigError);
});

test('TLS on the gRPC port takes a certificate and its key together; a client CA needs both', () => {
  assert.deepEqual(parseServeConfig(['--tls-cert', 'c.pem', '--tls-key', 'k.pem'], {}).tls, {
    certPath: 'c.pem',
    keyPath: 'k.pem',
  });
  for (const args of [
    ['--tls-cert', 'c.pem'],
    ['--tls-key', 'k.pem'],
    ['--tls-client-ca', 'ca.pem'],
  ]) {
    assert.throws(() => parseServeConfig(args, {}), ConfigError);
  }
});

test('--memory-max-entries takes a whole number from 1', () => {
  assert.equal(parseServeConfig([], { QUOTAD_MEMORY_MAX_ENTRIES: '5000' }).memoryMaxEntries, 5_000);
  for (const text of ['0', '-1', '1e6', 'lots']) {
    assert.throws(() => parseServeConfig(['--memory-max-entries', text], {}), ConfigError);
  }
});

test('the gateway refuses a zero timeout, a body timeout under the header timeout, and a bad connection cap', () => {
  const base = ['--header-timeout', '5s'];
  assert.deepEqual(parseGatewayConfig(base, {}).connections, {
    headerTimeoutMs: 5_000,
    bodyTimeoutMs: 60_000,
    idleTimeoutMs: 75_000,
    maxConnections: 4_096,
  });
  for (const args of [
    ['--header-timeout', '0s'],
    ['--idle-timeout', '0ms'],
    ['--header-timeout', '30s', '--body-timeout', '20s'],
    ['--max-connections', '0'],
    ['--max-connections', 'many'],
  ]) {
    assert.throws(() => parseGatewayConfig(args, {}), ConfigError, args.join(' '));
  }
});

test('the admin token comes from QUOTAD_ADMIN_TOKEN, and a short one is refused', () => {
  const token = 'a'.repeat(32);
  assert.equal(parseServeConfig([], { QUOTAD_ADMIN_TOKEN: token }).adminToken, token);
  assert.throws(
    () => parseServeConfig([], { QUOTAD_ADMIN_TOKEN: 'short' }),
    (error: Error) => error instanceof ConfigError && error.message.startsWith('QUOTAD_ADMIN_TOKEN'),
  );
});

test('--demo-key takes on or off and nothing else', () => {
  assert.equal(parseServeConfig(['--demo-key', 'on'], {}).demoKey, true);
  assert.throws(() => parseServeConfig(['--demo-key', 'yes'], {}), ConfigError);
});

test('environment variables set what flags do not, and flags win over them', () => {
  const config = parseServeConfig(['--grpc-addr', '[::1]:9000', '--log-level', 'debug'], {
    REDIS_URL: 'redis://redis:6379',
    QUOTAD_GRPC_ADDR: '127.0.0.1:1',
    QUOTAD_REDIS_TIMEOUT: '80ms',
    LOG_LEVEL: 'warn',
  });
  assert.equal(config.redisUrl, 'redis://redis:6379');
  assert.deepEqual(config.grpcAddress, { host: '::1', port: 9000 });
  assert.equal(config.redisTimeoutMs, 80);
  assert.equal(config.logLevel, 'debug');
});

test('an address without a port is refused, naming the flag and its variable', () => {
  assert.throws(
    () => parseServeConfig([], { QUOTAD_METRICS_ADDR: 'localhost' }),
    (error: Error) =>
      error instanceof ConfigError && error.message.startsWith('--metrics-addr (QUOTAD_METRICS_ADDR)'),
  );
});

test('a duration without a unit is refused', () => {
  assert.throws(() => parseServeConfig(['--redis-timeout', '50'], {}), ConfigError);
});

test('an unknown flag is refused', () => {
  assert.throws(() => parseServeConfig(['--redis', 'x'], {}), ConfigError);
});

test('the gateway waits 2s for a check and sheds past 2000 waiting by default; --max-pending-checks takes a count', () => {
  const defaults = parseGatewayConfig([], {});
  assert.deepEqual([defaults.authorityTimeoutMs, defaults.maxPendingChecks], [2_000, 2_000]);
  assert.equal(parseGatewayConfig([], { QUOTAD_MAX_PENDING_CHECKS: '64' }).maxPendingChecks, 64);
  for (const bad of ['0', '-1', '1.5', 'many']) {
    assert.throws(
      () => parseGatewayConfig([`--max-pending-checks=${bad}`], {}),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message.startsWith('--max-pending-checks (QUOTAD_MAX_PENDING_CHECKS)'),
    );
  }
});

test('the request log is off by default; --request-log-format takes jsonl or csv and nothing else', () => {
  assert.equal(parseGatewayConfig([], {}).requestLog, undefined);
  assert.deepEqual(
    parseGatewayConfig(['--request-log', '/tmp/r.csv', '--request-log-format', 'csv'], {}).requestLog,
    {
      path: '/tmp/r.csv',
      format: 'csv',
    },
  );
  assert.deepEqual(parseGatewayConfig([], { QUOTAD_REQUEST_LOG: '/tmp/r.jsonl' }).requestLog, {
    path: '/tmp/r.jsonl',
    format: 'jsonl',
  });
  assert.throws(
    () => parseGatewayConfig(['--request-log-format', 'tsv'], {}),
    /--request-log-format \(QUOTAD_REQUEST_LOG_FORMAT\): expected jsonl or csv, got 'tsv'/,
  );
});

for (const [command, help] of [
  ['serve', serveUsage],
  ['gateway', gatewayUsage],
] as const) {
  test(`${command} --help fits in ${HELP_WIDTH} columns and lists the exit codes`, () => {
    const text = help();
    const wide = text.split('\n').filter((line) => line.length > HELP_WIDTH);
    assert.deepEqual(wide, []);
    assert.match(text, /^Exit codes:\n {2}0 .*\n {2}1 .*\n {2}2 /m);
  });

  test(`an unknown ${command} flag is refused in one sentence that points to ${command} --help`, () => {
    const parse = command === 'serve' ? parseServeConfig : parseGatewayConfig;
    assert.throws(() => parse(['--bogus=1'], {}), {
      message: `unknown flag --bogus; quotad ${command} --help lists the flags`,
    });
  });
}
