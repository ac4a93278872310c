import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import OpenAI from 'openai';
import { createHttpFetch, type HttpFetch } from '../../src/gateway/http-fetch.js';
import { connectUpstream, upstreamFailure, type Upstream } from '../../src/gateway/upstream.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

interface TestServer {
  url: string;
  /** Every connection the server accepted, in order. */
  connections: Socket[];
  close(): void;
}

/** A real HTTP (or HTTPS) server on loopback that reads each request's body before `handler` answers. */
async function startServer(handler: Handler, tls?: { key: string; cert: string }): Promise<TestServer> {
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handler(req, res, Buffer.concat(chunks).toString()));
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  const connections: Socket[] = [];
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => connections.push(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    connections,
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

const json = (res: http.ServerResponse, value: unknown) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
};

/** Resolves the next time `release` is called: a server holds an answer until the test lets it go. */
function gate(): { opened: Promise<void>; release: () => void } {
  let release!: () => void;
  const opened = new Promise<void>((resolve) => (release = resolve));
  return { opened, release };
}

/** A handler that streams `data: 1`, then holds `data: 2` and the end until `release` is called. */
function twoPartStream(): { handler: Handler; release: () => void } {
  const second = gate();
  const handler: Handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: 1\n\n');
    void second.opened.then(() => res.end('data: 2\n\n'));
  };
  return { handler, release: second.release };
}

const isAbortError = (error: unknown) => error instanceof Error && error.name === 'AbortError';

describe('the upstream fetch over http', { timeout: 10_000 }, () => {
  let client: HttpFetch;
  before(() => {
    client = createHttpFetch();
  });
  after(() => client.close());

  test('sends the method, headers and body, and the next call reuses the connection', async (t) => {
    const seen: { method?: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
    const server = await startServer((req, res, body) => {
      seen.push({ method: req.method, headers: req.headers, body });
      json(res, { n: seen.length });
    });
    t.after(() => server.close());
    for (const n of [1, 2]) {
      const response = await client.fetch(`${server.url}/v1/chat/completions?x=1`, {
        method: 'post',
        headers: { 'content-type': 'application/json', 'x-call': String(n) },
        body: '{"hello":"wörld"}',
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'application/json');
      assert.deepEqual(await response.json(), { n });
      // undici hands a connection back to its pool a turn after the answer's body has ended.
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(
      seen.map(({ method, headers, body }) => [method, headers['x-call'], headers['content-length'], body]),
      [
        ['POST', '1', '18', '{"hello":"wörld"}'],
        ['POST', '2', '18', '{"hello":"wörld"}'],
      ],
    );
    assert.equal(server.connections.length, 1);
  });

  test('the body streams as the server sends it, not once it has ended', async (t) => {
    const second = twoPartStream();
    const server = await startServer(second.handler);
    t.after(() => server.close());
    const response = await client.fetch(server.url, { method: 'POST', body: '{}' });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.equal(Buffer.from(first.value as Uint8Array).toString(), 'data: 1\n\n');
    second.release();
    const rest = await reader.read();
    assert.equal(Buffer.from(rest.value as Uint8Array).toString(), 'data: 2\n\n');
    assert.equal((await reader.read()).done, true);
  });

  test('an abort before the answer rejects with AbortError and closes the connection', async (t) => {
    const arrived = gate();
    const server = await startServer(() => arrived.release()); // never answers
    t.after(() => server.close());
    const abort = new AbortController();
    const call = client.fetch(server.url, { method: 'POST', body: '{}', signal: abort.signal });
    await arrived.opened;
    abort.abort();
    await assert.rejects(call, isAbortError);
    const [socket] = server.connections;
    if (!socket?.destroyed) await once(socket as Socket, 'close');
  });

  test('an abort mid-body fails the next read with AbortError before the socket has closed', async (t) => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n'); // and nothing more
    });
    t.after(() => server.close());
    const abort = new AbortController();
    const response = await client.fetch(server.url, { method: 'POST', body: '{}', signal: abort.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    const [socket] = server.connections;
    let closedFirst = false;
    socket?.once('close', () => (closedFirst = true));
    const next = reader.read();
    abort.abort();
    await assert.rejects(next, isAbortError);
    assert.equal(closedFirst, false);
  });

  for (const [coding, compress] of [
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
    ['br', zlib.brotliCompressSync],
  ] as const) {
    test(`a ${coding}-encoded body arrives decoded`, async (t) => {
      const text = JSON.stringify({ choices: [{ text: 'x'.repeat(5_000) }] });
      const server = await startServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': coding });
        res.end(compress(text));
      });
      t.after(() => server.close());
      assert.equal(await (await client.fetch(server.url)).text(), text);
    });
  }

  test('an answer with no body (204) has a null body', async (t) => {
    const server = await startServer((_req, res) => {
      res.writeHead(204);
      res.end();
    });
    t.after(() => server.close());
    const response = await client.fetch(server.url, { method: 'DELETE' });
    assert.equal(response.status, 204);
    assert.equal(response.body, null);
  });

  test('a body it does not send itself goes to the global fetch', async (t) => {
    let received = '';
    const server = await startServer((_req, res, body) => {
      received = body;
      json(res, {});
    });
    t.after(() => server.close());
    await (await client.fetch(server.url, { method: 'POST', body: new URLSearchParams({ a: '1' }) })).text();
    assert.equal(received, 'a=1');
  });

  test('a refused connection rejects with the socket error', async () => {
    const server = await startServer(() => undefined);
    const url = server.url;
    server.close();
    await assert.rejects(client.fetch(url), (error: NodeJS.ErrnoException) => error.code === 'ECONNREFUSED');
  });
});

describe('pooled connections', { timeout: 10_000 }, () => {
  test('an idle connection is closed after idleSocketMs', async (t) => {
    const client = createHttpFetch({ idleSocketMs: 50 });
    t.after(() => client.close());
    const server = await startServer((_req, res) => json(res, {}));
    t.after(() => server.close());
    await (await client.fetch(server.url)).text();
    await new Promise((resolve) => setImmediate(resolve)); // see the first test
    await (await client.fetch(server.url)).text();
    assert.equal(server.connections.length, 1, 'pooled');
    await once(server.connections[0] as Socket, 'close');
  });

  test('a stream quieter than idleSocketMs is not cut', async (t) => {
    const client = createHttpFetch({ idleSocketMs: 20 });
    t.after(() => client.close());
    const second = twoPartStream();
    const server = await startServer((req, res, body) =>
      req.url === '/stream' ? second.handler(req, res, body) : json(res, {}),
    );
    t.after(() => server.close());
    const response = await client.fetch(`${server.url}/stream`, { method: 'POST', body: '{}' });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    // A second call takes a second connection (the stream holds the first); the pool closes it once it has
    // been idle for idleSocketMs, so by then the stream has been quiet at least that long.
    await (await client.fetch(server.url)).text();
    const idle = server.connections[1] as Socket;
    if (!idle.destroyed) await once(idle, 'close');
    second.release();
    assert.equal(Buffer.from((await reader.read()).value as Uint8Array).toString(), 'data: 2\n\n');
    assert.equal((await reader.read()).done, true);
  });
});

describe('the upstream fetch over https', { timeout: 10_000 }, () => {
  let dir: string;
  let tls: { key: string; cert: string };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quotad-tls-'));
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
    // A throwaway self-signed certificate for 127.0.0.1, made for this run only.
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    tls = { key: await readFile(key, 'utf8'), cert: await readFile(cert, 'utf8') };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('talks TLS to a server it trusts, and reuses the connection', async (t) => {
    const server = await startServer((_req, res, body) => json(res, { echo: body }), tls);
    t.after(() => server.close());
    const client = createHttpFetch({ ca: tls.cert });
    t.after(() => client.close());
    for (const body of ['one', 'two']) {
      assert.deepEqual(await (await client.fetch(server.url, { method: 'POST', body })).json(), {
        echo: body,
      });
      await new Promise((resolve) => setImmediate(resolve)); // see the first test
    }
    assert.equal(server.connections.length, 1);
  });

  test('refuses a server whose certificate it does not trust', async (t) => {
    const server = await startServer((_req, res) => json(res, {}), tls);
    t.after(() => server.close());
    const client = createHttpFetch();
    t.after(() => client.close());
    await assert.rejects(client.fetch(server.url), (error: NodeJS.ErrnoException) =>
      String(error.code).includes('SELF_SIGNED'),
    );
  });
});

describe('the OpenAI SDK over it, as the gateway calls the model', { timeout: 10_000 }, () => {
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
  /** What a chat completion that must fail rejects with. */
  const failureOf = (upstream: Upstream) =>
    upstream.send('chat', chat, new AbortController().signal).then(
      () => assert.fail('answered'),
      (error: unknown) => error,
    );

  test('an upstream that does not answer in time is a timeout: 504 upstream_timeout', async (t) => {
    const server = await startServer(() => undefined); // never answers
    t.after(() => server.close());
    const upstream = connectUpstream({ baseUrl: `${server.url}/v1`, apiKey: 'sk-test', timeoutMs: 50 });
    t.after(() => upstream.close());
    const error = await failureOf(upstream);
    assert.ok(error instanceof OpenAI.APIConnectionTimeoutError, String(error));
    assert.deepEqual([upstreamFailure(error).status, upstreamFailure(error).code], [504, 'upstream_timeout']);
  });

  test('an upstream that cannot be reached: 502 upstream_unreachable', async (t) => {
    const server = await startServer(() => undefined);
    server.close();
    const upstream = connectUpstream({ baseUrl: `${server.url}/v1`, apiKey: 'sk-test', timeoutMs: 5_000 });
    t.after(() => upstream.close());
    const error = await failureOf(upstream);
    assert.ok(error instanceof OpenAI.APIConnectionError, String(error));
    assert.deepEqual(
      [upstreamFailure(error).status, upstreamFailure(error).code],
      [502, 'upstream_unreachable'],
    );
  });

  test("the gateway's own abort before the answer is the SDK's APIUserAbortError", async (t) => {
    const arrived = gate();
    const server = await startServer(() => arrived.release());
    t.after(() => server.close());
    const upstream = connectUpstream({ baseUrl: `${server.url}/v1`, apiKey: 'sk-test', timeoutMs: 5_000 });
    t.after(() => upstream.close());
    const abort = new AbortController();
    const call = upstream.send('chat', chat, abort.signal);
    await arrived.opened;
    abort.abort();
    await assert.rejects(call, OpenAI.APIUserAbortError);
  });

  test('an upstream 400 reaches the SDK as an APIError with its status and message', async (t) => {
    const server = await startServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'bad temperature', type: 'invalid_request_error' } }));
    });
    t.after(() => server.close());
    const upstream = connectUpstream({ baseUrl: `${server.url}/v1`, apiKey: 'sk-test', timeoutMs: 5_000 });
    t.after(() => upstream.close());
    const error = await failureOf(upstream);
    const failure = upstreamFailure(error);
    assert.deepEqual([failure.status, failure.message], [400, 'bad temperature']);
  });
});
