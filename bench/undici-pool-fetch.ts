/**
 * A `fetch` for the OpenAI SDK over an undici `Pool` (`pool.request`), the well-kept client the gateway's
 * own src/gateway/http-fetch.ts is judged against in bench/upstream-client.ts. Built the way http-fetch
 * is: a JSON answer read whole into the Response, anything else streamed; one origin per pool.
 */
import { Readable } from 'node:stream';
import { Pool } from 'undici';

type FetchInput = Parameters<typeof globalThis.fetch>[0];
type FetchInit = NonNullable<Parameters<typeof globalThis.fetch>[1]>;

export function createPoolFetch(origin: string): { fetch: typeof globalThis.fetch; close(): Promise<void> } {
  const pool = new Pool(origin, { keepAliveTimeout: 4_000 });
  const fetch = async (input: FetchInput, init: FetchInit = {}): Promise<Response> => {
    const url = typeof input === 'string' ? new URL(input) : (input as URL);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const answer = await pool.request({
      path: url.pathname + url.search,
      method: (init.method ?? 'GET') as 'POST',
      headers,
      body: init.body as string | Uint8Array | undefined,
      signal: init.signal ?? undefined,
    });
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      if (Array.isArray(value)) for (const one of value) responseHeaders.append(name, one);
      else if (value !== undefined) responseHeaders.set(name, value);
    }
    const responseInit = { status: answer.statusCode, headers: responseHeaders };
    if (String(answer.headers['content-type']).startsWith('application/json')) {
      return new Response(Buffer.from(await answer.body.arrayBuffer()), responseInit);
    }
    return new Response(Readable.toWeb(answer.body) as ReadableStream<Uint8Array>, responseInit);
  };
  return { fetch: fetch as typeof globalThis.fetch, close: () => pool.close() };
}
