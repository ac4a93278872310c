import { pipeline, Readable } from 'node:stream';
import zlib from 'node:zlib';
import { Agent, type Dispatcher } from 'undici';

/**
 * The `fetch` the gateway gives the OpenAI SDK: undici's `Agent` (a keep-alive pool per origin) called
 * through `request`, its fast path, without the WHATWG fetch layer over it. Measured against Node 20's
 * global fetch (undici's fetch: web streams on both sides, an abort-signal chain per call) and against a
 * hand-written one over node:http, the SDK's model call costs this process the least CPU over the pool
 * (bench/README.md, "upstream-client.ts").
 *
 * It serves what the SDK's model calls send: a URL, a method, headers, a string or bytes body and an abort
 * signal. Anything else (a streamed or multipart body, a Request object) goes to the global fetch. A JSON
 * answer comes whole; any other body streams as it arrives; both decoded when the server compressed them,
 * as fetch would.
 */
export interface HttpFetch {
  fetch: typeof globalThis.fetch;
  /** The pool of connections, for diagnostics and tests. */
  readonly dispatcher: Agent;
  /** Closes every pooled connection; calls made afterwards open new ones. */
  close(): void;
}

export interface HttpFetchOptions {
  /**
   * How long an idle connection stays pooled (default 4 s, as undici's). A server that announces a shorter
   * keep-alive timeout is believed, so a request is never sent on a connection the server is closing.
   */
  idleSocketMs?: number;
  /** Certificate authorities to trust instead of Node's own (an upstream on a private CA; tests). */
  ca?: string | Buffer;
}

type FetchInput = Parameters<typeof globalThis.fetch>[0];
type FetchInit = NonNullable<Parameters<typeof globalThis.fetch>[1]>;

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

export function createHttpFetch(options: HttpFetchOptions = {}): HttpFetch {
  const idleMs = options.idleSocketMs ?? 4_000;
  const open = () =>
    new Agent({
      keepAliveTimeout: idleMs,
      keepAliveMaxTimeout: idleMs,
      ...(options.ca === undefined ? {} : { connect: { ca: options.ca } }),
    });
  let dispatcher = open();

  const fetch = async (input: FetchInput, init: FetchInit = {}): Promise<Response> => {
    const url = typeof input === 'string' ? new URL(input) : input instanceof URL ? input : undefined;
    const body = bytesOf(init.body);
    if (!url || body === 'other' || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      return globalThis.fetch(input, init);
    }
    const method = (init.method ?? 'GET').toUpperCase() as Dispatcher.HttpMethod;
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const answer = await dispatcher.request({
      origin: url.origin,
      path: url.pathname + url.search,
      method,
      headers,
      body: body ?? null,
      signal: init.signal ?? null,
    });
    return toResponse(answer, method);
  };

  return {
    fetch: fetch as typeof globalThis.fetch,
    get dispatcher() {
      return dispatcher;
    },
    close() {
      const closing = dispatcher;
      dispatcher = open();
      void closing.destroy().catch(() => undefined);
    },
  };
}

/** The body as bytes, undefined for none, or 'other' for a kind only the global fetch sends. */
export function bytesOf(body: FetchInit['body']): Uint8Array | undefined | 'other' {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return 'other';
}

/**
 * The Response for an answer: with a JSON body (a model's whole answer, or an error) once the body has
 * arrived, its bytes in hand, since the gateway reads it whole anyway and a web stream over the socket
 * costs more CPU than the call's own parsing; any other body (an event stream) as it arrives.
 */
async function toResponse(answer: Dispatcher.ResponseData, method: string): Promise<Response> {
  const status = answer.statusCode;
  const headers = new Headers();
  for (const [name, value] of Object.entries(answer.headers)) {
    if (Array.isArray(value)) for (const one of value) headers.append(name, one);
    else if (value !== undefined) headers.append(name, value);
  }
  const init = { status, statusText: answer.statusText ?? '', headers };
  if (method === 'HEAD' || NULL_BODY_STATUSES.has(status)) {
    answer.body.resume();
    return new Response(null, init);
  }
  const decoder = decoderFor(headers.get('content-encoding'));
  const body = decoder ? pipeline(answer.body, decoder, () => undefined) : answer.body;
  if (!isJson(headers.get('content-type'))) {
    return new Response(Readable.toWeb(body) as ReadableStream<Uint8Array>, init);
  }
  if (!decoder) return new Response(await answer.body.arrayBuffer(), init);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return new Response(Buffer.concat(chunks), init);
}

function isJson(contentType: string | null): boolean {
  const type = contentType?.split(';', 1)[0]?.trim().toLowerCase();
  return type === 'application/json' || (type?.endsWith('+json') ?? false);
}

/** What undoes the server's content coding (one coding, as servers use); none for others, left as they came. */
function decoderFor(
  contentEncoding: string | null,
): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined {
  const coding = contentEncoding?.trim().toLowerCase();
  // Partial input is flushed as it comes, so a compressed event stream still arrives event by event.
  const flush = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (coding === 'gzip' || coding === 'x-gzip') return zlib.createGunzip(flush);
  if (coding === 'deflate') return zlib.createInflate(flush);
  if (coding === 'br') {
    return zlib.createBrotliDecompress({
      flush: zlib.constants.BROTLI_OPERATION_FLUSH,
      finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
    });
  }
  return undefined;
}
