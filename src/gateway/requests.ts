import { MAX_TOKENS } from '../core/quota.js';
import { type HttpError, invalidRequest } from './errors.js';

/** The three model routes the gateway meters. */
export type ModelRoute = 'chat' | 'completions' | 'embeddings';

/** What the gateway needs to know about a model call to charge it; the body itself goes upstream as sent. */
export interface ModelCall {
  route: ModelRoute;
  model: string;
  stream: boolean;
  /** The client asked for stream_options.include_usage. */
  clientWantsUsage: boolean;
  /**
   * The output cap the client set: which parameter, and its value (max_completion_tokens wins over
   * max_tokens for chat); undefined when unset (embeddings: always undefined). Upstream, legacy
   * completions default max_tokens to 16 when it is unset.
   */
  maxOutput: { param: 'max_tokens' | 'max_completion_tokens'; value: number } | undefined;
  /**
   * Completions generated per prompt (n, default 1; for legacy completions max(n, best_of) times the
   * number of prompts, since every best_of candidate is generated and billed); output allowance multiplies by it.
   */
  choices: number;
  /** The parameter holding the input, for error messages: 'messages' | 'prompt' | 'input'. */
  inputParam: 'messages' | 'prompt' | 'input';
  /** The original body, untouched. */
  body: Record<string, unknown>;
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];
const CONTENT_PART_TYPES = ['text', 'image_url', 'input_audio', 'file', 'refusal'];
const MAX_CHOICES = 128;
const MAX_BEST_OF = 20;
/** Token ids are int32 in inference servers; a larger number is no token of any vocabulary. */
const MAX_TOKEN_ID = 2 ** 31 - 1;

/**
 * Validates a chat, completions or embeddings body and extracts what metering needs. Throws a 400
 * HttpError naming the offending parameter as OpenAI names it (`messages[2].role`). Unknown fields pass.
 */
export function parseModelCall(route: ModelRoute, body: unknown): ModelCall {
  if (!isRecord(body)) {
    throw invalidRequest(
      `The request body must be a JSON object, but got ${typeName(body)} instead.`,
      null,
      'invalid_type',
    );
  }
  const model = requiredString(body, 'model', 'model');

  if (route === 'embeddings') {
    checkTextOrTokens(body.input, 'input');
    return {
      route,
      model,
      stream: false,
      clientWantsUsage: false,
      maxOutput: undefined,
      choices: 1,
      inputParam: 'input',
      body,
    };
  }

  const stream = optionalBoolean(body, 'stream') ?? false;
  const clientWantsUsage = streamOptionsIncludeUsage(body, stream);
  const n = optionalInteger(body, 'n', 1, MAX_CHOICES) ?? 1;

  if (route === 'chat') {
    checkMessages(body.messages);
    const maxCompletionTokens = optionalInteger(body, 'max_completion_tokens', 1, MAX_TOKENS);
    const maxTokens = optionalInteger(body, 'max_tokens', 1, MAX_TOKENS);
    const maxOutput =
      maxCompletionTokens !== undefined
        ? { param: 'max_completion_tokens' as const, value: maxCompletionTokens }
        : maxTokens !== undefined
          ? { param: 'max_tokens' as const, value: maxTokens }
          : undefined;
    checkOutputInAll(maxOutput, n);
    return { route, model, stream, clientWantsUsage, maxOutput, choices: n, inputParam: 'messages', body };
  }

  const prompts = checkTextOrTokens(body.prompt, 'prompt');
  const maxTokens = optionalInteger(body, 'max_tokens', 1, MAX_TOKENS);
  const bestOf = optionalInteger(body, 'best_of', 1, MAX_BEST_OF);
  if (bestOf !== undefined && bestOf < n) {
    throw invalidRequest(
      `Invalid 'best_of': must be at least 'n' (${n}), but got ${bestOf} instead.`,
      'best_of',
      'invalid_value',
    );
  }
  const maxOutput = maxTokens !== undefined ? { param: 'max_tokens' as const, value: maxTokens } : undefined;
  const choices = Math.max(n, bestOf ?? 1) * prompts;
  checkOutputInAll(maxOutput, choices);
  return { route, model, stream, clientWantsUsage, maxOutput, choices, inputParam: 'prompt', body };
}

/** The output reserved is the cap times the choices; that product must fit the authority's range too. */
function checkOutputInAll(maxOutput: ModelCall['maxOutput'], choices: number): void {
  if (!maxOutput || maxOutput.value * choices <= MAX_TOKENS) return;
  const { param, value } = maxOutput;
  throw invalidRequest(
    `Invalid '${param}': ${value} tokens for each of ${choices} choices is ${value * choices} in all, above the maximum of ${MAX_TOKENS}.`,
    param,
    'integer_above_max_value',
  );
}

function streamOptionsIncludeUsage(body: Record<string, unknown>, stream: boolean): boolean {
  const options = body.stream_options;
  if (options === undefined || options === null) return false;
  // OpenAI answers 400 to stream_options on a non-streaming call; so do we, before charging anything.
  if (!stream) {
    throw invalidRequest(
      "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      'stream_options',
    );
  }
  if (!isRecord(options)) throw invalidType('stream_options', 'an object', options);
  return optionalBoolean(options, 'include_usage', 'stream_options.include_usage') ?? false;
}

function checkMessages(messages: unknown): void {
  if (messages === undefined || messages === null) throw missing('messages');
  if (!Array.isArray(messages)) throw invalidType('messages', 'an array of objects', messages);
  if (messages.length === 0) throw emptyArray('messages');
  let anyContent = false;
  messages.forEach((message: unknown, i) => {
    if (checkMessage(message, `messages[${i}]`)) anyContent = true;
  });
  if (!anyContent) {
    throw invalidRequest(
      "Invalid 'messages': empty prompt. At least one message must have non-empty content.",
      'messages',
      'invalid_value',
    );
  }
}

/** Returns whether the message carries non-empty content. */
function checkMessage(message: unknown, at: string): boolean {
  if (!isRecord(message)) throw invalidType(at, 'an object', message);
  const role = requiredString(message, 'role', `${at}.role`);
  if (!ROLES.includes(role)) throw invalidValue(`${at}.role`, role, ROLES);
  optionalString(message, 'name', `${at}.name`);
  const toolCalls = message.tool_calls;
  if (toolCalls !== undefined && toolCalls !== null && !Array.isArray(toolCalls)) {
    throw invalidType(`${at}.tool_calls`, 'an array of objects', toolCalls);
  }

  const content = message.content;
  if (content === undefined || content === null) {
    // An assistant turn that only calls tools (or refers to earlier audio) has no content.
    const callsOrRefers = [toolCalls, message.function_call, message.audio].some(
      (v) => v !== undefined && v !== null,
    );
    if (role === 'assistant' && callsOrRefers) return false;
    throw missing(`${at}.content`);
  }
  if (typeof content === 'string') return content.length > 0;
  if (!Array.isArray(content))
    throw invalidType(`${at}.content`, 'one of a string or array of objects', content);
  if (content.length === 0) throw emptyArray(`${at}.content`);
  let anyContent = false;
  content.forEach((part: unknown, j) => {
    if (checkContentPart(part, `${at}.content[${j}]`)) anyContent = true;
  });
  return anyContent;
}

/** Returns whether the part carries content: non-empty text, or any image, audio or file. */
function checkContentPart(part: unknown, at: string): boolean {
  if (!isRecord(part)) throw invalidType(at, 'an object', part);
  const type = requiredString(part, 'type', `${at}.type`);
  switch (type) {
    case 'text':
      return requiredString(part, 'text', `${at}.text`, true).length > 0;
    case 'refusal':
      return requiredString(part, 'refusal', `${at}.refusal`, true).length > 0;
    case 'image_url': {
      const image = requiredObject(part, 'image_url', `${at}.image_url`);
      requiredString(image, 'url', `${at}.image_url.url`);
      return true;
    }
    case 'input_audio':
    case 'file':
      requiredObject(part, type, `${at}.${type}`);
      return true;
    default:
      throw invalidValue(`${at}.type`, type, CONTENT_PART_TYPES);
  }
}

/**
 * Checks a completions `prompt` or embeddings `input`: a non-empty string, a list of non-empty strings,
 * a list of token ids, or a list of such lists. Returns how many separate inputs it holds.
 */
function checkTextOrTokens(value: unknown, param: 'prompt' | 'input'): number {
  if (value === undefined || value === null) throw missing(param);
  if (typeof value === 'string') {
    if (value.length === 0) throw emptyString(param);
    return 1;
  }
  const expected = 'one of a string, array of strings, array of integers, or array of arrays of integers';
  if (!Array.isArray(value)) throw invalidType(param, expected, value);
  if (value.length === 0) throw emptyArray(param);

  const first: unknown = value[0];
  if (typeof first === 'string') {
    value.forEach((item: unknown, i) => {
      if (typeof item !== 'string') throw invalidType(`${param}[${i}]`, 'a string', item);
      if (item.length === 0) throw emptyString(`${param}[${i}]`);
    });
    return value.length;
  }
  if (typeof first === 'number') {
    value.forEach((item: unknown, i) => checkTokenId(item, `${param}[${i}]`));
    return 1;
  }
  if (Array.isArray(first)) {
    value.forEach((item: unknown, i) => {
      if (!Array.isArray(item)) throw invalidType(`${param}[${i}]`, 'an array of integers', item);
      if (item.length === 0) throw emptyArray(`${param}[${i}]`);
      item.forEach((token: unknown, j) => checkTokenId(token, `${param}[${i}][${j}]`));
    });
    return value.length;
  }
  throw invalidType(`${param}[0]`, 'one of a string, an integer, or an array of integers', first);
}

function checkTokenId(value: unknown, param: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(param, 'an integer', value);
  if (value < 0) throw belowMin(param, 0, value);
  if (value > MAX_TOKEN_ID) throw aboveMax(param, MAX_TOKEN_ID, value);
}

function requiredString(
  record: Record<string, unknown>,
  key: string,
  param: string,
  allowEmpty = false,
): string {
  const value = record[key];
  if (value === undefined || value === null) throw missing(param);
  if (typeof value !== 'string') throw invalidType(param, 'a string', value);
  if (!allowEmpty && value.length === 0) throw emptyString(param);
  return value;
}

function optionalString(record: Record<string, unknown>, key: string, param: string): string | undefined {
  const value = record[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidType(param, 'a string', value);
  return value;
}

function requiredObject(
  record: Record<string, unknown>,
  key: string,
  param: string,
): Record<string, unknown> {
  const value = record[key];
  if (value === undefined || value === null) throw missing(param);
  if (!isRecord(value)) throw invalidType(param, 'an object', value);
  return value;
}

function optionalBoolean(record: Record<string, unknown>, key: string, param = key): boolean | undefined {
  const value = record[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalidType(param, 'a boolean', value);
  return value;
}

/** Null counts as unset, as OpenAI treats its nullable parameters. */
function optionalInteger(
  record: Record<string, unknown>,
  param: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = record[param];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(param, 'an integer', value);
  if (value < min) throw belowMin(param, min, value);
  if (value > max) throw aboveMax(param, max, value);
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Names a JSON value's type as OpenAI's error messages do. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'number':
      return Number.isInteger(value) ? 'an integer' : 'a decimal';
    case 'object':
      return 'an object';
    default:
      return 'nothing';
  }
}

function missing(param: string): HttpError {
  return invalidRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

function invalidType(param: string, expected: string, value: unknown): HttpError {
  return invalidRequest(
    `Invalid type for '${param}': expected ${expected}, but got ${typeName(value)} instead.`,
    param,
    'invalid_type',
  );
}

function invalidValue(param: string, value: string, supported: readonly string[]): HttpError {
  const list = supported.map((s) => `'${s}'`).join(', ');
  return invalidRequest(
    `Invalid value for '${param}': '${value}'. Supported values are: ${list}.`,
    param,
    'invalid_value',
  );
}

function emptyArray(param: string): HttpError {
  return invalidRequest(
    `Invalid '${param}': empty array. Expected an array with minimum length 1, but got an empty array instead.`,
    param,
    'empty_array',
  );
}

function emptyString(param: string): HttpError {
  return invalidRequest(
    `Invalid '${param}': empty string. Expected a string with minimum length 1, but got an empty string instead.`,
    param,
    'empty_string',
  );
}

function belowMin(param: string, min: number, value: number): HttpError {
  return invalidRequest(
    `Invalid '${param}': integer below minimum value. Expected a value >= ${min}, but got ${value} instead.`,
    param,
    'integer_below_min_value',
  );
}

function aboveMax(param: string, max: number, value: number): HttpError {
  return invalidRequest(
    `Invalid '${param}': integer above maximum value. Expected a value <= ${max}, but got ${value} instead.`,
    param,
    'integer_above_max_value',
  );
}
