import { countTokens as countCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as countO200k } from 'gpt-tokenizer/encoding/o200k_base';
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

/** An image at detail high or auto: 85 base + 170 per 512px tile, a 1024×1024 image being 4 tiles. */
const IMAGE_TOKENS = 765;
/** An image at detail low: the flat base. */
const IMAGE_LOW_DETAIL_TOKENS = 85;
/** Audio is ~10 tokens a second; this allows 100 s without decoding it. Settlement charges the real count. */
const AUDIO_PART_TOKENS = 1_000;
/** A file (a PDF, say) is text plus an image per page; this allows a few pages. Settlement charges the real count. */
const FILE_PART_TOKENS = 2_000;

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
      return chatTokens(body, count);
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

/** Every string field of a message counts (role, content, name, tool_call_id), as in the cookbook; objects as JSON. */
function chatTokens(body: Record<string, unknown>, count: Counter): number {
  let total = REPLY_PRIMING_TOKENS;
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    total += TOKENS_PER_MESSAGE;
    for (const [key, value] of Object.entries(message)) {
      if (typeof value === 'string') total += count(value);
      else if (key === 'content' && Array.isArray(value)) total += contentPartsTokens(value, count);
      else if (typeof value === 'object' && value !== null) total += count(JSON.stringify(value));
      if (key === 'name') total += TOKENS_PER_NAME;
    }
  }
  // Tool and function definitions reach the model as text in the prompt.
  for (const key of ['tools', 'functions']) {
    const definitions = body[key];
    if (Array.isArray(definitions) && definitions.length > 0) total += count(JSON.stringify(definitions));
  }
  return total;
}

function contentPartsTokens(parts: readonly unknown[], count: Counter): number {
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
        const detail = isRecord(part.image_url) ? part.image_url.detail : undefined;
        total += detail === 'low' ? IMAGE_LOW_DETAIL_TOKENS : IMAGE_TOKENS;
        break;
      }
      case 'input_audio':
        total += AUDIO_PART_TOKENS;
        break;
      case 'file':
        total += FILE_PART_TOKENS;
        break;
    }
  }
  return total;
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
