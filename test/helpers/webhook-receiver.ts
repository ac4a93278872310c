import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface ReceivedEvent {
  id: string;
  body: string;
  json: Record<string, unknown> & { id: string; type: string; threshold: number };
  /** The signature verified against the secret, with the body as received. */
  signed: boolean;
  headers: IncomingMessage['headers'];
}

/**
 * A webhook receiver on a real socket, verifying signatures as the README tells receivers to.
 * `mode`: `ok` answers 204, `down` 503, `hang` never answers (the sender times out or is stopped).
 */
export class WebhookReceiver {
  mode: 'ok' | 'down' | 'hang' = 'ok';
  /** Events answered 2xx, in order. */
  readonly accepted: ReceivedEvent[] = [];
  /** Every POST seen, whatever the answer. */
  readonly seen: ReceivedEvent[] = [];
  readonly #server: Server;
  readonly #secret: string;
  readonly #hanging = new Set<ServerResponse>();

  private constructor(server: Server, secret: string) {
    this.#server = server;
    this.#secret = secret;
  }

  static async start(secret: string): Promise<WebhookReceiver> {
    const server = createServer();
    const receiver = new WebhookReceiver(server, secret);
    server.on('request', (request, response) => receiver.#handle(request, response));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return receiver;
  }

  get url(): string {
    const { port } = this.#server.address() as { port: number };
    return `http://127.0.0.1:${port}/hooks/quotad`;
  }

  /** Accepted events of one org. */
  acceptedFor(org: string): ReceivedEvent[] {
    return this.accepted.filter((event) => (event.json.principal as { org: string }).org === org);
  }

  #verify(body: string, header: string | undefined): boolean {
    const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
    if (!match) return false;
    const [, t, v1] = match as unknown as [string, string, string];
    if (Math.abs(Date.now() / 1000 - Number(t)) > 300) return false;
    const expected = createHmac('sha256', this.#secret).update(`${t}.${body}`).digest();
    return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const json = JSON.parse(body) as ReceivedEvent['json'];
      const event: ReceivedEvent = {
        id: String(request.headers['quotad-event-id']),
        body,
        json,
        signed: this.#verify(body, request.headers['quotad-signature'] as string | undefined),
        headers: request.headers,
      };
      this.seen.push(event);
      if (this.mode === 'hang') {
        this.#hanging.add(response);
        return;
      }
      if (this.mode === 'down') {
        response.writeHead(503).end();
        return;
      }
      this.accepted.push(event);
      response.writeHead(204).end();
    });
  }

  async close(): Promise<void> {
    for (const response of this.#hanging) response.destroy();
    this.#server.closeAllConnections();
    this.#server.close();
    await once(this.#server, 'close');
  }
}
