import {
  countTokens as countCl100k,
  setMergeCacheSize as setCl100kMergeCache,
} from 'gpt-tokenizer/encoding/cl100k_base';
import {
  countTokens as countO200k,
  setMergeCacheSize as setO200kMergeCache,
} from 'gpt-tokenizer/encoding/o200k_base';
import { CL100K_TOKEN_SPLIT_REGEX, O200K_TOKEN_SPLIT_REGEX } from 'gpt-tokenizer/encodingParams/constants';

/** The tokenizers the gateway counts with. */
export type Encoding = 'o200k_base' | 'cl100k_base';

/**
 * Counting that can be cut into slices: a generator that yields after each piece of a few milliseconds
 * at most and returns its tokens. `runToEnd` runs it at once; the estimate runs it a slice a turn.
 */
export type TokenWork = Generator<void, number, undefined>;

/** How a piece of text is counted: by the model's tokenizer, or by an upper bound that needs none. */
export type TextCounter = (text: string) => TokenWork;

const O200K_PREFIXES = ['gpt-4o', 'gpt-4.1', 'gpt-4.5', 'gpt-5', 'o1', 'o3', 'o4', 'chatgpt-4o'];
const CL100K_PREFIXES = ['gpt-4', 'gpt-3.5', 'text-embedding-3', 'text-embedding-ada'];

// A client's text that spells `<|endoftext|>` is plain text to the API; the tokenizer would throw on it.
const SPECIAL_TOKENS_AS_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * The longest pre-token (a run the tokenizer's split leaves whole: letters without a space, a CJK or
 * Thai sentence, a whitespace run) counted in one piece. BPE is quadratic in a pre-token's length (160 KB
 * of one run took 11.6 s); up to here a piece costs at most a few microseconds a character.
 */
export const MAX_RUN_CHARS = 256;
/** Text is counted in chunks of about this many characters, cut where the tokenizer itself splits. */
const CHUNK_CHARS = 2_048;
/** The tokenizer's split runs on windows of this many characters (a regex call on a 4 MB run takes 0.6 s). */
const WINDOW_CHARS = 8_192;
/** A match this close to a window's end is read again from the next window. */
const WINDOW_GUARD_CHARS = 16;
/** Past this, a chunk is cut at the next pre-token even where the cut may change the count. */
const LONGEST_CHUNK_CHARS = 4 * CHUNK_CHARS;
/**
 * Tokens added for each cut that may split what the tokenizer would have merged. Over 8,000 random cuts
 * in runs of syllables, the pieces counted 3 tokens fewer than the whole once, 2 fewer 3 times, 1 fewer in
 * 2.6 %, and the same or more otherwise (up to 4 more); runs of one letter, CJK, Thai or punctuation differ
 * less.
 */
const TOKENS_PER_CUT = 2;

/**
 * Pieces the tokenizer remembers having merged (its default is 100,000). Measured on 4 MB bodies, 1,000
 * keeps real prose as fast (the repeats that matter are near each other) and makes high-entropy text 3×
 * cheaper: a large cache of pieces that never come back only churns and lengthens every minor GC.
 */
const MERGE_CACHE_ENTRIES = 1_000;
setO200kMergeCache(MERGE_CACHE_ENTRIES);
setCl100kMergeCache(MERGE_CACHE_ENTRIES);

interface Tokenizer {
  count(text: string): number;
  split: RegExp;
}

const TOKENIZERS: Record<Encoding, Tokenizer> = {
  o200k_base: { count: (text) => countO200k(text, SPECIAL_TOKENS_AS_TEXT), split: O200K_TOKEN_SPLIT_REGEX },
  cl100k_base: {
    count: (text) => countCl100k(text, SPECIAL_TOKENS_AS_TEXT),
    split: CL100K_TOKEN_SPLIT_REGEX,
  },
};

/** The tokenizer a model uses, after stripping a fine-tune's `ft:` prefix. */
export function encodingFor(model: string): Encoding {
  const base = (model.startsWith('ft:') ? model.slice(3) : model).toLowerCase();
  if (O200K_PREFIXES.some((prefix) => base.startsWith(prefix))) return 'o200k_base';
  if (CL100K_PREFIXES.some((prefix) => base.startsWith(prefix))) return 'cl100k_base';
  // Unknown models (new releases, other vendors behind the same API) count as o200k, the current default.
  return 'o200k_base';
}

/**
 * Counts with the model's tokenizer: exactly for text whose pre-tokens are at most MAX_RUN_CHARS long
 * (all ordinary text); a longer run is counted in pieces plus TOKENS_PER_CUT a cut, never above its UTF-8
 * bytes.
 */
export function tokenizerCounter(model: string): TextCounter {
  const tokenizer = TOKENIZERS[encodingFor(model)];
  return (text) => countText(text, tokenizer);
}

/** Counts UTF-8 bytes, which no tokenizer's count exceeds (every token is at least one byte). */
export const utf8Counter: TextCounter = function* (text) {
  const bytes = Buffer.byteLength(text, 'utf8');
  yield;
  return bytes;
};

/** Runs counting work at once. */
export function runToEnd(work: TokenWork): number {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/** Tokens in a piece of text for a model, counted at once (bounded, as for the estimate). */
export function countTextTokens(text: string, model: string): number {
  return runToEnd(tokenizerCounter(model)(text));
}

/**
 * A copy of a slice that shares no memory with the text it was cut from. The tokenizer caches the pieces
 * it merged, keyed by substrings of what it was given: a slice would keep a whole request body alive for
 * as long as one of its pieces stays in that cache.
 */
function flatCopy(slice: string): string {
  return Buffer.from(slice, 'utf16le').toString('utf16le');
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

function isSpace(code: number | undefined): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d || code === 0x0b || code === 0x0c;
}

/**
 * Text in chunks of about CHUNK_CHARS cut at pre-token boundaries after a non-space character: there the
 * tokenizer would split too (its patterns look ahead only at spaces, and never behind), so the chunks'
 * counts add up to the whole's. A pre-token longer than MAX_RUN_CHARS is counted in pieces. The split
 * itself runs on windows of WINDOW_CHARS, so one regex call never scans more than a window.
 */
function* countText(text: string, tokenizer: Tokenizer): TokenWork {
  if (text.length <= MAX_RUN_CHARS) {
    const tokens = tokenizer.count(text);
    yield; // many short strings (a body of 100,000 messages) are slices too
    return tokens;
  }
  // A cut after a space may regroup the spaces around it (lookaheads, `\s+$`): a margin on the safe side.
  const cutMargin = (at: number): number =>
    at < text.length && isSpace(text.charCodeAt(at - 1)) ? TOKENS_PER_CUT : 0;
  // A regex of its own: estimates interleave, and lastIndex is per regex.
  const split = new RegExp(tokenizer.split.source, 'gu');
  let total = 0;
  let chunkStart = 0;
  const flushTo = (end: number): void => {
    if (end <= chunkStart) return;
    total += tokenizer.count(flatCopy(text.slice(chunkStart, end))) + cutMargin(end);
    chunkStart = end;
  };
  for (let at = 0; at < text.length;) {
    const windowEnd = Math.min(text.length, at + WINDOW_CHARS);
    const window = text.slice(at, windowEnd);
    // A match that ends near the window's end may run on past it, or match otherwise with what follows
    // (a lookahead, `$`): it is read again as the start of the next window.
    const settled = windowEnd === text.length ? windowEnd : windowEnd - WINDOW_GUARD_CHARS;
    let next = at;
    split.lastIndex = 0;
    for (let match = split.exec(window); match !== null; match = split.exec(window)) {
      const start = at + match.index;
      const end = start + match[0].length;
      if (end > settled || match[0] === '') break;
      next = end;
      if (end - start > MAX_RUN_CHARS) {
        flushTo(start);
        total += (yield* countLongRun(match[0], tokenizer)) + cutMargin(end);
        chunkStart = end;
      } else if (
        (end - chunkStart >= CHUNK_CHARS && !isSpace(text.charCodeAt(end - 1))) ||
        end - chunkStart >= LONGEST_CHUNK_CHARS
      ) {
        flushTo(end);
        yield;
      }
    }
    if (next === at) {
      // One run fills the window: count what the window holds of it, and cut it there.
      let cut = settled;
      if (isLowSurrogate(text.charCodeAt(cut))) cut -= 1;
      flushTo(at);
      total += (yield* countLongRun(text.slice(at, cut), tokenizer)) + TOKENS_PER_CUT;
      chunkStart = cut;
      next = cut;
    }
    at = next;
  }
  flushTo(text.length);
  return total;
}

/** A run longer than MAX_RUN_CHARS, in pieces of at most that many characters (surrogate pairs kept whole). */
function* countLongRun(run: string, tokenizer: Tokenizer): TokenWork {
  let total = 0;
  let cuts = 0;
  for (let start = 0; start < run.length;) {
    let end = Math.min(run.length, start + MAX_RUN_CHARS);
    if (end < run.length && isLowSurrogate(run.charCodeAt(end))) end -= 1;
    total += tokenizer.count(flatCopy(run.slice(start, end)));
    if (end < run.length) cuts += 1;
    start = end;
    yield;
  }
  return Math.min(total + cuts * TOKENS_PER_CUT, Buffer.byteLength(run, 'utf8'));
}
