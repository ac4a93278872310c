import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import * as grpc from '@grpc/grpc-js';
import { AUTHORITY_TOKEN_REFUSAL, REFUSAL_TRAILER } from '../api/trailers.js';
import type { Logger } from '../telemetry/logger.js';
import type { GatewayMetrics, GatewayRoute } from '../telemetry/gateway-metrics.js';
import { isGrpcError } from '../api/client.js';
import { isTransient, type AuthorityClient } from './authority-client.js';
import { credentialOf, type Authenticator, type Caller } from './auth.js';
import type { TextCounting } from './estimate.js';
import type { KeyConfirmations } from './key-confirmations.js';
import { KEY_REFUSALS, keyRefusal, quotaUnavailable, type KeyRefusal } from './decision.js';
import type { CallRecord, ModelCallHandler, Responder } from './model-call.js';
import {
  GATEWAY_ERRORS,
  HttpError,
  catalogueBody,
  gatewayError,
  invalidRequest,
  notFound,
  payloadTooLarge,
  permissionError,
} from './errors.js';
import { MAX_JSON_DEPTH, nestingBeyond } from './json-nesting.js';
import { rateLimitHeaders } from './rate-limit-headers.js';
import { signatureHeaders, type SentSignature } from './signature.js';
import type { RequestLog } from './request-log.js';
import { parseModelCall, type ModelRoute } from './requests.js';
import { modelsBody, usageBody } from '../api/report-bodies.js';

/** How long clients may take, and how many may connect at once. */
export interface ConnectionLimits {
  /** A request's headers must all arrive within this of its first byte (a new connection's: of its opening). */
  headerTimeoutMs: number;
  /** The whole request, body included, must arrive within this of its first byte. */
  bodyTimeoutMs: number;
  /** A kept-alive connection is closed after this long without a next request. */
  idleTimeoutMs: number;
  /** Open client connections at most; Node closes one past it as soon as it is accepted. */
  maxConnections: number;
}

export interface GatewayServerOptions {
  authority: AuthorityClient;
  authenticator: Authenticator;
  /** Keys the authority recently confirmed: the model routes ask it about any other before reading a body. */
  keys: KeyConfirmations;
  models: ModelCallHandler;
  metrics: GatewayMetrics;
  logger: Logger;
  authorityTimeoutMs: number;
  maxBodyBytes: number;
  trustedProxies: string[];
  connections: ConnectionLimits;
  /** Where each request's line also goes (--request-log); unset: the process log only. */
  requestLog?: RequestLog;
}

const MAX_REQUEST_ID_LENGTH = 128;
/** How long /readyz waits for a connection to come up: well inside a probe's default 1 s timeout. */
const READY_WAIT_MS = 500;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;
/** Once shutdown has begun, a connection whose answer started before it (a stream) may idle this long. */
const DRAINING_IDLE_MS = 1_000;

/** The request's id: the client's Idempotency-Key or X-Request-Id, else a new one. Retries reuse it. */
function requestIdOf(request: FastifyRequest): string {
  for (const name of ['idempotency-key', 'x-request-id']) {
    const value = request.headers[name];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value.length > MAX_REQUEST_ID_LENGTH || !PRINTABLE_ASCII.test(value)) {
      throw invalidRequest(
        `The ${name} header must be 1 to ${MAX_REQUEST_ID_LENGTH} printable ASCII characters.`,
        null,
        'invalid_request_id',
      );
    }
    return value;
  }
  return randomUUID();
}

/**
 * The id an answer carries in `x-request-id` when no route opened the request (a 404, an unparsable body):
 * the client's, when it is a valid one, else a new one. Never a refusal of its own.
 */
function answerIdOf(headers: IncomingMessage['headers']): string {
  for (const name of ['idempotency-key', 'x-request-id']) {
    const value = headers[name];
    if (typeof value === 'string' && value.length <= MAX_REQUEST_ID_LENGTH && PRINTABLE_ASCII.test(value)) {
      return value;
    }
  }
  return randomUUID();
}

/**
 * A request's log record, its caller once authenticated (and confirmed, for a key on a model route), and
 * how its prompt is counted.
 */
interface RequestContext {
  record: CallRecord;
  caller?: Caller;
  /** How the prompt is counted: by bytes while the caller's key could not be confirmed. */
  counting: TextCounting;
  /** Settles when a model route's handler is done (its settlement, if any, has started by then). */
  handled?: Promise<unknown>;
  /** The request's signature headers, when it carries them; the body's SHA-256 is added once it is read. */
  signature?: SentSignature;
  /** performance.now() when the route took the request, before its key and body. */
  receivedAt: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The gateway's state for this request (decorateRequest); null until the route opens it. */
    callContext: RequestContext | null;
  }
}

const MODEL_ROUTES: Record<string, { route: ModelRoute; metric: GatewayRoute }> = {
  '/v1/chat/completions': { route: 'chat', metric: 'chat_completions' },
  '/v1/completions': { route: 'completions', metric: 'completions' },
  '/v1/embeddings': { route: 'embeddings', metric: 'embeddings' },
};

const OTHER_ROUTES: Record<string, GatewayRoute> = {
  '/v1/models': 'models',
  '/v1/usage': 'usage',
  '/healthz': 'healthz',
  '/readyz': 'readyz',
  '/metrics': 'metrics',
};

/** Probes and scrapes come every few seconds; their lines would drown the traffic. */
const QUIET_ROUTES = new Set<GatewayRoute>(['healthz', 'readyz', 'metrics']);

function metricRoute(url: string | undefined): GatewayRoute {
  if (url === undefined) return 'other';
  return MODEL_ROUTES[url]?.metric ?? OTHER_ROUTES[url] ?? 'other';
}

/**
 * Throws a failed authority call for a caller's own reports (usage, models) as an HTTP error. The authority
 * names a refused key in the quotad-refusal trailer, as CheckQuota names it in its code: one mapping.
 */
function reportFailure(error: unknown): never {
  if (!isGrpcError(error)) throw error;
  const trailer = error.metadata.get(REFUSAL_TRAILER)[0];
  const refusal = typeof trailer === 'string' ? trailer : undefined;
  // The authority refused this gateway's own token (QUOTAD_AUTHORITY_TOKEN), not the caller's key.
  if (error.code === grpc.status.UNAUTHENTICATED && refusal === AUTHORITY_TOKEN_REFUSAL)
    throw quotaUnavailable();
  if (refusal !== undefined && KEY_REFUSALS.includes(refusal))
    throw keyRefusal(refusal as KeyRefusal, error.details);
  // An authority that names no refusal: a bare UNAUTHENTICATED is an unknown key, PERMISSION_DENIED an ended one.
  if (error.code === grpc.status.UNAUTHENTICATED) throw keyRefusal('INVALID_KEY', error.details);
  if (error.code === grpc.status.PERMISSION_DENIED) throw keyRefusal('KEY_EXPIRED', error.details);
  if (error.code === grpc.status.INVALID_ARGUMENT) {
    throw permissionError(`Your credential cannot be used: ${error.details}.`, 'unknown_tier');
  }
  throw isTransient(error) ? quotaUnavailable() : error;
}

/**
 * Answers what Node refuses before a route sees it (a header or body timeout, headers too large, bytes that
 * are not HTTP) with an OpenAI-shaped error, then closes the connection.
 */
function refuseClient(
  error: NodeJS.ErrnoException,
  socket: Socket,
  answering: (socket: Socket) => boolean,
  metrics: GatewayMetrics,
): void {
  const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  if (timedOut) metrics.requestTimeouts.inc();
  // Bytes of an answer already out: an error written now would corrupt it.
  if (!socket.writable || answering(socket)) {
    socket.destroy();
    return;
  }
  const [name, reason] = timedOut
    ? (['request_timeout', 'Request Timeout'] as const)
    : error.code === 'HPE_HEADER_OVERFLOW'
      ? (['headers_too_large', 'Request Header Fields Too Large'] as const)
      : (['invalid_http', 'Bad Request'] as const);
  const status = GATEWAY_ERRORS[name].status;
  const body = JSON.stringify(catalogueBody(name));
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  socket.destroySoon();
}

function fastifyResponder(reply: FastifyReply, draining: () => boolean): Responder {
  return {
    header: (name, value) => void reply.header(name, value),
    send: (status, json) => void reply.code(status).type('application/json').send(json),
    hijack: () => {
      reply.hijack();
      if (draining()) reply.raw.setHeader('connection', 'close');
      return reply.raw;
    },
    onClientGone: (listener) => {
      const res = reply.raw;
      const gone = () => {
        if (!res.writableFinished) listener();
      };
      // The client may have left while the check was being decided: 'close' has fired already then.
      if (res.destroyed || res.socket?.destroyed === true) gone();
      else res.once('close', gone);
    },
    headers: () => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
      }
      return headers;
    },
  };
}

/**
 * The Fastify instance with the connection limits and timeouts of the options, its connections counted,
 * and what Node refuses before a route sees it answered as an OpenAI error (refuseClient).
 */
function httpServer(options: GatewayServerOptions): {
  app: FastifyInstance;
  server: FastifyInstance['server'];
} {
  const { metrics, connections: limits } = options;
  /** The answers each connection has in progress, so a late refusal never writes into one. */
  const answers = new WeakMap<Socket, Set<ServerResponse>>();
  const answering = (socket: Socket) => {
    for (const res of answers.get(socket) ?? []) if (res.headersSent) return true;
    return false;
  };
  const app = Fastify({
    logger: false,
    bodyLimit: options.maxBodyBytes,
    trustProxy: options.trustedProxies.length > 0 ? options.trustedProxies : false,
    // While draining, a request on a connection still open is served (with Connection: close), not refused.
    return503OnClosing: false,
    http: {
      headersTimeout: limits.headerTimeoutMs,
      requestTimeout: limits.bodyTimeoutMs,
      // These two are the only timers on a connection with a request in flight, so a slow upstream (minutes
      // for a whole answer) or a quiet stream is waited for. Node checks them this often; its default, 30 s,
      // would let either run that much longer.
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(limits.headerTimeoutMs / 4))),
    },
    requestTimeout: limits.bodyTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    clientErrorHandler: (error, socket) => refuseClient(error, socket, answering, metrics),
  });
  const server = app.server;
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => metrics.connectionsRefused.inc());
  server.on('connection', (socket: Socket) => {
    metrics.openConnections.inc();
    socket.once('close', () => metrics.openConnections.dec());
  });
  // A body announced larger than the limit is refused on its Content-Length, before Node's automatic
  // `100 Continue` would invite the client to upload it. With this listener Node sends no 100 itself.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length']);
    if (Number.isFinite(length) && length > options.maxBodyBytes) {
      const body = JSON.stringify(payloadTooLarge(options.maxBodyBytes).body());
      res.writeHead(413, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'x-request-id': answerIdOf(req.headers),
        connection: 'close',
      });
      res.end(body);
      metrics.requests.inc({ route: metricRoute(req.url), status: '413' });
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    let inProgress = answers.get(socket);
    if (!inProgress) answers.set(socket, (inProgress = new Set()));
    inProgress.add(res);
    res.once('close', () => inProgress.delete(res));
  });
  return { app, server };
}

/**
 * The OpenAI-compatible HTTP API: the model routes (metered through the authority), the caller's
 * models and usage, and the operational endpoints, which are never metered.
 */
export function createGatewayServer(options: GatewayServerOptions): FastifyInstance {
  const { authority, authenticator, metrics, logger } = options;
  const { app, server } = httpServer(options);
  // Nesting is bounded before JSON.parse, the estimate, the SDK or a log line walks the body: a deep
  // body would take seconds to parse and overflow the stack of every recursive walk after.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const tooDeep = nestingBeyond(body as string, MAX_JSON_DEPTH);
    if (tooDeep) {
      const where = tooDeep.param === null ? '' : ` in '${tooDeep.param}'`;
      const message = `The request body nests deeper than ${MAX_JSON_DEPTH} levels${where}.`;
      done(invalidRequest(message, tooDeep.param, 'nesting_too_deep'), undefined);
      return;
    }
    // The signature covers the raw body: hashed as received, before parsing.
    const signature = request.callContext?.signature;
    if (signature)
      signature.bodySha256 = createHash('sha256')
        .update(body as string, 'utf8')
        .digest();
    // Joining a 4 MB body's chunks (in the scan) and parsing it take ~15 ms each: two turns, not one.
    setImmediate(() => parseJson(request, body as string, done));
  });

  // Each request's call context, as fastify's idiom for per-request state: null until begin() opens it.
  app.decorateRequest('callContext', null);

  // Once shutdown has begun, every answer says Connection: close and Node closes its connection after it,
  // so no keep-alive client (undici, the OpenAI SDKs) sends another request on a socket being torn down.
  // Idle connections are closed by close() itself; one whose answer started earlier (a stream) told its
  // client keep-alive, so it gets a short idle time after its answer instead of --idle-timeout.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    server.keepAliveTimeout = Math.min(server.keepAliveTimeout, DRAINING_IDLE_MS);
  });
  app.addHook('onSend', async (request, reply, payload) => {
    if (closing) void reply.header('connection', 'close');
    // Every answer names its request, those no route opened included (404, 413, 415, unparsable JSON).
    if (!reply.hasHeader('x-request-id')) void reply.header('x-request-id', answerIdOf(request.headers));
    return payload;
  });

  app.addHook('onRequest', async (request, reply) => {
    const started = performance.now();
    const route = metricRoute(request.routeOptions.url);
    metrics.inFlight.inc();
    // On close, not onResponse: streams take the socket over, and a client may leave early.
    reply.raw.once('close', () => {
      metrics.inFlight.dec();
      const seconds = (performance.now() - started) / 1000;
      const status = reply.raw.statusCode;
      metrics.requests.inc({ route, status: String(status) });
      metrics.requestDuration.observe({ route }, seconds);
      const context = request.callContext;
      const line = {
        ...context?.record,
        // A promise, for the request log file; JSON leaves an undefined field out.
        settlement: undefined,
        method: request.method,
        route: request.routeOptions.url ?? request.url.split('?')[0],
        status,
        client: request.ip,
        ms: Math.round(seconds * 10_000) / 10,
        ...(reply.raw.writableFinished ? {} : { clientGone: true }),
      };
      if (QUIET_ROUTES.has(route)) logger.debug(line, 'request');
      else logger.info(line, 'request');
      if (options.requestLog && !QUIET_ROUTES.has(route)) {
        const timeMs = Date.now();
        // The cost is known once the settlement is answered, which may come after the client has left.
        const entry = Promise.resolve(context?.handled)
          .catch(() => undefined)
          .then(() => context?.record.settlement)
          .then((usdMicros) => ({
            timeMs,
            requestId: line.requestId ?? '',
            keyId: line.keyId ?? line.subject ?? '',
            client: line.client,
            model: line.model ?? '',
            status,
            inputTokens: line.inputTokens,
            outputTokens: context?.record.outputTokens,
            usdMicros,
            latencyMs: line.ms,
          }));
        options.requestLog.record(entry);
      }
    });
  });

  /**
   * The limits of a caller the gateway identified but refused for its request (a 400, a 403 for the
   * model, a 409), so that answer carries the rate-limit headers too. Best effort: a caller the authority
   * itself refuses (an unknown or revoked key) has none to show.
   */
  async function limitHeadersFor(
    request: FastifyRequest,
    reply: FastifyReply,
    status: number,
  ): Promise<void> {
    const caller = request.callContext?.caller;
    if (!caller || reply.hasHeader('x-ratelimit-limit') || status < 400 || status >= 500 || status === 401) {
      return;
    }
    try {
      const usage = await authority.usage(credentialOf(caller), options.authorityTimeoutMs);
      void reply.headers(rateLimitHeaders(usage.limits));
    } catch {
      // The error answer goes out without them.
    }
  }

  app.setErrorHandler(async (error: FastifyError | HttpError, request, reply) => {
    let answer: HttpError;
    if (error instanceof HttpError) answer = error;
    else if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') answer = payloadTooLarge(options.maxBodyBytes);
    else if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      answer = gatewayError('unsupported_media_type');
    } else if (error.statusCode === 400) {
      answer = invalidRequest(
        `We could not parse the JSON body of your request: ${error.message}.`,
        null,
        'invalid_json',
      );
    } else {
      logger.error({ err: error, route: request.routeOptions.url }, 'unexpected error');
      answer = gatewayError('internal_error');
    }
    await limitHeadersFor(request, reply, answer.status);
    return reply
      .code(answer.status)
      .headers(answer.headers ?? {})
      .send(answer.body());
  });

  app.setNotFoundHandler((request, reply) => {
    const error = notFound(`Unknown request URL: ${request.method} ${request.url.split('?')[0]}.`);
    void reply.code(404).send(error.body());
  });

  /** Authenticates the request from its headers and opens its record; every metered route starts here. */
  async function begin(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<{ caller: Caller; record: CallRecord }> {
    const context: RequestContext = {
      record: { requestId: requestIdOf(request) },
      counting: 'tokenizer',
      receivedAt: performance.now(),
    };
    const { record } = context;
    request.callContext = context;
    void reply.header('x-request-id', record.requestId);
    const caller = await authenticator.authenticate(request.headers);
    context.caller = caller;
    if (caller.kind === 'jwt') record.subject = caller.principal.subject;
    return { caller, record };
  }

  /**
   * Makes sure the authority knows a key before its request's body is read: a key confirmed lately costs
   * nothing more, any other one ListModels call (shared by its requests meanwhile). Unknown, revoked or
   * expired: 401 or 403, with the body unread. When the authority cannot answer in time, the request goes
   * on and CheckQuota decides, its prompt counted by UTF-8 bytes (an upper bound) rather than the
   * tokenizer, so an unknown key never costs tokenizer time.
   */
  async function confirmKey(request: FastifyRequest, sha256: Buffer): Promise<void> {
    if (options.keys.isConfirmed(sha256)) return;
    const context = request.callContext as RequestContext;
    // Until the authority answers, a refusal carries no limit headers: the key may have none.
    const caller = context.caller;
    delete context.caller;
    try {
      // ListModels answers only for a usable key: it refuses an unknown, revoked or expired one.
      // Half the check's deadline, so a silent authority costs a new key's request 1.5 of it, not 2.
      await options.models.whilePending(() =>
        options.keys.confirmOnce(sha256, async () => {
          await authority.models({ apiKeySha256: sha256 }, options.authorityTimeoutMs / 2);
          options.keys.confirm(sha256);
        }),
      );
    } catch (error) {
      if (!isTransient(error)) reportFailure(error);
      context.counting = 'bytes';
    }
    context.caller = caller;
  }

  for (const [url, { route }] of Object.entries(MODEL_ROUTES)) {
    app.post(
      url,
      {
        // Before the body is read: who is calling is settled from the headers and, for a key, the authority.
        onRequest: async (request, reply) => {
          const { caller } = await begin(request, reply);
          if (caller.kind !== 'key') return;
          // A malformed or partial signature is refused here, before the body is read or anything charged.
          const signature = signatureHeaders(
            request.headers,
            request.method,
            request.url.split('?')[0] ?? '',
          );
          if (signature) (request.callContext as RequestContext).signature = signature;
          await confirmKey(request, caller.sha256);
        },
      },
      async (request, reply) => {
        const context = request.callContext as RequestContext & { caller: Caller };
        const { caller, record, counting, signature } = context;
        const call = parseModelCall(route, request.body);
        metrics.stageDuration.observe({ stage: 'intake' }, (performance.now() - context.receivedAt) / 1000);
        record.model = call.model;
        context.handled = options.models.handle(
          call,
          caller,
          record,
          fastifyResponder(reply, () => closing),
          counting,
          signature,
        );
        await context.handled;
        return reply;
      },
    );
  }

  app.get('/v1/models', async (request, reply) => {
    const { caller, record } = await begin(request, reply);
    const answer = await authority
      .models(credentialOf(caller), options.authorityTimeoutMs)
      .catch(reportFailure);
    if (answer.key) record.keyId = answer.key.id;
    if (answer.key && caller.kind === 'key') options.keys.confirm(caller.sha256);
    if (answer.warning) void reply.header('x-quotad-warning', answer.warning);
    return modelsBody(answer);
  });

  app.get('/v1/usage', async (request, reply) => {
    const { caller, record } = await begin(request, reply);
    const usage = await authority
      .usage(credentialOf(caller), options.authorityTimeoutMs)
      .catch(reportFailure);
    if (usage.key) record.keyId = usage.key.id;
    if (usage.key && caller.kind === 'key') options.keys.confirm(caller.sha256);
    void reply.headers(rateLimitHeaders(usage.limits));
    if (usage.warning) void reply.header('x-quotad-warning', usage.warning);
    return usageBody(usage);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const ready = await authority.ready(READY_WAIT_MS);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'authority unreachable' });
  });

  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await metrics.render();
    return reply.type(contentType).send(body);
  });

  return app;
}
