/**
 * How deep a request body may nest. OpenAI's own schemas stay far below it (a strict JSON schema has at
 * most 10 levels of objects, about 25 here); a recursive walk (JSON.stringify, the SDK, the estimate)
 * overflows the stack in the thousands.
 */
export const MAX_JSON_DEPTH = 64;

/** How many levels the parameter path of a too-deep body names: `tools[0].function`. */
const NAMED_LEVELS = 3;
/** A longer key is named by its start: it is a hostile key, and the message must stay short. */
const LONGEST_NAMED_KEY = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

interface Level {
  array: boolean;
  /** Arrays: the index of the element being read. */
  index: number;
  /** Objects: the key of the member being read. */
  key?: string;
}

/** Where a body nests too deep: the parameter it happens in (null when the body is not an object). */
export interface TooDeep {
  param: string | null;
}

/**
 * Whether a JSON text nests deeper than `maxDepth`, found in one pass over the text before anything
 * parses or walks it (JSON.parse itself takes over a second for 4 MB of brackets). Only brackets outside
 * strings count; whether the text is valid JSON is left to the parser.
 */
export function nestingBeyond(text: string, maxDepth: number): TooDeep | undefined {
  const levels: Level[] = [];
  /** The last string read in an object at a named level: a key when a colon follows. */
  let lastString: { start: number; end: number } | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = closingQuote(text, i);
      if (end < 0) return undefined;
      const top = levels.at(-1);
      lastString = top && !top.array && levels.length <= NAMED_LEVELS ? { start: i, end } : undefined;
      i = end;
      continue;
    }
    const top = levels.at(-1);
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      levels.push({ array: c === OPEN_BRACKET, index: 0 });
      if (levels.length > maxDepth) return { param: paramOf(levels) };
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      levels.pop();
    } else if (c === COMMA) {
      if (top?.array) top.index += 1;
    } else if (c === COLON && top && lastString) {
      top.key = keyOf(text, lastString.start, lastString.end);
    }
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) lastString = undefined;
  }
  return undefined;
}

/** The index of the quote that closes the string opened at `open`, or -1 when none does. */
function closingQuote(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at >= 0) {
    let backslashes = 0;
    while (text.charCodeAt(at - 1 - backslashes) === BACKSLASH) backslashes += 1;
    if (backslashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}

function keyOf(text: string, start: number, end: number): string {
  const raw = text.slice(start, Math.min(end + 1, start + 1 + LONGEST_NAMED_KEY));
  try {
    return JSON.parse(end - start <= LONGEST_NAMED_KEY ? raw : `${raw}"`) as string;
  } catch {
    // A key cut inside an escape: name it by its raw text.
    return raw.slice(1);
  }
}

/** `tools[0].function`, from the first levels; null when the body is not an object. */
function paramOf(levels: readonly Level[]): string | null {
  if (levels[0]?.array !== false) return null;
  let param = '';
  for (const level of levels.slice(0, NAMED_LEVELS)) {
    if (level.array) param += `[${level.index}]`;
    else if (level.key !== undefined) param += param === '' ? level.key : `.${level.key}`;
  }
  return param === '' ? null : param;
}
