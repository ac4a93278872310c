import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connectUpstream } from '../../src/gateway/upstream.js';

/** Sends one chat completion through connectUpstream and returns the headers the upstream received. */
async function headersSent(apiKey: string | undefined): Promise<IncomingHttpHeaders> {
  let received: IncomingHttpHeaders = {};
  const server = createServer((req, res) => {
    received = req.headers;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const upstream = connectUpstream({ baseUrl: `http://127.0.0.1:${port}/v1`, apiKey, timeoutMs: 5_000 });
    try {
      const response = await upstream.send(
        'chat',
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
        new AbortController().signal,
      );
      await response.text();
      return received;
    } finally {
      upstream.close();
    }
  } finally {
    server.close();
  }
}

test('with OPENAI_API_KEY set the upstream receives it as a Bearer token', async () => {
  assert.equal((await headersSent('sk-upstream-key')).authorization, 'Bearer sk-upstream-key');
});

test('without OPENAI_API_KEY no Authorization header reaches the upstream', async () => {
  assert.equal((await headersSent(undefined)).authorization, undefined);
});
