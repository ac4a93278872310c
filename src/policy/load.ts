import { readFile } from 'node:fs/promises';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import type * as z from 'zod';
import type { Policy } from '../core/policy.js';
import type { PolicyProblem } from './policy-error.js';
import { PolicyError } from './policy-error.js';
import { policyFileSchema, toPolicy } from './schema.js';

type PathSegment = PropertyKey;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `['tiers', 'free', 'limits', 1, 'window']` -> `tiers.free.limits[1].window`; odd keys are quoted. */
export function formatPath(path: readonly PathSegment[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else {
      const key = String(segment);
      if (PLAIN_KEY.test(key)) text += text === '' ? key : `.${key}`;
      else text += `[${JSON.stringify(key)}]`;
    }
  }
  return text;
}

function sameKey(key: unknown, segment: PathSegment): boolean {
  return isScalar(key) ? String(key.value) === String(segment) : String(key) === String(segment);
}

/**
 * The node a path points at: the value when it exists, or the key of the nearest existing parent when it
 * does not (a missing key is best shown where its mapping is named). `atKey` points at the key itself.
 */
function nodeAt(doc: Document, path: readonly PathSegment[], atKey: boolean): YamlNode | undefined {
  let node: unknown = doc.contents;
  let nearest: YamlNode | undefined = doc.contents ?? undefined;
  for (const [index, segment] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc);
    const last = index === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((item) => sameKey(item.key, segment));
      if (!pair) return nearest;
      const key = isScalar(pair.key) ? pair.key : undefined;
      if (last && atKey) return key ?? nearest;
      node = pair.value;
      nearest = key ?? nearest;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment];
      if (item === undefined) return nearest;
      node = item;
      if (isScalar(item) || isMap(item) || isSeq(item)) nearest = item;
    } else {
      return nearest;
    }
  }
  return isScalar(node) || isMap(node) || isSeq(node) || isAlias(node) ? node : nearest;
}

class ProblemList {
  readonly problems: PolicyProblem[] = [];

  constructor(
    private readonly source: string,
    private readonly lineCounter: LineCounter,
  ) {}

  add(offset: number | undefined, path: readonly PathSegment[], reason: string): void {
    const position = offset === undefined ? undefined : this.lineCounter.linePos(offset);
    this.problems.push({
      source: this.source,
      line: position?.line ?? 1,
      column: position?.col ?? 1,
      path: formatPath(path),
      reason,
    });
  }

  error(cause?: unknown): PolicyError {
    const ordered = [...this.problems].sort(
      (a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0),
    );
    const [first, ...rest] = ordered;
    if (!first) throw new Error('a policy error needs at least one problem');
    return new PolicyError([first, ...rest], { cause });
  }
}

function reportIssue(doc: Document, problems: ProblemList, issue: z.core.$ZodIssue): void {
  const offsetOf = (path: readonly PathSegment[], atKey: boolean) => nodeAt(doc, path, atKey)?.range?.[0];
  switch (issue.code) {
    case 'unrecognized_keys':
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        problems.add(offsetOf(path, true), path, `unknown key; ${issue.message}`);
      }
      return;
    case 'invalid_key':
      problems.add(offsetOf(issue.path, true), issue.path, issue.issues[0]?.message ?? issue.message);
      return;
    default:
      problems.add(offsetOf(issue.path, false), issue.path, issue.message);
  }
}

/**
 * Parses and validates a policy file's text. Throws PolicyError naming `sourceName`, line:column, the
 * dotted path and the reason of every problem found.
 */
export function parsePolicy(text: string, sourceName: string): Policy {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const problems = new ProblemList(sourceName, lineCounter);
  if (doc.errors.length > 0) {
    for (const error of doc.errors) problems.add(error.pos[0], [], `YAML syntax: ${error.message}`);
    throw problems.error();
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (cause) {
    // toJS fails only on alias abuse (e.g. a billion-laughs document); the text parsed, so blame the top.
    problems.add(0, [], `YAML: ${cause instanceof Error ? cause.message : String(cause)}`);
    throw problems.error(cause);
  }
  const result = policyFileSchema.safeParse(data);
  if (!result.success) {
    for (const issue of result.error.issues) reportIssue(doc, problems, issue);
    throw problems.error();
  }
  return toPolicy(result.data);
}

/** Reads and parses a policy file; an unreadable file is a PolicyError too, so callers handle one error. */
export async function loadPolicyFile(path: string): Promise<Policy> {
  return parsePolicy(await readPolicyText(path), path);
}

/** The file's text; a PolicyError naming `sourceName` when it cannot be read. */
export async function readPolicyText(path: string, sourceName = path): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    const reason = `cannot read the policy file: ${cause instanceof Error ? cause.message : String(cause)}`;
    const problem = { source: sourceName, line: undefined, column: undefined, path: '', reason };
    throw new PolicyError([problem], { cause });
  }
}
