/**
 * The demo upstream's lifecycle: the server, routing a request to its parser and answer, the scripts
 * tests use to make calls fail, stall or wait. The other pieces are upstream-contract.ts (constants and
 * types), upstream-parse.ts, upstream-text.ts, upstream-stream.ts and upstream-errors.ts.
 */
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DemoUpstream, DemoUpstreamOptions, StreamedSoFar, UpstreamCall } from './upstream-contract.js';
import { DEFAULT_DEMO_MODELS, MODELS_CREATED } from './upstream-contract.js';
import { UpstreamError, defaultMessage, describeFailure } from './upstream-errors.js';
import { ID_PREFIXES, PARSERS, POST_ROUTES, authorize, parseJsonObject, readBody } from './upstream-parse.js';
import { cutByUs, sendError, sendJson, streamAnswer } from './upstream-stream.js';

export {
  DEFAULT_DEMO_MODELS,
  DEFAULT_EMBEDDING_DIMENSIONS,
  DEFAULT_MAX_OUTPUT_TOKENS,
  DEMO_SYSTEM_FINGERPRINT,
  DEMO_TEXT_PREFIX,
  MAX_BODY_BYTES,
} from './upstream-contract.js';
export type {
  DemoUpstream,
  DemoUpstreamOptions,
  StreamedSoFar,
  UpstreamCall,
  UpstreamObserver,
  UpstreamRoute,
  UpstreamScript,
  UpstreamUsage,
} from './upstream-contract.js';

/** What a CLI prints when it starts the demo upstream. */
export function demoUpstreamBanner(url: string, models: readonly string[] = DEFAULT_DEMO_MODELS): string {
  return [
    `quotad demo upstream listening on ${url}`,
    '  OpenAI-compatible and offline, NOT a model: replies echo the prompt, with exact o200k_base token counts.',
    `  models: ${models.join(', ')}`,
  ].join('\n');
}

/**
 * Serves a small OpenAI-compatible API: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `POST /v1/embeddings` and `GET /v1/models`, streaming included. Text is deterministic (an echo of the
 * prompt padded from a fixed cycle) and usage is what was really generated. Parameters it cannot honour
 * (temperature, tools, stop, …) are accepted and ignored.
 */
export async function startDemoUpstream(options: DemoUpstreamOptions = {}): Promise<DemoUpstream> {
  const models = options.models ?? DEFAULT_DEMO_MODELS;
  const observer = options.observer ?? {};
  let closing = false;

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let accepted: { call: UpstreamCall; streamed: StreamedSoFar } | undefined;
    const gone = new AbortController();
    res.on('close', () => {
      if (res.writableFinished || cutByUs.has(res)) return;
      gone.abort();
      if (accepted && !closing) observer.onClientGone?.(accepted.call, { ...accepted.streamed });
    });

    try {
      authorize(req.headers, options.apiKey);
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (req.method === 'GET' && (path === '/v1/models' || path.startsWith('/v1/models/'))) {
        sendJson(res, 200, modelsAnswer(models, path));
        return;
      }
      const route = req.method === 'POST' ? POST_ROUTES.get(path) : undefined;
      if (!route) throw new UpstreamError(404, `Invalid URL (${req.method} ${path})`);

      const body = parseJsonObject(await readBody(req));
      const request = PARSERS[route](body);
      const call: UpstreamCall = {
        id: `${ID_PREFIXES[route]}${randomBytes(12).toString('hex')}`,
        route,
        model: request.model,
        stream: request.stream,
        includeUsage: request.includeUsage,
        body,
        headers: req.headers,
      };
      accepted = { call, streamed: { chunks: 0, text: '' } };
      observer.onCall?.(call);
      const script = options.script?.(call);

      if (script?.kind === 'error') {
        const { status, message, type, code } = script;
        throw new UpstreamError(status, message ?? defaultMessage(status), { type, code });
      }
      if (script?.kind === 'latency') {
        try {
          await sleep(script.ms, undefined, { signal: gone.signal });
        } catch {
          return; // the client left while we waited
        }
      }
      if (script?.kind === 'hold') {
        const left = once(gone.signal, 'abort').then(() => 'gone' as const);
        if ((await Promise.race([script.until, left])) === 'gone') return;
      }
      if ((script?.kind === 'stall' || script?.kind === 'cut') && !call.stream) return;

      const answer = request.answer(call, Math.floor(Date.now() / 1000));
      if (call.stream && answer.stream) {
        const halt =
          script?.kind === 'stall' || script?.kind === 'cut' || script?.kind === 'pause' ? script : undefined;
        return await streamAnswer(res, call, answer, accepted.streamed, halt, observer);
      }
      if (sendJson(res, 200, answer.body)) observer.onUsage?.(call, answer.usage);
    } catch (err) {
      sendError(res, err instanceof UpstreamError ? err : new UpstreamError(500, describeFailure(err)));
    }
  };

  const server = createServer((req, res) => void serve(req, res));
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/v1`,
    port,
    close() {
      closing = true;
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** `GET /v1/models` lists the models; `GET /v1/models/{id}` describes one. */
function modelsAnswer(models: readonly string[], path: string): Record<string, unknown> {
  if (path === '/v1/models') return { object: 'list', data: models.map(modelObject) };
  const id = path.slice('/v1/models/'.length);
  const model = models.find((name) => name === id || encodeURIComponent(name) === id);
  if (model === undefined) {
    throw new UpstreamError(404, `The model '${id}' does not exist`, {
      param: 'model',
      code: 'model_not_found',
    });
  }
  return modelObject(model);
}

function modelObject(id: string): Record<string, unknown> {
  return { id, object: 'model', created: MODELS_CREATED, owned_by: 'quotad-demo' };
}
