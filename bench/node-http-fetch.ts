import http from 'node:http';
import https from 'node:https';
import { pipeline, Readable } from 'node:stream';
import zlib from 'node:zlib';
import { bytesOf, type HttpFetchOptions } from '../src/gateway/http-fetch.js';

/**
 * The fetch the gateway gave the OpenAI SDK until it moved to undici's Agent (src/gateway/http-fetch.ts):
 * node:http and node:https over keep-alive agents, the response body as a web stream over the socket. Kept
 * here as a baseline of bench/upstream-client.ts, so the choice can be measured again.
 */
export interface NodeHttpFetch {
  fetch: typeof globalThis.fetch;
  /** The agents holding the connections, for diagnostics and tests. */
  readonly agents: { readonly http: http.Agent; readonly https: https.Agent };
  /** Closes every pooled connection; calls made afterwards open new ones. */
  close(): void;
}

type FetchInput = Parameters<typeof globalThis.fetch>[0];
type FetchInit = NonNullable<Parameters<typeof globalThis.fetch>[1]>;

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

export function createNodeHttpFetch(options: HttpFetchOptions = {}): NodeHttpFetch {
  const idle = { keepAlive: true, timeout: options.idleSocketMs ?? 4_000 };
  const agents = {
    http: new http.Agent(idle),
    https: new https.Agent({ ...idle, ...(options.ca === undefined ? {} : { ca: options.ca }) }),
  };

  const fetch = (input: FetchInput, init: FetchInit = {}): Promise<Response> => {
    const url = typeof input === 'string' ? new URL(input) : input instanceof URL ? input : undefined;
    const body = bytesOf(init.body);
    if (!url || body === 'other' || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      return globalThis.fetch(input, init);
    }
    const method = (init.method ?? 'GET').toUpperCase();
    const headers: http.OutgoingHttpHeaders = {};
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value;
    });
    if (body) headers['content-length'] = body.byteLength;
    const secure = url.protocol === 'https:';
    return new Promise<Response>((resolve, reject) => {
      const request = (secure ? https : http).request(
        url,
        { agent: secure ? agents.https : agents.http, method, headers, signal: init.signal ?? undefined },
        (response) => {
          try {
            resolve(toResponse(response, method, init.signal ?? undefined));
          } catch (error) {
            response.destroy();
            reject(error as Error);
          }
        },
      );
      request.on('error', reject); // the first error settles the call; any later one is the same failure
      request.end(body);
    });
  };

  return {
    fetch: fetch as typeof globalThis.fetch,
    agents,
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

function toResponse(response: http.IncomingMessage, method: string, signal?: AbortSignal): Response {
  const status = response.statusCode ?? 0;
  const headers = new Headers();
  const raw = response.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i] as string, raw[i + 1] as string);
  const init = { status, statusText: response.statusMessage ?? '', headers };
  if (method === 'HEAD' || NULL_BODY_STATUSES.has(status)) {
    response.resume();
    return new Response(null, init);
  }
  const body = decoded(response);
  if (signal) {
    // As with fetch, an abort fails the body's next read at once, not when the socket has closed.
    const abort = () => body.destroy(new DOMException('This operation was aborted', 'AbortError'));
    signal.addEventListener('abort', abort, { once: true });
    body.once('close', () => signal.removeEventListener('abort', abort));
  }
  return new Response(Readable.toWeb(body) as ReadableStream<Uint8Array>, init);
}

/** The body with the server's content coding undone (one coding, as servers use); others as they came. */
function decoded(response: http.IncomingMessage): Readable {
  const coding = response.headers['content-encoding']?.trim().toLowerCase();
  // Partial input is flushed as it comes, so a compressed event stream still arrives event by event.
  const flush = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  const decoder =
    coding === 'gzip' || coding === 'x-gzip'
      ? zlib.createGunzip(flush)
      : coding === 'deflate'
        ? zlib.createInflate(flush)
        : coding === 'br'
          ? zlib.createBrotliDecompress({
              flush: zlib.constants.BROTLI_OPERATION_FLUSH,
              finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
            })
          : undefined;
  if (!decoder) return response;
  return pipeline(response, decoder, () => undefined);
}
