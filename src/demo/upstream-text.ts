/** The demo upstream's text: deterministic replies (an echo of the prompt, padded), token counts, embeddings. */
import { createHash } from 'node:crypto';
import { countTokens, decode, encode } from 'gpt-tokenizer/encoding/o200k_base';
import type { UpstreamUsage } from './upstream-contract.js';
import { DEMO_TEXT_PREFIX, ECHO_WORDS } from './upstream-contract.js';

/** A reply pads its echo with two of these, starting at a place the prompt picks. */
const PADDING_SENTENCES = [
  'This text comes from a local demo server, so the whole path runs offline.',
  'Its token counts are exact: o200k_base counted every token you see.',
  'Ask again with other words and the echo changes with them.',
  'Raise max_tokens to read more of this cycle, or lower it to cut it short.',
];

export type FinishReason = 'stop' | 'length';

/** One choice's text, already cut to the output limit. */
export interface GeneratedChoice {
  index: number;
  text: string;
  finishReason: FinishReason;
}

/** The reply text for one choice: the demo prefix, an echo of the prompt, padding; cut to `maxTokens`. */
export function generateChoice(
  index: number,
  prompt: string,
  variant: number,
  maxTokens: number,
): GeneratedChoice {
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
export function tokenPieces(text: string): string[] {
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

export function usageOf(promptTokens: number, choices: GeneratedChoice[]): UpstreamUsage {
  const completionTokens = choices.reduce((sum, choice) => sum + countTokens(choice.text), 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** The demo's own chat framing: each message costs its text plus 4 tokens, and the reply primer 3. */
export function chatPromptTokens(messages: Record<string, unknown>[]): number {
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
export function echoSource(messages: Record<string, unknown>[]): string {
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
export function embeddingVector(text: string, dimensions: number): number[] {
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

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
