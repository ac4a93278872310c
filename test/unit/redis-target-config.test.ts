import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseServeConfig, serveUsage } from '../../src/main/config.js';

test('REDIS_URL alone is a standalone Redis', () => {
  assert.deepEqual(parseServeConfig([], { REDIS_URL: 'redis://r:6379' }).redis, {
    mode: 'standalone',
    url: 'redis://r:6379',
  });
});

test('--redis-cluster takes seed nodes, and QUOTAD_REDIS_PASSWORD as their password', () => {
  const config = parseServeConfig(['--redis-cluster', 'a:7000, b:7001,[::1]:7002'], {
    QUOTAD_REDIS_PASSWORD: 'pw',
  });
  assert.deepEqual(config.redis, {
    mode: 'cluster',
    nodes: [
      { host: 'a', port: 7000 },
      { host: 'b', port: 7001 },
      { host: '::1', port: 7002 },
    ],
    tls: false,
    password: 'pw',
  });
});

test('QUOTAD_REDIS_CLUSTER with rediss:// entries turns TLS on and may carry user and password', () => {
  const config = parseServeConfig([], {
    QUOTAD_REDIS_CLUSTER: 'rediss://app:<password>@a:7000,rediss://b:7001',
  });
  assert.deepEqual(config.redis, {
    mode: 'cluster',
    nodes: [
      { host: 'a', port: 7000 },
      { host: 'b', port: 7001 },
    ],
    tls: true,
    username: 'app',
    password: '<password>',
  });
});

test('a cluster list mixing redis:// and rediss:// is refused', () => {
  assert.throws(
    () => parseServeConfig(['--redis-cluster', 'rediss://a:7000,b:7001'], {}),
    /--redis-cluster \(QUOTAD_REDIS_CLUSTER\): mixes redis:\/\/ and rediss:\/\//,
  );
});

test('sentinels with the master name are a Sentinel target', () => {
  const config = parseServeConfig([], {
    QUOTAD_REDIS_SENTINELS: 's1:26379,s2:26379,s3:26379',
    QUOTAD_REDIS_SENTINEL_NAME: 'quotad',
  });
  assert.deepEqual(config.redis, {
    mode: 'sentinel',
    sentinels: [
      { host: 's1', port: 26379 },
      { host: 's2', port: 26379 },
      { host: 's3', port: 26379 },
    ],
    name: 'quotad',
    tls: false,
  });
});

test('sentinels without a master name, or a name without sentinels, are usage errors', () => {
  assert.throws(
    () => parseServeConfig(['--redis-sentinels', 's1:26379'], {}),
    /--redis-sentinels \(QUOTAD_REDIS_SENTINELS\): needs --redis-sentinel-name/,
  );
  assert.throws(
    () => parseServeConfig(['--redis-sentinel-name', 'quotad'], {}),
    /--redis-sentinel-name \(QUOTAD_REDIS_SENTINEL_NAME\): needs --redis-sentinels/,
  );
});

test('two ways to reach Redis at once is a usage error naming both', () => {
  assert.throws(
    () => parseServeConfig(['--redis-cluster', 'a:7000'], { REDIS_URL: 'redis://r:6379' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message.includes('--redis-url (REDIS_URL)') &&
      error.message.includes('--redis-cluster (QUOTAD_REDIS_CLUSTER)'),
  );
  assert.throws(
    () =>
      parseServeConfig([], {
        QUOTAD_REDIS_CLUSTER: 'a:7000',
        QUOTAD_REDIS_SENTINELS: 's:26379',
        QUOTAD_REDIS_SENTINEL_NAME: 'm',
      }),
    /--redis-cluster \(QUOTAD_REDIS_CLUSTER\) and --redis-sentinels \(QUOTAD_REDIS_SENTINELS\)/,
  );
});

test('a cluster node that is not host:port names the setting', () => {
  assert.throws(
    () => parseServeConfig(['--redis-cluster', 'a:7000,b'], {}),
    /--redis-cluster \(QUOTAD_REDIS_CLUSTER\): expected host:port, got 'b'/,
  );
});

test('--help lists the three ways to reach Redis and the password variable', () => {
  const usage = serveUsage();
  for (const name of [
    '--redis-url',
    'REDIS_URL',
    '--redis-cluster',
    'QUOTAD_REDIS_CLUSTER',
    '--redis-sentinels',
    'QUOTAD_REDIS_SENTINELS',
    '--redis-sentinel-name',
    'QUOTAD_REDIS_SENTINEL_NAME',
    'QUOTAD_REDIS_PASSWORD',
  ]) {
    assert.ok(usage.includes(name), name);
  }
});
