/**
 * Just enough PromQL reading to check rules and dashboards against a live `/metrics`: which series an
 * expression selects, the labels its selectors match on, and the labels each aggregation groups by.
 * Functions, keywords, strings, numbers and durations are not series.
 */

/** A vector selector: `metric{label="…", …}`, or `{__name__="metric", …}`. */
export interface Selector {
  metric: string;
  labels: string[];
}

/** `sum by (labels) (…)`, `… without (labels)`, `on (labels)`: the labels, and the series they apply to. */
export interface Grouping {
  labels: string[];
  metrics: string[];
}

export interface PromqlUse {
  selectors: Selector[];
  groupings: Grouping[];
}

type Token =
  | { kind: 'ident'; text: string }
  | { kind: 'matchers'; labels: string[]; name: string | undefined }
  | { kind: 'open' }
  | { kind: 'close' }
  | { kind: 'other' };

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const GROUPING = new Set(['by', 'without']);
const MATCHING = new Set(['on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'atan2',
  'inf',
  'nan',
  ...GROUPING,
  ...MATCHING,
]);

const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const NUMBER = /(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[a-zA-Z]*/y;
const MATCHER = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/g;

/** The index just past the string literal that starts at `start`. */
function skipString(expr: string, start: number): number {
  const quote = expr[start];
  let i = start + 1;
  while (i < expr.length && expr[i] !== quote) i += quote !== '`' && expr[i] === '\\' ? 2 : 1;
  if (i >= expr.length) throw new Error(`unterminated string in: ${expr}`);
  return i + 1;
}

/** The index just past the `close` that matches the `open` at `start`, skipping strings. */
function skipBalanced(expr: string, start: number, open: string, close: string): number {
  let depth = 0;
  for (let i = start; i < expr.length;) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === '`') {
      i = skipString(expr, i);
      continue;
    }
    if (c === open) depth += 1;
    if (c === close && --depth === 0) return i + 1;
    i += 1;
  }
  throw new Error(`unbalanced ${open}${close} in: ${expr}`);
}

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === '#') {
      const end = expr.indexOf('\n', i);
      i = end < 0 ? expr.length : end;
    } else if (c === '"' || c === "'" || c === '`') {
      i = skipString(expr, i);
      tokens.push({ kind: 'other' });
    } else if (c === '[') {
      // A range or subquery: durations only.
      i = skipBalanced(expr, i, '[', ']');
      tokens.push({ kind: 'other' });
    } else if (c === '{') {
      const end = skipBalanced(expr, i, '{', '}');
      const labels: string[] = [];
      let name: string | undefined;
      for (const [, label, , value] of expr.slice(i + 1, end - 1).matchAll(MATCHER)) {
        if (label === '__name__') name = value!.slice(1, -1);
        else labels.push(label!);
      }
      tokens.push({ kind: 'matchers', labels, name });
      i = end;
    } else if (c === '(') {
      tokens.push({ kind: 'open' });
      i += 1;
    } else if (c === ')') {
      tokens.push({ kind: 'close' });
      i += 1;
    } else {
      IDENT.lastIndex = i;
      NUMBER.lastIndex = i;
      const ident = /[0-9.]/.test(c) ? null : IDENT.exec(expr);
      const number = ident ? null : NUMBER.exec(expr);
      if (ident) tokens.push({ kind: 'ident', text: ident[0] });
      else tokens.push({ kind: 'other' });
      i += ident?.[0].length ?? number?.[0].length ?? 1;
    }
  }
  return tokens;
}

/** The index of the `close` matching the `open` at `start`. */
function matchingClose(tokens: Token[], start: number): number {
  let depth = 0;
  for (let i = start; i < tokens.length; i += 1) {
    const kind = tokens[i]!.kind;
    if (kind === 'open') depth += 1;
    if (kind === 'close' && --depth === 0) return i;
  }
  throw new Error('unbalanced parentheses');
}

/** The label names of a `(a, b)` list starting at `start`, and the index past it. */
function labelList(tokens: Token[], start: number): { labels: string[]; end: number } {
  const close = matchingClose(tokens, start);
  const labels: string[] = [];
  for (const token of tokens.slice(start + 1, close)) if (token.kind === 'ident') labels.push(token.text);
  return { labels, end: close + 1 };
}

function isGrouping(token: Token | undefined): token is { kind: 'ident'; text: string } {
  return token?.kind === 'ident' && GROUPING.has(token.text);
}

/** The series, matchers and groupings of one PromQL expression. */
export function analysePromql(expr: string): PromqlUse {
  const tokens = tokenize(expr);
  // Selector per token index, so an aggregation can collect the series inside its parentheses.
  const selectorAt = new Map<number, Selector>();
  const groupings: Grouping[] = [];
  const metricsBetween = (from: number, to: number): string[] =>
    [...selectorAt.entries()].filter(([at]) => at > from && at < to).map(([, s]) => s.metric);

  // The label names of `by (…)`, `on (…)` and the like are not series.
  const inLabelList = new Set<number>();
  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i]!;
    if (token.kind !== 'ident' || !(GROUPING.has(token.text) || MATCHING.has(token.text))) continue;
    if (tokens[i + 1]?.kind !== 'open') continue;
    for (let at = i + 2; at < matchingClose(tokens, i + 1); at += 1) inLabelList.add(at);
  }

  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i]!;
    const next = tokens[i + 1];
    if (inLabelList.has(i)) continue;
    if (token.kind === 'matchers') {
      const previous = tokens[i - 1];
      if (previous?.kind !== 'ident' || KEYWORDS.has(previous.text)) {
        if (token.name) selectorAt.set(i, { metric: token.name, labels: token.labels });
      }
      continue;
    }
    if (token.kind !== 'ident') continue;
    // A function or aggregation (`rate(`, `sum by (`), an operator or a keyword.
    if (next?.kind === 'open' || KEYWORDS.has(token.text)) continue;
    if (AGGREGATIONS.has(token.text) && isGrouping(next)) continue;
    selectorAt.set(i, { metric: token.text, labels: next?.kind === 'matchers' ? next.labels : [] });
  }

  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i]!;
    if (token.kind !== 'ident') continue;
    if (AGGREGATIONS.has(token.text) && (tokens[i + 1]?.kind === 'open' || isGrouping(tokens[i + 1]))) {
      let at = i + 1;
      let labels: string[] = [];
      if (isGrouping(tokens[at])) ({ labels, end: at } = labelList(tokens, at + 1));
      const close = matchingClose(tokens, at);
      if (isGrouping(tokens[close + 1])) labels = labelList(tokens, close + 2).labels;
      if (labels.length > 0) groupings.push({ labels, metrics: metricsBetween(at, close) });
    } else if (MATCHING.has(token.text) && tokens[i + 1]?.kind === 'open') {
      groupings.push({ labels: labelList(tokens, i + 1).labels, metrics: metricsBetween(-1, tokens.length) });
    }
  }
  return { selectors: [...selectorAt.values()], groupings };
}
