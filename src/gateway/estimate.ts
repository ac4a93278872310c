import { countTokens as countCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as countO200k } from 'gpt-tokenizer/encoding/o200k_base';
import { dataUrlImageSize } from './image-size.js';
import { imageRuleFor, imageTokens, type ImageRule } from './image-tokens.js';
import type { ModelCall } from './requests.js';

/** The tokenizers the gateway counts with. */
export type Encoding = 'o200k_base' | 'cl100k_base';

const O200K_PREFIXES = ['gpt-4o', 'gpt-4.1', 'gpt-4.5', 'gpt-5', 'o1', 'o3', 'o4', 'chatgpt-4o'];
const CL100K_PREFIXES = ['gpt-4', 'gpt-3.5', 'text-embedding-3', 'text-embedding-ada'];

// A client's text that spells `<|endoftext|>` is plain text to the API; the tokenizer would throw on it.
const SPECIAL_TOKENS_AS_TEXT = { disallowedSpecial: new Set<string>() };

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

/** The tokenizer a model uses, after stripping a fine-tune's `ft:` prefix. */
export function encodingFor(model: string): Encoding {
  const base = (model.startsWith('ft:') ? model.slice(3) : model).toLowerCase();
  if (O200K_PREFIXES.some((prefix) => base.startsWith(prefix))) return 'o200k_base';
  if (CL100K_PREFIXES.some((prefix) => base.startsWith(prefix))) return 'cl100k_base';
  // Unknown models (new releases, other vendors behind the same API) count as o200k, the current default.
  return 'o200k_base';
}

/** Tokens in a piece of text for a model. */
export function countTextTokens(text: string, model: string): number {
  return counterFor(model)(text);
}

/** Tokens in text already streamed to a client, counted once over the concatenation as the model produced it. */
export function countStreamedTokens(texts: Iterable<string>, model: string): number {
  let joined = '';
  for (const text of texts) joined += text;
  return countTextTokens(joined, model);
}

/** An estimate of the input tokens a validated call will be billed, before the model reports usage. */
export function estimateInputTokens(call: ModelCall): number {
  const count = counterFor(call.model);
  const { body } = call;
  switch (call.route) {
    case 'chat':
      return chatTokens(body, count, imageRuleFor(call.model));
    case 'completions':
      return textOrTokens(body.prompt, count) + (typeof body.suffix === 'string' ? count(body.suffix) : 0);
    case 'embeddings':
      return textOrTokens(body.input, count);
  }
}

type Counter = (text: string) => number;

function counterFor(model: string): Counter {
  return encodingFor(model) === 'cl100k_base'
    ? (text) => countCl100k(text, SPECIAL_TOKENS_AS_TEXT)
    : (text) => countO200k(text, SPECIAL_TOKENS_AS_TEXT);
}

/**
 * The parameters besides messages that reach the model as prompt text: tool and function definitions,
 * the tool choice, and the JSON schema of response_format (each counted as its JSON text).
 */
const PROMPT_PARAMETERS = ['tools', 'tool_choice', 'functions', 'function_call', 'response_format'];

/** Every string field of a message counts (role, content, name, tool_call_id), as in the cookbook; objects as JSON. */
function chatTokens(body: Record<string, unknown>, count: Counter, images: ImageRule): number {
  let total = REPLY_PRIMING_TOKENS;
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    total += TOKENS_PER_MESSAGE;
    for (const [key, value] of Object.entries(message)) {
      if (typeof value === 'string') total += count(value);
      else if (key === 'content' && Array.isArray(value)) total += contentPartsTokens(value, count, images);
      else if (typeof value === 'object' && value !== null) total += count(JSON.stringify(value));
      if (key === 'name') total += TOKENS_PER_NAME;
    }
  }
  for (const key of PROMPT_PARAMETERS) total += jsonTokens(body[key], count);
  // A predicted output is compared with what the model writes: its text is billed.
  const prediction = body.prediction;
  if (isRecord(prediction)) {
    const content = prediction.content;
    if (typeof content === 'string') total += count(content);
    else if (Array.isArray(content)) total += contentPartsTokens(content, count, images);
  }
  return total;
}

/** A parameter as the model reads it: a string as its text, anything else as its JSON; unset is 0. */
function jsonTokens(value: unknown, count: Counter): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'string') return count(value);
  if (Array.isArray(value) && value.length === 0) return 0;
  return count(JSON.stringify(value));
}

function contentPartsTokens(parts: readonly unknown[], count: Counter, images: ImageRule): number {
  let total = 0;
  for (const part of parts) {
    if (!isRecord(part)) continue;
    switch (part.type) {
      case 'text':
        if (typeof part.text === 'string') total += count(part.text);
        break;
      case 'refusal':
        if (typeof part.refusal === 'string') total += count(part.refusal);
        break;
      case 'image_url': {
        const image = isRecord(part.image_url) ? part.image_url : {};
        const size = typeof image.url === 'string' ? dataUrlImageSize(image.url) : undefined;
        total += imageTokens(images, size, image.detail);
        break;
      }
      case 'input_audio':
        total += audioTokens(isRecord(part.input_audio) ? part.input_audio : {});
        break;
      case 'file':
        total += fileTokens(isRecord(part.file) ? part.file : {}, images);
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
    head.length < 44 ||
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
function textOrTokens(value: unknown, count: Counter): number {
  if (typeof value === 'string') return count(value);
  if (!Array.isArray(value)) return 0;
  let total = 0;
  for (const item of value as unknown[]) {
    if (typeof item === 'string') total += count(item);
    else if (typeof item === 'number') total += 1;
    else if (Array.isArray(item)) total += item.length;
  }
  return total;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
