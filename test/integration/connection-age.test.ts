import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { connectAuthority } from '../../src/gateway/authority-client.js';
import { startAuthority } from '../../src/main/serve.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

/** A TCP relay in front of `port` that tells each connection it carried, opened and then closed. */
async function relay(port: number) {
  const connections: { closed: Promise<void> }[] = [];
  let opened = () => {};
  const server = createServer((client: Socket) => {
    const upstream = createConnection(port, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    const closed = new Promise<void>((resolve) => upstream.once('close', () => resolve()));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    upstream.once('close', () => client.destroy());
    connections.push({ closed });
    opened();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    nextConnection: () => new Promise<void>((resolve) => (opened = resolve)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const check = (n: number) => ({
  requestId: `age-${process.pid}-${n}`,
  principal: { subject: `age-user-${n}`, org: 'age-org', tier: 'pro' },
  model: 'gpt-4o-mini',
  inputTokens: 10,
  maxOutputTokens: 10,
});

test(
  'past --max-connection-age the authority closes a client connection; the next call reconnects and is answered',
  { timeout: 10_000 },
  async (t) => {
    const authority = await startAuthority(
      inProcessServeConfig(['--log-level', 'silent', '--max-connection-age', '200ms'], {}),
    );
    const proxy = await relay(authority.grpcPort);
    const client = connectAuthority(`127.0.0.1:${proxy.port}`, { batch: false });
    t.after(async () => {
      client.close();
      await proxy.close();
      await authority.stop();
    });

    assert.equal((await client.check(check(1), 5_000)).allowed, true);
    assert.equal(proxy.connections.length, 1);
    // The server ends the first connection on its own once it is 200 ms old (GOAWAY, then close).
    await proxy.connections[0]?.closed;
    const reconnected = proxy.nextConnection();
    assert.equal((await client.check(check(2), 5_000)).allowed, true);
    await reconnected;
    assert.equal(proxy.connections.length, 2);
  },
);
