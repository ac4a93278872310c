/** The demo upstream's request handling: authorization, reading and validating bodies, and each route's answer. */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { countTokens, decode } from 'gpt-tokenizer/encoding/o200k_base';
import type { UpstreamCall, UpstreamRoute, UpstreamUsage } from './upstream-contract.js';
import {
  DEFAULT_EMBEDDING_DIMENSIONS,
  DEFAULT_MAX_OUTPUT_TOKENS,
  DEMO_SYSTEM_FINGERPRINT,
  MAX_BODY_BYTES,
  MAX_CHOICES,
  MAX_EMBEDDING_DIMENSIONS,
} from './upstream-contract.js';
import { UpstreamError, emptyArray, invalidType, missingParameter } from './upstream-errors.js';
import type { FinishReason, GeneratedChoice } from './upstream-text.js';
import {
  chatPromptTokens,
  echoSource,
  embeddingVector,
  generateChoice,
  isRecord,
  usageOf,
} from './upstream-text.js';

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
export interface Answer {
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

export const POST_ROUTES = new Map<string, UpstreamRoute>([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/embeddings', 'embeddings'],
]);

export const ID_PREFIXES: Record<UpstreamRoute, string> = {
  chat: 'chatcmpl-',
  completions: 'cmpl-',
  embeddings: 'emb-',
};

export const PARSERS: Record<UpstreamRoute, (body: Record<string, unknown>) => ParsedRequest> = {
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

export function authorize(headers: IncomingHttpHeaders, apiKey: string | undefined): void {
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

export function readBody(req: IncomingMessage): Promise<Buffer> {
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

export function parseJsonObject(raw: Buffer): Record<string, unknown> {
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

export function requestId(): string {
  return `req_${randomBytes(12).toString('hex')}`;
}
