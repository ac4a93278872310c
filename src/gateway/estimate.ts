import { setImmediate as nextTurn } from 'node:timers/promises';
import { dataUrlImageSize } from './image-size.js';
import { imageRuleFor, imageTokens, type ImageRule } from './image-tokens.js';
import type { ModelCall } from './requests.js';
import {
  countTextTokens,
  runToEnd,
  tokenizerCounter,
  utf8Counter,
  type TextCounter,
  type TokenWork,
} from './text-tokens.js';

export { countTextTokens, encodingFor, type Encoding } from './text-tokens.js';

/** OpenAI cookbook accounting for chat: each message is framed by 3 tokens, a name adds 1, the reply is primed by 3. */
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING_TOKENS = 3;

/** Audio is billed about 10 tokens a second. */
const AUDIO_TOKENS_PER_SECOND = 10;
/** Audio that is not WAV is timed at 8 kbit/s, the lowest bitrate speech is encoded at: never shorter than it is. */
const LOWEST_AUDIO_BYTES_PER_SECOND = 1_000;
/** A canonical WAV header; anything after it counts as samples. */
const WAV_HEADER_BYTES = 44;
/** A PDF is read as its text and an image of each page; this much text is allowed a page. */
const TEXT_TOKENS_PER_PAGE = 1_000;
/** When a PDF's page objects cannot be seen (compressed object streams), a page per started 100 KB. */
const FILE_BYTES_PER_PAGE = 100_000;

/** The estimate yields to the event loop after this much counting, so /healthz and other requests go on. */
const SLICE_MS = 5;

/** How text is counted: the model's tokenizer, or (for a caller not yet known) UTF-8 bytes, an upper bound. */
export type TextCounting = 'tokenizer' | 'bytes';

/** Tokens in text already streamed to a client, counted once over the concatenation as the model produced it. */
export function countStreamedTokens(texts: Iterable<string>, model: string): number {
  let joined = '';
  for (const text of texts) joined += text;
  return countTextTokens(joined, model);
}

/** An estimate of the input tokens a validated call will be billed, counted at once. */
export function estimateInputTokens(call: ModelCall, counting: TextCounting = 'tokenizer'): number {
  return runToEnd(inputTokens(call, counting));
}

/**
 * The same estimate a slice at a time: after each SLICE_MS of counting it lets the event loop turn, so a
 * 4 MB body never holds other requests (or /healthz) for longer than a slice.
 */
export async function estimateInputTokensInSlices(
  call: ModelCall,
  counting: TextCounting = 'tokenizer',
): Promise<number> {
  const work = inputTokens(call, counting);
  let sliceStart = performance.now();
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
    if (performance.now() - sliceStart >= SLICE_MS) {
      await nextTurn();
      sliceStart = performance.now();
    }
  }
}

function* inputTokens(call: ModelCall, counting: TextCounting): TokenWork {
  const count = counting === 'bytes' ? utf8Counter : tokenizerCounter(call.model);
  const { body } = call;
  switch (call.route) {
    case 'chat':
      return yield* chatTokens(body, count, imageRuleFor(call.model));
    case 'completions':
      return (
        (yield* textOrTokens(body.prompt, count)) +
        (typeof body.suffix === 'string' ? yield* count(body.suffix) : 0)
      );
    case 'embeddings':
      return yield* textOrTokens(body.input, count);
  }
}

/**
 * The parameters besides messages that reach the model as prompt text: tool and function definitions,
 * the tool choice, and the JSON schema of response_format (each counted as its JSON text).
 */
const PROMPT_PARAMETERS = ['tools', 'tool_choice', 'functions', 'function_call', 'response_format'];

/** Every string field of a message counts (role, content, name, tool_call_id), as in the cookbook; objects as JSON. */
function* chatTokens(body: Record<string, unknown>, count: TextCounter, images: ImageRule): TokenWork {
  let total = REPLY_PRIMING_TOKENS;
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    total += TOKENS_PER_MESSAGE;
    for (const [key, value] of Object.entries(message)) {
      if (typeof value === 'string') total += yield* count(value);
      else if (key === 'content' && Array.isArray(value))
        total += yield* contentPartsTokens(value, count, images);
      else if (typeof value === 'object' && value !== null) total += yield* count(JSON.stringify(value));
      if (key === 'name') total += TOKENS_PER_NAME;
    }
  }
  for (const key of PROMPT_PARAMETERS) total += yield* jsonTokens(body[key], count);
  // A predicted output is compared with what the model writes: its text is billed.
  const prediction = body.prediction;
  if (isRecord(prediction)) {
    const content = prediction.content;
    if (typeof content === 'string') total += yield* count(content);
    else if (Array.isArray(content)) total += yield* contentPartsTokens(content, count, images);
  }
  return total;
}

/** A parameter as the model reads it: a string as its text, anything else as its JSON; unset is 0. */
function* jsonTokens(value: unknown, count: TextCounter): TokenWork {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'string') return yield* count(value);
  if (Array.isArray(value) && value.length === 0) return 0;
  return yield* count(JSON.stringify(value));
}

function* contentPartsTokens(parts: readonly unknown[], count: TextCounter, images: ImageRule): TokenWork {
  let total = 0;
  for (const part of parts) {
    if (!isRecord(part)) continue;
    switch (part.type) {
      case 'text':
        if (typeof part.text === 'string') total += yield* count(part.text);
        break;
      case 'refusal':
        if (typeof part.refusal === 'string') total += yield* count(part.refusal);
        break;
      case 'image_url': {
        const image = isRecord(part.image_url) ? part.image_url : {};
        const size = typeof image.url === 'string' ? dataUrlImageSize(image.url) : undefined;
        total += imageTokens(images, size, image.detail);
        yield;
        break;
      }
      case 'input_audio':
        total += audioTokens(isRecord(part.input_audio) ? part.input_audio : {});
        break;
      case 'file':
        total += fileTokens(isRecord(part.file) ? part.file : {}, images);
        yield;
        break;
    }
  }
  return total;
}

/** Audio by its length: a WAV's from its header, anything else's at the lowest bitrate. */
function audioTokens(audio: Record<string, unknown>): number {
  const data = typeof audio.data === 'string' ? audio.data : '';
  const bytes = base64Bytes(data);
  const seconds = wavSeconds(data, bytes) ?? bytes / LOWEST_AUDIO_BYTES_PER_SECOND;
  return Math.ceil(seconds * AUDIO_TOKENS_PER_SECOND);
}

/** A WAV's duration from its fmt chunk's byte rate; undefined when the data is not a canonical WAV. */
function wavSeconds(base64: string, bytes: number): number | undefined {
  const head = Buffer.from(base64.slice(0, 64), 'base64');
  if (
    head.length < WAV_HEADER_BYTES ||
    head.toString('latin1', 0, 4) !== 'RIFF' ||
    head.toString('latin1', 8, 12) !== 'WAVE'
  ) {
    return undefined;
  }
  if (head.toString('latin1', 12, 16) !== 'fmt ') return undefined;
  const byteRate = head.readUInt32LE(28);
  return byteRate > 0 ? Math.max(0, bytes - WAV_HEADER_BYTES) / byteRate : undefined;
}

/**
 * A file (a PDF) by its pages, each the largest image the model bills plus a page of text: the pages are
 * its page objects when inline data shows them, else one per started 100 KB; a file_id is one page.
 */
function fileTokens(file: Record<string, unknown>, images: ImageRule): number {
  const page = imageTokens(images, undefined, 'high') + TEXT_TOKENS_PER_PAGE;
  const data = typeof file.file_data === 'string' ? file.file_data : '';
  const comma = data.indexOf(',');
  const payload = data.startsWith('data:') && comma >= 0 ? data.slice(comma + 1) : data;
  if (payload === '') return page;
  const bytes = base64Bytes(payload);
  const text = Buffer.from(payload, 'base64').toString('latin1');
  const pageObjects = text.match(/\/Type\s*\/Page(?![a-zA-Z])/g)?.length ?? 0;
  return page * Math.max(1, pageObjects || Math.ceil(bytes / FILE_BYTES_PER_PAGE));
}

/** The bytes base64 text decodes to, without decoding it. */
function base64Bytes(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.max(0, Math.floor((base64.length * 3) / 4) - padding);
}

/** A prompt or input: strings are counted, token-id arrays are their length. */
function* textOrTokens(value: unknown, count: TextCounter): TokenWork {
  if (typeof value === 'string') return yield* count(value);
  if (!Array.isArray(value)) return 0;
  let total = 0;
  for (const item of value as unknown[]) {
    if (typeof item === 'string') total += yield* count(item);
    else if (typeof item === 'number') total += 1;
    else if (Array.isArray(item)) total += item.length;
  }
  return total;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
