import type { ChildProcess } from 'node:child_process';
import { QuotadProcess, spawnQuotad } from './authority-process.js';
import { freePort } from './redis-server.js';

/** `quotad gateway` as a real child process on a free port, with its JSON log lines readable as they come. */
export class GatewayProcess extends QuotadProcess {
  readonly port: number;

  private constructor(child: ChildProcess, port: number) {
    super(child, 'quotad gateway serving');
    this.port = port;
  }

  /**
   * Spawns the CLI with `env` on top of a clean environment and a free port. Point it at an authority
   * (QUOTAD_AUTHORITY) and an upstream (OPENAI_BASE_URL) through `env` or `args`.
   */
  static async spawn(env: Record<string, string>, args: string[] = []): Promise<GatewayProcess> {
    const port = await freePort();
    const child = spawnQuotad('gateway', args, { QUOTAD_GATEWAY_ADDR: `127.0.0.1:${port}`, ...env });
    return new GatewayProcess(child, port);
  }

  /** The gateway's base URL, e.g. http://127.0.0.1:PORT (the OpenAI API is under /v1). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
}

/** POSTs a short chat completion to the gateway at `baseUrl` with an API key, under `requestId`. */
export function postChat(baseUrl: string, secret: string, requestId: string): Promise<Response> {
  return fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${secret}`,
      'content-type': 'application/json',
      'x-request-id': requestId,
    },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello.' }],
      max_tokens: 16,
    }),
  });
}
