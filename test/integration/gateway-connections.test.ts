import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { openFilesLimit, startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { eventually } from '../../harness/eventually.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

const POLICY = `
version: 1
timezone: UTC
reservation: { lease: 10m, idempotency_window: 1h }
replicas: 1
models:
  gpt-4o-mini: { input_per_million: '0.15', output_per_million: '0.60' }
tiers:
  wide:
    max_output_tokens: 1000
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 100000, window: 1m }
      - { name: concurrent_requests, type: concurrency, limit: 1000 }
`;

/** Short enough for a test, and each distinct, so a test can tell which one closed a connection. */
const SHORT = ['--header-timeout', '300ms', '--body-timeout', '700ms', '--idle-timeout', '400ms'];

let dir: string;
let authority: RunningAuthority;
let upstream: FakeUpstream;
let secret: string;

const quiet = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

async function gatewayWith(args: string[]): Promise<RunningGateway> {
  // A generous deadline: 20 checks at once on this shared machine can outlast 100 ms, and these tests
  // are about connections, not decisions.
  const config = inProcessGatewayConfig(
    authority.grpcPort,
    upstream.url,
    ['--authority-timeout', '5s', ...args],
    {},
  );
  return startGateway(config, { logDestination: quiet() });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quotad-connections-'));
  await writeFile(join(dir, 'policy.yaml'), POLICY);
  upstream = await FakeUpstream.start();
  authority = await startAuthority(inProcessServeConfig(['--policy', join(dir, 'policy.yaml')], {}), {
    logDestination: quiet(),
  });
  ({ secret } = await authority.keys.create({
    name: 'connections test',
    owner: 'test',
    org: 'connections',
    tier: 'wide',
    expiresInMs: 0,
  }));
});

after(async () => {
  await authority.stop();
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

const chatBody = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Hello' }],
  max_tokens: 20,
});

/** A raw TCP connection to the gateway, and what it heard until the gateway closed it. */
interface RawClient {
  socket: Socket;
  /** Resolves when the connection closes: everything received, and the milliseconds since it opened. */
  closed: Promise<{ received: string; ms: number }>;
}

async function rawClient(gateway: RunningGateway): Promise<RawClient> {
  const socket = connect(gateway.port, '127.0.0.1');
  const opened = performance.now();
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => ({ received, ms: performance.now() - opened }));
  await once(socket, 'connect');
  return { socket, closed };
}

/** Writes `text` every `everyMs` until the connection closes. */
function trickle(client: RawClient, text: string, everyMs: number): void {
  const timer = setInterval(() => client.socket.write(text), everyMs);
  void client.closed.then(() => clearInterval(timer));
}

async function metric(gateway: RunningGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return Number(match?.[1]);
}

describe('client timeouts', () => {
  let gateway: RunningGateway;
  before(async () => {
    gateway = await gatewayWith(SHORT);
  });
  after(() => gateway.stop());

  test(
    'headers trickled slower than --header-timeout are cut off with 408',
    { timeout: 10_000 },
    async () => {
      const client = await rawClient(gateway);
      client.socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n');
      trickle(client, 'X-Trickle: 1\r\n', 50);
      const { received, ms } = await client.closed;
      assert.match(received, /^HTTP\/1\.1 408 /);
      assert.match(received, /"code":"request_timeout"/);
      assert.ok(ms >= 300, `closed after ${Math.round(ms)} ms`);
      assert.ok((await metric(gateway, 'quotad_gateway_request_timeouts_total')) >= 1);
    },
  );

  test('an endless chunked body is cut off with 408 after --body-timeout', { timeout: 10_000 }, async () => {
    const client = await rawClient(gateway);
    client.socket.write(
      'POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n' +
        `Authorization: Bearer ${secret}\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    trickle(client, '1\r\n \r\n', 50);
    const { received, ms } = await client.closed;
    assert.match(received, /^HTTP\/1\.1 408 /);
    assert.ok(ms >= 700, `closed after ${Math.round(ms)} ms`);
  });

  test(
    'a body shorter than its Content-Length is cut off with 408 after --body-timeout',
    { timeout: 10_000 },
    async () => {
      const client = await rawClient(gateway);
      client.socket.write(
        'POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n' +
          `Authorization: Bearer ${secret}\r\nContent-Length: 100\r\n\r\n{"model":`,
      );
      const { received, ms } = await client.closed;
      assert.match(received, /^HTTP\/1\.1 408 /);
      assert.ok(ms >= 700, `closed after ${Math.round(ms)} ms`);
    },
  );

  test(
    'a connection that never sends a request is closed with 408 after --header-timeout',
    { timeout: 10_000 },
    async () => {
      const { received, ms } = await (await rawClient(gateway)).closed;
      assert.match(received, /^HTTP\/1\.1 408 /);
      assert.ok(ms >= 300, `closed after ${Math.round(ms)} ms`);
    },
  );

  test(
    'a kept-alive connection is closed after --idle-timeout without a next request',
    { timeout: 10_000 },
    async () => {
      const client = await rawClient(gateway);
      client.socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
      const { received, ms } = await client.closed;
      assert.match(received, /^HTTP\/1\.1 200 /);
      assert.ok(ms >= 400, `closed after ${Math.round(ms)} ms`);
    },
  );

  test(
    'a request waiting on a slow upstream outlives --idle-timeout and --body-timeout',
    { timeout: 20_000 },
    async () => {
      const release = upstream.hold();
      const answer = fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        body: chatBody,
      });
      await upstream.nextCall();
      // Witnesses that both timeouts have passed: a kept-alive connection, then an endless body, each closed.
      const idle = await rawClient(gateway);
      idle.socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
      await idle.closed;
      const endless = await rawClient(gateway);
      endless.socket.write(
        'POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n' +
          `Authorization: Bearer ${secret}\r\nTransfer-Encoding: chunked\r\n\r\n`,
      );
      trickle(endless, '1\r\n \r\n', 50);
      assert.match((await endless.closed).received, /^HTTP\/1\.1 408 /);
      release();
      const response = await answer;
      assert.equal(response.status, 200);
      assert.ok(((await response.json()) as { usage: unknown }).usage);
    },
  );
});

describe('--max-connections', () => {
  test(
    'connections past the cap are closed at once, while an open kept-alive one is still served',
    { timeout: 20_000 },
    async (t) => {
      const gateway = await gatewayWith(['--max-connections', '10', '--idle-timeout', '30s']);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const held: RawClient[] = [];
      t.after(async () => {
        for (const client of held) client.socket.destroy();
        agent.destroy();
        await gateway.stop();
      });
      const get = (path: string) =>
        new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
          const request = http.get(`${gateway.url}${path}`, { agent }, (response) => {
            let body = '';
            response.on('data', (chunk: Buffer) => (body += chunk.toString()));
            response.on('end', () =>
              resolve({ status: response.statusCode ?? 0, body, reused: request.reusedSocket }),
            );
          });
          request.on('error', reject);
        });
      assert.equal((await get('/healthz')).status, 200);
      // Nine more, each answered, so the gateway has surely accepted (and counts) every one.
      for (let i = 0; i < 9; i += 1) {
        const client = await rawClient(gateway);
        held.push(client);
        client.socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
        await eventually(
          async () => (held[i]?.socket.bytesRead ?? 0) > 0 || undefined,
          () => 'a held connection was not answered',
          { intervalMs: 10 },
        );
      }
      const extra = await rawClient(gateway);
      extra.socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
      assert.equal((await extra.closed).received, '', 'the eleventh connection gets no answer');
      const metrics = await get('/metrics');
      assert.equal(metrics.status, 200);
      assert.ok(metrics.reused, 'served on the connection it already had');
      assert.match(metrics.body, /^quotad_gateway_connections_refused_total 1$/m);
      assert.match(metrics.body, /^quotad_gateway_open_connections 10$/m);
    },
  );
});

test('a --max-connections the open-files limit cannot hold is warned about at start', async (t) => {
  const files = openFilesLimit();
  if (files === undefined) return t.skip('no /proc/self/limits on this system');
  const lines: string[] = [];
  const gateway = await startGateway(
    inProcessGatewayConfig(authority.grpcPort, upstream.url, ['--max-connections', String(files)], {}),
    {
      logDestination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    },
  );
  await gateway.stop();
  const warning = lines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((line) => 'openFilesLimit' in line);
  assert.deepEqual(warning && { level: warning.level, limit: warning.openFilesLimit }, {
    level: 'warn',
    limit: files,
  });
});

describe('shutdown', () => {
  /** One request on a keep-alive agent: its status and Connection header, or the error and whether the socket was reused. */
  function send(
    gateway: RunningGateway,
    agent: http.Agent,
    options: { stream?: boolean } = {},
  ): Promise<{ status: number; connection: string | undefined } | { error: string; reused: boolean }> {
    const body = options.stream ? JSON.stringify({ ...JSON.parse(chatBody), stream: true }) : chatBody;
    return new Promise((resolve) => {
      const request = http.request(
        `${gateway.url}/v1/chat/completions`,
        {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        },
        (response) => {
          response.resume();
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, connection: response.headers.connection }),
          );
          response.on('error', (error: NodeJS.ErrnoException) =>
            resolve({ error: error.code ?? error.message, reused: request.reusedSocket }),
          );
        },
      );
      request.on('error', (error: NodeJS.ErrnoException) =>
        resolve({ error: error.code ?? error.message, reused: request.reusedSocket }),
      );
      request.end(body);
    });
  }

  test(
    'answers sent once shutdown began say Connection: close, so no keep-alive client reuses a dying socket',
    { timeout: 30_000 },
    async () => {
      const gateway = await gatewayWith([]);
      const clients = Array.from({ length: 20 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      const streaming = Array.from({ length: 4 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      const resumes = streaming.map(() => upstream.pauseNext(1));
      const streams = streaming.map((agent) => send(gateway, agent, { stream: true }));
      while (upstream.calls.filter((call) => call.stream).length < streaming.length)
        await upstream.nextCall();
      const release = upstream.hold();
      const calls = upstream.calls.length;
      const first = clients.map((agent) => send(gateway, agent));
      while (upstream.calls.length < calls + clients.length) await upstream.nextCall();

      const stopped = gateway.stop();
      await eventually(
        () =>
          new Promise<true | undefined>((resolve) => {
            const probe = connect(gateway.port, '127.0.0.1');
            probe.once('connect', () => {
              probe.destroy();
              resolve(undefined);
            });
            probe.once('error', () => resolve(true));
          }),
        () => 'the gateway kept accepting connections after stop()',
        { intervalMs: 10 },
      );
      release();
      for (const resume of resumes) resume();
      // Each client sends its next request the moment its answer ends, as a busy SDK client does.
      const pending = [...first, ...streams];
      const outcomes = await Promise.all(
        [...clients, ...streaming].map(async (agent, i) => {
          const answer = await (pending[i] as (typeof pending)[number]);
          const next = await send(gateway, agent);
          return { answer, next };
        }),
      );
      await stopped;
      for (const { next } of outcomes) {
        if ('error' in next) assert.deepEqual(next, { error: 'ECONNREFUSED', reused: false });
        else assert.deepEqual(next, { status: 200, connection: 'close' });
      }
      for (const { answer } of outcomes.slice(0, clients.length)) {
        assert.deepEqual(answer, { status: 200, connection: 'close' });
      }
      for (const { answer } of outcomes.slice(clients.length)) {
        assert.equal('status' in answer && answer.status, 200);
      }
      for (const agent of [...clients, ...streaming]) agent.destroy();
    },
  );
});
