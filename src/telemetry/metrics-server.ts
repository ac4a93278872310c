import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MetricsServerOptions {
  host: string;
  /** 0 binds a free port; the bound one is returned. */
  port: number;
  render: () => Promise<{ contentType: string; body: string }>;
  /** Backs `/readyz`; without it the process counts as ready once it serves. */
  isReady?: () => boolean;
}

export interface MetricsServer {
  url: string;
  port: number;
  /** Stops listening and drops open connections, so shutdown does not wait on keep-alive scrapers. */
  close(): Promise<void>;
}

function reply(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Serves `GET /metrics` (Prometheus text), `GET /healthz` (liveness: always 200 while serving) and
 * `GET /readyz` (readiness from `isReady`); everything else is 404.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { render, isReady } = options;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET') return reply(res, 404, 'not found\n');
    if (path === '/healthz') return reply(res, 200, 'ok\n');
    if (path === '/readyz') {
      return (isReady?.() ?? true) ? reply(res, 200, 'ready\n') : reply(res, 503, 'not ready\n');
    }
    if (path !== '/metrics') return reply(res, 404, 'not found\n');
    try {
      const { contentType, body } = await render();
      reply(res, 200, body, contentType);
    } catch (err) {
      // A failing collector must cost one scrape, not the process.
      reply(res, 500, `metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  };
  const server = createServer((req, res) => void handle(req, res));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
