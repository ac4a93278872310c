import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { createLogger } from '../../src/telemetry/logger.js';
import { GatewayMetrics } from '../../src/telemetry/gateway-metrics.js';
import { AuthorityMetrics } from '../../src/telemetry/metrics.js';
import {
  startMetricsServer,
  type MetricsServer,
  type MetricsServerOptions,
} from '../../src/telemetry/metrics-server.js';

const METRIC_NAMES = [
  'quotad_decisions_total',
  'quotad_limit_exceeded_total',
  'quotad_decision_duration_seconds',
  'quotad_store_duration_seconds',
  'quotad_store_errors_total',
  'quotad_degraded_decisions_total',
  'quotad_reservations_total',
  'quotad_reservations_settled_total',
  'quotad_reservations_expired_total',
  'quotad_policy_reloads_total',
  'quotad_policy_valid',
  'quotad_policy_loaded_timestamp_seconds',
  'quotad_grpc_requests_total',
  'quotad_build_info',
];

function quotadMetrics(): AuthorityMetrics {
  return new AuthorityMetrics({ version: '1.2.3', storeKind: 'redis', collectDefault: false });
}

/** The sample lines of a Prometheus text body, without HELP and TYPE. */
async function samples(metrics: AuthorityMetrics): Promise<string[]> {
  const { body } = await metrics.render();
  return body.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

/** Collects what a logger writes, one parsed JSON object per line. */
function captureLines(): { destination: { write(line: string): void }; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { destination: { write: (line) => void lines.push(JSON.parse(line)) }, lines };
}

test('metrics render in Prometheus text format with a HELP and TYPE for every quotad metric', async () => {
  const { contentType, body } = await quotadMetrics().render();
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  for (const name of METRIC_NAMES) {
    assert.match(body, new RegExp(`^# HELP ${name} `, 'm'), name);
    assert.match(body, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
});

test('small fixed label sets are present at 0 before the first event', async () => {
  const lines = await samples(quotadMetrics());
  for (const series of [
    'quotad_decisions_total{result="allowed",code="OK"} 0',
    'quotad_decisions_total{result="denied",code="OVER_LIMIT"} 0',
    'quotad_decisions_total{result="denied",code="STORE_UNAVAILABLE"} 0',
    'quotad_store_errors_total{store="redis",op="reserve"} 0',
    'quotad_store_errors_total{store="redis",op="settle"} 0',
    'quotad_store_duration_seconds_count{store="redis",op="reserve"} 0',
    'quotad_degraded_decisions_total{mode="local"} 0',
    'quotad_reservations_total{result="duplicate"} 0',
    'quotad_reservations_settled_total{status="late"} 0',
    'quotad_reservations_settled_total{status="charged_without_reservation"} 0',
    'quotad_policy_reloads_total{result="failure"} 0',
    'quotad_grpc_requests_total{method="CheckQuota",code="OK"} 0',
    'quotad_reservations_expired_total 0',
  ]) {
    assert.ok(lines.includes(series), `missing ${series}`);
  }
});

test('decisions pre-initialise only the result each code can have', async () => {
  const lines = await samples(quotadMetrics());
  assert.ok(
    !lines.some((line) => line.startsWith('quotad_decisions_total{result="allowed",code="OVER_LIMIT"')),
  );
  assert.ok(!lines.some((line) => line.startsWith('quotad_decisions_total{result="denied",code="OK"')));
});

test('store series start at 0 only for the store kind this process uses', async () => {
  const lines = await samples(quotadMetrics());
  assert.ok(!lines.some((line) => line.includes('store="memory"')));
});

test('build info carries the version with value 1', async () => {
  assert.ok((await samples(quotadMetrics())).includes('quotad_build_info{version="1.2.3"} 1'));
});

test('a denied decision counts its result and the limits that denied, and any shadow limit it exceeded', async () => {
  const metrics = quotadMetrics();
  metrics.recordDecision({
    allowed: false,
    code: 'OVER_LIMIT',
    deniedBy: ['rpm'],
    shadowExceeded: ['daily-usd'],
  });
  const lines = await samples(metrics);
  assert.ok(lines.includes('quotad_decisions_total{result="denied",code="OVER_LIMIT"} 1'));
  assert.ok(lines.includes('quotad_limit_exceeded_total{limit="rpm",shadow="false"} 1'));
  assert.ok(lines.includes('quotad_limit_exceeded_total{limit="daily-usd",shadow="true"} 1'));
});

test('limits that failed closed while the store was out are not counted as exceeded', async () => {
  const metrics = quotadMetrics();
  metrics.recordDecision({
    allowed: false,
    code: 'STORE_UNAVAILABLE',
    deniedBy: ['rpm'],
    shadowExceeded: [],
  });
  const lines = await samples(metrics);
  assert.ok(!lines.some((line) => line.startsWith('quotad_limit_exceeded_total{')));
});

test('a successful reload marks the policy valid and stamps its load time in seconds', async () => {
  const metrics = quotadMetrics();
  metrics.recordPolicyReload({ ok: true, loadedAtMs: 1_700_000_000_500 });
  const lines = await samples(metrics);
  assert.ok(lines.includes('quotad_policy_reloads_total{result="success"} 1'));
  assert.ok(lines.includes('quotad_policy_valid 1'));
  assert.ok(lines.includes('quotad_policy_loaded_timestamp_seconds 1700000000.5'));
});

test('a rejected reload marks the policy invalid and keeps the last load time', async () => {
  const metrics = quotadMetrics();
  metrics.recordPolicyReload({ ok: true, loadedAtMs: 1_700_000_000_000 });
  metrics.recordPolicyReload({ ok: false });
  const lines = await samples(metrics);
  assert.ok(lines.includes('quotad_policy_reloads_total{result="failure"} 1'));
  assert.ok(lines.includes('quotad_policy_valid 0'));
  assert.ok(lines.includes('quotad_policy_loaded_timestamp_seconds 1700000000'));
});

test('each instance owns its registry, so two can coexist in one process', async () => {
  const first = quotadMetrics();
  const second = quotadMetrics();
  first.reservationsExpired.inc();
  assert.ok((await samples(second)).includes('quotad_reservations_expired_total 0'));
});

test('default collection adds the standard process and nodejs metrics without a prefix', async () => {
  const { body } = await new AuthorityMetrics({ version: '1.2.3', storeKind: 'memory' }).render();
  assert.match(body, /^# TYPE process_cpu_seconds_total counter$/m);
  assert.match(body, /^# TYPE nodejs_eventloop_lag_seconds gauge$/m);
});

/** A metrics server on a free loopback port, closed when the test ends. */
async function serveOnFreePort(
  t: TestContext,
  overrides: Partial<MetricsServerOptions> = {},
): Promise<MetricsServer> {
  const server = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    render: () => quotadMetrics().render(),
    ...overrides,
  });
  t.after(() => server.close());
  return server;
}

test('the metrics server serves the rendered metrics over HTTP on a free port', async (t) => {
  const metrics = quotadMetrics();
  const server = await serveOnFreePort(t, { render: () => metrics.render() });
  assert.notEqual(server.port, 0);
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), metrics.registry.contentType);
  assert.match(await res.text(), /^quotad_build_info\{version="1\.2\.3"\} 1$/m);
});

test('the metrics server answers /healthz with 200 ok', async (t) => {
  const server = await serveOnFreePort(t);
  const res = await fetch(`${server.url}/healthz`);
  assert.equal(res.status, 200);
  assert.equal((await res.text()).trim(), 'ok');
});

test('the metrics server answers /readyz from isReady', async (t) => {
  let ready = false;
  const server = await serveOnFreePort(t, { isReady: () => ready });
  assert.equal((await fetch(`${server.url}/readyz`)).status, 503);
  ready = true;
  assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
});

test('the metrics server 404s any other path or method', async (t) => {
  const server = await serveOnFreePort(t);
  assert.equal((await fetch(`${server.url}/`)).status, 404);
  assert.equal((await fetch(`${server.url}/metrics/extra`)).status, 404);
  assert.equal((await fetch(`${server.url}/metrics`, { method: 'POST' })).status, 404);
});

test('a failing render costs the scrape a 500, not the server', async (t) => {
  let fail = true;
  const server = await serveOnFreePort(t, {
    render: async () => {
      if (fail) throw new Error('collector broke');
      return { contentType: 'text/plain', body: 'up 1\n' };
    },
  });
  assert.equal((await fetch(`${server.url}/metrics`)).status, 500);
  fail = false;
  assert.equal((await fetch(`${server.url}/metrics`)).status, 200);
});

test('after close() the port refuses connections', async (t) => {
  const server = await serveOnFreePort(t);
  await server.close();
  const socket = connect(server.port, '127.0.0.1');
  const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
});

test(
  'close() drops open connections instead of waiting for them to go idle',
  { timeout: 5_000 },
  async (t) => {
    const server = await serveOnFreePort(t);
    const socket = connect(server.port, '127.0.0.1');
    // Should close() ever wait on this socket, the test times out and this lets the process exit.
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const dropped = once(socket, 'close');
    await server.close();
    await dropped;
  },
);

test('the logger redacts authorization and apiKey at the top level', () => {
  const { destination, lines } = captureLines();
  const logger = createLogger({ level: 'info', name: 'quotad', destination });
  logger.info({ authorization: 'Bearer secret', apiKey: 'sk-secret', subject: 'team-a' }, 'checked');
  assert.equal(lines[0]?.authorization, '[redacted]');
  assert.equal(lines[0]?.apiKey, '[redacted]');
  assert.equal(lines[0]?.subject, 'team-a');
});

test('the logger redacts credentials nested one level and in request headers', () => {
  const { destination, lines } = captureLines();
  const logger = createLogger({ level: 'info', name: 'quotad', destination });
  logger.info({ client: { apiKey: 'sk-secret' }, headers: { authorization: 'Bearer x', 'x-api-key': 'k' } });
  assert.deepEqual(lines[0]?.client, { apiKey: '[redacted]' });
  assert.deepEqual(lines[0]?.headers, { authorization: '[redacted]', 'x-api-key': '[redacted]' });
});

test('log lines are JSON with the service name, an ISO time and the level by name', () => {
  const { destination, lines } = captureLines();
  createLogger({ level: 'info', name: 'quotad', destination }).warn('policy rejected');
  const line = lines[0];
  assert.equal(line?.service, 'quotad');
  assert.equal(line?.level, 'warn');
  assert.equal(line?.msg, 'policy rejected');
  assert.match(String(line?.time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
});

test('the logger drops lines below its level', () => {
  const { destination, lines } = captureLines();
  createLogger({ level: 'warn', name: 'quotad', destination }).info('routine');
  assert.equal(lines.length, 0);
});

test('an unknown log level is rejected with the levels that exist', () => {
  assert.throws(
    () => createLogger({ level: 'verbose', name: 'quotad' }),
    /unknown log level 'verbose': expected one of fatal, error, warn, info, debug, trace, silent/,
  );
});

test("the gateway's API routes start their 200 and 5xx answer series at 0, so rate() sees the first error", async () => {
  const { body } = await new GatewayMetrics({ version: '1.2.3', collectDefault: false }).render();
  const lines = body.split('\n');
  for (const route of ['chat_completions', 'completions', 'embeddings', 'models', 'usage']) {
    for (const status of ['200', '500', '502', '503', '504']) {
      const series = `quotad_gateway_requests_total{route="${route}",status="${status}"} 0`;
      assert.ok(lines.includes(series), `missing ${series}`);
    }
  }
});
