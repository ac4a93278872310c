import { once } from 'node:events';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { countTokens, decode, encode } from 'gpt-tokenizer/encoding/o200k_base';

/** Opens every generated text, so nobody mistakes the demo's output for a model's. */
export const DEMO_TEXT_PREFIX = '[quotad demo upstream, not a model] ';

/** The `system_fingerprint` of every demo answer. */
export const DEMO_SYSTEM_FINGERPRINT = 'quotad-demo';

/** The models `GET /v1/models` lists unless told otherwise. */
export const DEFAULT_DEMO_MODELS: readonly string[] = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-4.1',
  'gpt-4.1-mini',
  'gpt-4.1-nano',
  'o3-mini',
  'text-embedding-3-small',
];

/** Output tokens per choice when a request sets neither `max_tokens` nor `max_completion_tokens`. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 64;

/** Larger request bodies are refused with 413. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Embedding length when the request does not ask for `dimensions`. */
export const DEFAULT_EMBEDDING_DIMENSIONS = 16;

const MAX_EMBEDDING_DIMENSIONS = 4096;
const MAX_CHOICES = 128;
/** How many words of the prompt a reply echoes. */
const ECHO_WORDS = 16;
/** A fixed date, so `GET /v1/models` answers the same on every run. */
const MODELS_CREATED = 1_700_000_000;

/** A reply pads its echo with two of these, starting at a place the prompt picks. */
const PADDING_SENTENCES = [
  'This text comes from a local demo server, so the whole path runs offline.',
  'Its token counts are exact: o200k_base counted every token you see.',
  'Ask again with other words and the echo changes with them.',
  'Raise max_tokens to read more of this cycle, or lower it to cut it short.',
];

export type UpstreamRoute = 'chat' | 'completions' | 'embeddings';

/** One accepted request (valid JSON with a model and its input), as scripts and observers see it. */
export interface UpstreamCall {
  /** The response id: `chatcmpl-…`, `cmpl-…`; embeddings answers carry none, theirs is `emb-…`. */
  id: string;
  route: UpstreamRoute;
  model: string;
  stream: boolean;
  /** `stream_options.include_usage`: the stream ends with a usage chunk. */
  includeUsage: boolean;
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
}

/** How to answer one call, for tests and benchmarks; without a script the call gets the normal answer. */
export type UpstreamScript =
  /** Answer with this HTTP status and an OpenAI-shaped error body, before any output. */
  | { kind: 'error'; status: number; message?: string; type?: string; code?: string | null }
  /**
   * Streaming: send the role chunk and `afterChunks` content chunks, then nothing more, holding the
   * connection open until the client goes away. A call that does not stream gets no answer at all.
   */
  | { kind: 'stall'; afterChunks: number }
  /** Streaming: send the role chunk and `afterChunks` content chunks, then drop the connection. */
  | { kind: 'cut'; afterChunks: number }
  /** Streaming: send the role chunk and `afterChunks` content chunks, then the rest once `until` settles. */
  | { kind: 'pause'; afterChunks: number; until: Promise<unknown> }
  /** Answer normally after `ms` milliseconds. */
  | { kind: 'latency'; ms: number }
  /** Answer normally once `until` settles (a test holds every call in flight at once). */
  | { kind: 'hold'; until: Promise<unknown> };

/** Token counts as the upstream reports them. */
export interface UpstreamUsage {
  prompt_tokens: number;
  /** Always 0 for embeddings, whose usage has no such field on the wire. */
  completion_tokens: number;
  total_tokens: number;
}

/** What a call sent before its client went away. */
export interface StreamedSoFar {
  /** Content chunks written (role, finish and usage chunks do not count). */
  chunks: number;
  /** Their text, concatenated. */
  text: string;
}

export interface UpstreamObserver {
  onCall?(call: UpstreamCall): void;
  /** Called exactly when a usage object goes to the client: in a whole body or as the usage chunk. */
  onUsage?(call: UpstreamCall, usage: UpstreamUsage): void;
  /** The client closed the connection before the response completed (not called while closing). */
  onClientGone?(call: UpstreamCall, streamed: StreamedSoFar): void;
}

export interface DemoUpstreamOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (the default) binds a free port; the bound one is returned. */
  port?: number;
  /** What `GET /v1/models` lists. Requests may name any model: the demo answers for all. */
  models?: readonly string[];
  /** When set, requests must carry `Authorization: Bearer <apiKey>`; otherwise any key or none passes. */
  apiKey?: string;
  script?: (call: UpstreamCall) => UpstreamScript | undefined;
  observer?: UpstreamObserver;
}

export interface DemoUpstream {
  /** The base URL an OpenAI SDK takes, ending in `/v1`. */
  url: string;
  port: number;
  /** Stops listening and drops open connections, stalled streams included. */
  close(): Promise<void>;
}

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
/** Answers this upstream broke off on purpose (a `cut` script): their close is not a client leaving. */
const cutByUs = new WeakSet<ServerResponse>();

/** Breaks the connection off mid-answer, after what was written so far has gone out. */
function cut(res: ServerResponse): void {
  cutByUs.add(res);
  if (res.socket) res.socket.end();
  else res.destroy();
}

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

type FinishReason = 'stop' | 'length';

/** One choice's text, already cut to the output limit. */
interface GeneratedChoice {
  index: number;
  text: string;
  finishReason: FinishReason;
}

/** How a text route shapes its stream chunks' `choices` entries. */
interface StreamShape {
  object: 'chat.completion.chunk' | 'text_completion';
  /** The chunk that opens each choice, when the protocol has one (chat's role chunk). */
  opening?: (index: number) => Record<string, unknown>;
  content: (index: number, piece: string) => Record<string, unknown>;
  finish: (index: number, reason: FinishReason) => Record<string, unknown>;
}

/** What a streaming call sends: the choices chunk by chunk, then the usage chunk if asked for. */
interface StreamPlan extends StreamShape {
  created: number;
  choices: GeneratedChoice[];
  /** The usage object as the wire carries it (chat's has token details). */
  usageBody: UpstreamUsage;
}

/** A generated answer, ready to send whole or as a stream. */
interface Answer {
  /** The whole response body, usage included. */
  body: Record<string, unknown>;
  usage: UpstreamUsage;
  /** What a streaming call sends instead; only the text routes have it. */
  stream?: StreamPlan;
}

/** A validated request: what the call record needs, and how to answer it. */
interface ParsedRequest {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  answer(call: UpstreamCall, created: number): Answer;
}

const POST_ROUTES = new Map<string, UpstreamRoute>([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/embeddings', 'embeddings'],
]);

const ID_PREFIXES: Record<UpstreamRoute, string> = {
  chat: 'chatcmpl-',
  completions: 'cmpl-',
  embeddings: 'emb-',
};

const PARSERS: Record<UpstreamRoute, (body: Record<string, unknown>) => ParsedRequest> = {
  chat: parseChat,
  completions: parseCompletions,
  embeddings: parseEmbeddings,
};

function parseChat(body: Record<string, unknown>): ParsedRequest {
  const model = requireModel(body);
  const messages = requireMessages(body);
  const n = optionalInteger(body, 'n', 1, MAX_CHOICES) ?? 1;
  const maxTokens = maxOutputTokens(body);
  const { stream, includeUsage } = streamFlags(body);
  return {
    model,
    stream,
    includeUsage,
    answer(call, created) {
      const prompt = echoSource(messages);
      const choices = Array.from({ length: n }, (_, index) =>
        generateChoice(index, prompt, index, maxTokens),
      );
      const usage = usageOf(chatPromptTokens(messages), choices);
      const usageBody = {
        ...usage,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: 0,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      };
      return {
        usage,
        body: {
          id: call.id,
          object: 'chat.completion',
          created,
          model: call.model,
          choices: choices.map((choice) => ({
            index: choice.index,
            message: { role: 'assistant', content: choice.text, refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: choice.finishReason,
          })),
          usage: usageBody,
          service_tier: 'default',
          system_fingerprint: DEMO_SYSTEM_FINGERPRINT,
        },
        stream: {
          created,
          choices,
          usageBody,
          object: 'chat.completion.chunk',
          opening: (index) => ({
            index,
            delta: { role: 'assistant', content: '', refusal: null },
            logprobs: null,
            finish_reason: null,
          }),
          content: (index, piece) => ({
            index,
            delta: { content: piece },
            logprobs: null,
            finish_reason: null,
          }),
          finish: (index, reason) => ({ index, delta: {}, logprobs: null, finish_reason: reason }),
        },
      };
    },
  };
}

function parseCompletions(body: Record<string, unknown>): ParsedRequest {
  const model = requireModel(body);
  const prompts = requireTextInputs(body, 'prompt');
  const n = optionalInteger(body, 'n', 1, MAX_CHOICES) ?? 1;
  const maxTokens = maxOutputTokens(body);
  const { stream, includeUsage } = streamFlags(body);
  return {
    model,
    stream,
    includeUsage,
    answer(call, created) {
      // As OpenAI does, each prompt gets n choices, numbered prompt by prompt.
      const choices = prompts.flatMap((prompt, p) =>
        Array.from({ length: n }, (_, j) => generateChoice(p * n + j, prompt.text, j, maxTokens)),
      );
      const usage = usageOf(
        prompts.reduce((sum, prompt) => sum + prompt.tokens, 0),
        choices,
      );
      return {
        usage,
        body: {
          id: call.id,
          object: 'text_completion',
          created,
          model: call.model,
          choices: choices.map((choice) => ({
            text: choice.text,
            index: choice.index,
            logprobs: null,
            finish_reason: choice.finishReason,
          })),
          usage,
          system_fingerprint: DEMO_SYSTEM_FINGERPRINT,
        },
        stream: {
          created,
          choices,
          usageBody: usage,
          object: 'text_completion',
          content: (index, piece) => ({ text: piece, index, logprobs: null, finish_reason: null }),
          finish: (index, reason) => ({ text: '', index, logprobs: null, finish_reason: reason }),
        },
      };
    },
  };
}

function parseEmbeddings(body: Record<string, unknown>): ParsedRequest {
  const model = requireModel(body);
  const inputs = requireTextInputs(body, 'input');
  const dimensions =
    optionalInteger(body, 'dimensions', 1, MAX_EMBEDDING_DIMENSIONS) ?? DEFAULT_EMBEDDING_DIMENSIONS;
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw new UpstreamError(
      400,
      `Invalid value for 'encoding_format': expected 'float' or 'base64', got ${JSON.stringify(format)}.`,
      { param: 'encoding_format', code: 'invalid_value' },
    );
  }
  return {
    model,
    stream: false,
    includeUsage: false,
    answer(call) {
      const promptTokens = inputs.reduce((sum, input) => sum + input.tokens, 0);
      return {
        usage: { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens },
        body: {
          object: 'list',
          data: inputs.map((input, index) => {
            const vector = embeddingVector(input.text, dimensions);
            const embedding =
              format === 'base64' ? Buffer.from(Float32Array.from(vector).buffer).toString('base64') : vector;
            return { object: 'embedding', index, embedding };
          }),
          model: call.model,
          usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
        },
      };
    },
  };
}

async function streamAnswer(
  res: ServerResponse,
  call: UpstreamCall,
  answer: Answer,
  streamed: StreamedSoFar,
  halt: Extract<UpstreamScript, { kind: 'stall' | 'cut' | 'pause' }> | undefined,
  observer: UpstreamObserver,
): Promise<void> {
  const plan = answer.stream;
  if (!plan || res.destroyed) return;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': requestId(),
  });
  // With include_usage every chunk carries `usage`, null until the last one, as OpenAI's do.
  const chunk = (choices: Record<string, unknown>[], usage: UpstreamUsage | null = null) => ({
    id: call.id,
    object: plan.object,
    created: plan.created,
    model: call.model,
    system_fingerprint: DEMO_SYSTEM_FINGERPRINT,
    choices,
    ...(call.includeUsage ? { usage } : {}),
  });
  const send = (data: unknown) => writeEvent(res, JSON.stringify(data));

  for (const choice of plan.choices) {
    if (plan.opening && !(await send(chunk([plan.opening(choice.index)])))) return;
    for (const piece of tokenPieces(choice.text)) {
      if (res.destroyed) return;
      if (halt?.kind === 'pause' && streamed.chunks === halt.afterChunks) await halt.until;
      else if (halt && halt.kind !== 'pause' && streamed.chunks >= halt.afterChunks) {
        if (halt.kind === 'cut') cut(res);
        return;
      }
      streamed.chunks += 1;
      streamed.text += piece;
      if (!(await send(chunk([plan.content(choice.index, piece)])))) return;
    }
    // A halted stream never finishes, even with content to spare.
    if (halt && halt.kind !== 'pause') {
      if (halt.kind === 'cut') cut(res);
      return;
    }
    if (!(await send(chunk([plan.finish(choice.index, choice.finishReason)])))) return;
  }
  if (call.includeUsage) {
    if (!(await send(chunk([], plan.usageBody)))) return;
    observer.onUsage?.(call, answer.usage);
  }
  if (await writeEvent(res, '[DONE]')) res.end();
}

/** Writes one SSE event, waiting out backpressure; false once the client is gone. */
function writeEvent(res: ServerResponse, data: string): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(`data: ${data}\n\n`)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const settle = (open: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(open);
    };
    const onDrain = () => settle(true);
    const onClose = () => settle(false);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/** The reply text for one choice: the demo prefix, an echo of the prompt, padding; cut to `maxTokens`. */
function generateChoice(index: number, prompt: string, variant: number, maxTokens: number): GeneratedChoice {
  const words = prompt.split(/\s+/).filter(Boolean);
  const echo =
    words.length === 0
      ? 'You said nothing.'
      : `You said: "${words.slice(0, ECHO_WORDS).join(' ')}${words.length > ECHO_WORDS ? ' …' : ''}".`;
  // The prompt picks where the cycle starts and each further choice moves one on, so n choices differ.
  const start =
    (createHash('sha256').update(prompt).digest().readUInt32BE(0) + variant) % PADDING_SENTENCES.length;
  const cycle = [...PADDING_SENTENCES.slice(start), ...PADDING_SENTENCES.slice(0, start)];
  const full = `${DEMO_TEXT_PREFIX}${echo} ${cycle.slice(0, 2).join(' ')}`;

  const tokens = encode(full);
  if (tokens.length <= maxTokens) return { index, text: full, finishReason: 'stop' };
  // Cut on a token boundary that is also a character boundary, so the text is a true prefix; and
  // recount, since a cut text may tokenize differently from the same tokens inside the whole.
  for (let keep = maxTokens; keep > 0; keep -= 1) {
    const text = decode(tokens.slice(0, keep));
    if (full.startsWith(text) && countTokens(text) <= maxTokens)
      return { index, text, finishReason: 'length' };
  }
  return { index, text: '', finishReason: 'length' };
}

/**
 * Splits text into stream pieces, one token each, except that tokens holding part of a character
 * travel together; the pieces concatenate back to the text.
 */
function tokenPieces(text: string): string[] {
  const pieces: string[] = [];
  let pending: number[] = [];
  let offset = 0;
  for (const token of encode(text)) {
    pending.push(token);
    const piece = decode(pending);
    if (text.startsWith(piece, offset)) {
      pieces.push(piece);
      offset += piece.length;
      pending = [];
    }
  }
  if (offset < text.length) pieces.push(text.slice(offset));
  return pieces;
}

function usageOf(promptTokens: number, choices: GeneratedChoice[]): UpstreamUsage {
  const completionTokens = choices.reduce((sum, choice) => sum + countTokens(choice.text), 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** The demo's own chat framing: each message costs its text plus 4 tokens, and the reply primer 3. */
function chatPromptTokens(messages: Record<string, unknown>[]): number {
  return messages.reduce(
    (sum, message) =>
      sum +
      4 +
      countTokens(messageText(message)) +
      (typeof message.name === 'string' ? countTokens(message.name) : 0),
    3,
  );
}

/** The last user message's text (or the last message's, when no user spoke). */
function echoSource(messages: Record<string, unknown>[]): string {
  const last = messages.findLast((message) => message.role === 'user') ?? messages.at(-1);
  return last ? messageText(last) : '';
}

/** A message's text: its string content, or the text parts of its content array. */
function messageText(message: Record<string, unknown>): string {
  const { content } = message;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) => (isRecord(part) && typeof part.text === 'string' ? part.text : ''))
    .filter(Boolean)
    .join('\n');
}

/** A unit vector of float32-exact numbers derived from the text's sha256, so base64 and float agree. */
function embeddingVector(text: string, dimensions: number): number[] {
  const values: number[] = [];
  for (let block = 0; values.length < dimensions; block += 1) {
    const digest = createHash('sha256').update(`${block}\n${text}`).digest();
    for (let at = 0; at + 4 <= digest.length && values.length < dimensions; at += 4) {
      values.push((digest.readUInt32BE(at) / 0xffffffff) * 2 - 1);
    }
  }
  const norm = Math.sqrt(values.reduce((sum, value) => sum + value * value, 0));
  return values.map((value) => Math.fround(value / norm));
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

/** An answer in OpenAI's error shape; thrown where a request fails, sent by the request handler. */
class UpstreamError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;

  constructor(
    status: number,
    message: string,
    details: { type?: string; param?: string; code?: string | null } = {},
  ) {
    super(message);
    this.status = status;
    this.type = details.type ?? defaultType(status);
    this.param = details.param ?? null;
    this.code = details.code !== undefined ? details.code : status === 429 ? 'rate_limit_exceeded' : null;
  }
}

function defaultType(status: number): string {
  if (status === 429) return 'requests';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

function defaultMessage(status: number): string {
  if (status === 429) return 'Rate limit reached (scripted by the quotad demo upstream).';
  if (status >= 500)
    return 'The server had an error while processing your request (scripted by the quotad demo upstream).';
  return `Request failed with status ${status} (scripted by the quotad demo upstream).`;
}

function describeFailure(err: unknown): string {
  return `The demo upstream failed: ${err instanceof Error ? err.message : String(err)}`;
}

function authorize(headers: IncomingHttpHeaders, apiKey: string | undefined): void {
  if (apiKey === undefined) return;
  const given = headers.authorization?.match(/^Bearer (.+)$/)?.[1];
  if (given === undefined) {
    throw new UpstreamError(
      401,
      "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
      { code: 'invalid_api_key' },
    );
  }
  const digest = (key: string) => createHash('sha256').update(key).digest();
  if (!timingSafeEqual(digest(given), digest(apiKey))) {
    throw new UpstreamError(401, 'Incorrect API key provided.', { code: 'invalid_api_key' });
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  const tooLarge = () =>
    new UpstreamError(413, `Request body too large: the limit is ${MAX_BODY_BYTES} bytes.`, {
      code: 'request_too_large',
    });
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) return void chunks.push(chunk);
      // Keep draining without keeping, so the 413 can still be written.
      req.off('data', onData);
      req.resume();
      reject(tooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('close', () => reject(new Error('the client went away before sending the whole body')));
  });
}

function parseJsonObject(raw: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    value = undefined;
  }
  if (!isRecord(value)) {
    throw new UpstreamError(
      400,
      'We could not parse the JSON body of your request. The OpenAI API expects a JSON object, but what was sent was not one.',
    );
  }
  return value;
}

function requireModel(body: Record<string, unknown>): string {
  const { model } = body;
  if (model === undefined || model === '') {
    throw new UpstreamError(400, 'you must provide a model parameter', { param: 'model' });
  }
  if (typeof model !== 'string') throw invalidType('model', 'a string', model);
  return model;
}

function requireMessages(body: Record<string, unknown>): Record<string, unknown>[] {
  const { messages } = body;
  if (messages === undefined) throw missingParameter('messages');
  if (!Array.isArray(messages)) throw invalidType('messages', 'an array of objects', messages);
  if (messages.length === 0) throw emptyArray('messages');
  return messages.map((message: unknown, index) => {
    if (!isRecord(message)) throw invalidType(`messages[${index}]`, 'an object', message);
    if (typeof message.role !== 'string') throw missingParameter(`messages[${index}].role`);
    return message;
  });
}

/** A prompt or embedding input: a string, strings, token ids, or lists of token ids; one entry per input. */
function requireTextInputs(body: Record<string, unknown>, param: string): { text: string; tokens: number }[] {
  const value = body[param];
  if (value === undefined) throw missingParameter(param);
  if (typeof value === 'string') return [textInput(value, param)];
  if (!Array.isArray(value)) throw invalidType(param, 'a string or an array', value);
  if (value.length === 0) throw emptyArray(param);
  if (value.every((item) => typeof item === 'number')) return [tokenInput(value, param)];
  return value.map((item: unknown, index) => {
    if (typeof item === 'string') return textInput(item, `${param}[${index}]`);
    if (Array.isArray(item) && item.every((id) => typeof id === 'number')) {
      return tokenInput(item, `${param}[${index}]`);
    }
    throw invalidType(`${param}[${index}]`, 'a string or an array of token ids', item);
  });
}

function textInput(text: string, param: string): { text: string; tokens: number } {
  if (text === '')
    throw new UpstreamError(400, `Invalid '${param}': empty string.`, { param, code: 'empty_string' });
  return { text, tokens: countTokens(text) };
}

function tokenInput(ids: number[], param: string): { text: string; tokens: number } {
  if (ids.length === 0) throw emptyArray(param);
  try {
    return { text: decode(ids), tokens: ids.length };
  } catch {
    throw new UpstreamError(400, `Invalid '${param}': not o200k_base token ids.`, {
      param,
      code: 'invalid_value',
    });
  }
}

/** `max_completion_tokens`, else `max_tokens`, else the default. */
function maxOutputTokens(body: Record<string, unknown>): number {
  return (
    optionalInteger(body, 'max_completion_tokens', 1) ??
    optionalInteger(body, 'max_tokens', 1) ??
    DEFAULT_MAX_OUTPUT_TOKENS
  );
}

function streamFlags(body: Record<string, unknown>): { stream: boolean; includeUsage: boolean } {
  const { stream, stream_options: streamOptions } = body;
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    throw invalidType('stream', 'a boolean', stream);
  }
  if (streamOptions !== undefined && streamOptions !== null) {
    if (stream !== true) {
      throw new UpstreamError(
        400,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        {
          param: 'stream_options',
          code: 'invalid_value',
        },
      );
    }
    if (!isRecord(streamOptions)) throw invalidType('stream_options', 'an object', streamOptions);
  }
  return {
    stream: stream === true,
    includeUsage: isRecord(streamOptions) && streamOptions.include_usage === true,
  };
}

function optionalInteger(
  body: Record<string, unknown>,
  param: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = body[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(param, 'an integer', value);
  if (value < min) {
    throw new UpstreamError(
      400,
      `Invalid '${param}': integer below minimum value. Expected a value >= ${min}, but got ${value} instead.`,
      { param, code: 'integer_below_min_value' },
    );
  }
  if (value > max) {
    throw new UpstreamError(
      400,
      `Invalid '${param}': integer above maximum value. Expected a value <= ${max}, but got ${value} instead.`,
      { param, code: 'integer_above_max_value' },
    );
  }
  return value;
}

function missingParameter(param: string): UpstreamError {
  return new UpstreamError(400, `Missing required parameter: '${param}'.`, {
    param,
    code: 'missing_required_parameter',
  });
}

function emptyArray(param: string): UpstreamError {
  return new UpstreamError(
    400,
    `Invalid '${param}': empty array. Expected an array with minimum length 1, but got an empty array instead.`,
    { param, code: 'empty_array' },
  );
}

function invalidType(param: string, expected: string, value: unknown): UpstreamError {
  return new UpstreamError(
    400,
    `Invalid type for '${param}': expected ${expected}, but got ${describeType(value)} instead.`,
    { param, code: 'invalid_type' },
  );
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a decimal';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requestId(): string {
  return `req_${randomBytes(12).toString('hex')}`;
}

/** Sends a whole JSON answer; false when the client is already gone. */
function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): boolean {
  if (res.headersSent || res.destroyed) return false;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-request-id': requestId(),
    ...headers,
  });
  res.end(text);
  return true;
}

function sendError(res: ServerResponse, error: UpstreamError): void {
  if (res.headersSent) {
    res.destroy(); // a stream cannot turn into an error body; cutting it is what the client can notice
    return;
  }
  const { message, type, param, code, status } = error;
  // The rest of an oversized body is not worth reading: close the connection after the answer.
  const headers: Record<string, string> = status === 413 ? { connection: 'close' } : {};
  sendJson(res, status, { error: { message, type, param, code } }, headers);
}
