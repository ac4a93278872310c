import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseServeConfig } from '../../src/main/config.js';
import { parseGatewayConfig } from '../../src/main/gateway-config.js';

test('with nothing set, serve uses the documented defaults and the in-process store', () => {
  assert.deepEqual(parseServeConfig([], {}), {
    redisUrl: undefined,
    policyPath: 'config/policy.yaml',
    grpcAddress: { host: '0.0.0.0', port: 8081 },
    metricsAddress: { host: '0.0.0.0', port: 9464 },
    logLevel: 'info',
    redisTimeoutMs: 1_000,
    shutdownDelayMs: 0,
    shutdownGraceMs: 10_000,
    maxConnectionAgeMs: 300_000,
    keyCacheTtlMs: 1_000,
    demoKey: false,
    adminToken: undefined,
  });
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
