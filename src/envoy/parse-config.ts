import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node as YamlNode, Scalar, YAMLMap } from 'yaml';
import type {
  ConfigPlace,
  DescriptorLevel,
  DescriptorNode,
  EnvoyDomain,
  JsonValue,
  RateLimitRule,
} from './config.js';
import type { EnvoyConfigProblem } from './config-error.js';
import { EnvoyConfigError } from './config-error.js';
import { parseRateLimitUnit, UNIT_NAMES } from './rate-limit-unit.js';
import type { RateLimitUnit } from './rate-limit-unit.js';
import { wildcardParts } from './wildcard.js';

type PathSegment = string | number;
type Path = readonly PathSegment[];

const ROOT_KEYS = ['domain', 'descriptors'];
const DESCRIPTOR_KEYS = [
  'key',
  'value',
  'rate_limit',
  'descriptors',
  'shadow_mode',
  'quota_mode',
  'detailed_metric',
  'value_to_metric',
  'share_threshold',
  'metadata',
];
const RATE_LIMIT_KEYS = ['unit', 'requests_per_unit', 'unlimited', 'name', 'replaces'];
const REPLACES_KEYS = ['name'];

// envoyproxy/ratelimit reads its files with a YAML 1.1 parser: these plain words are null and booleans there.
const YAML_NULLS = new Set(['', '~', 'null', 'Null', 'NULL']);
const YAML_TRUE = new Set(['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON']);
const YAML_FALSE = new Set(['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF']);
const YAML_INT = /^[-+]?(0|[1-9][0-9_]*)$/;
const YAML_FLOAT = /^[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+]?[0-9]+)?$/;
const WHOLE_NUMBER = /^(0|[1-9][0-9]*)$/;
const UINT32_MAX = 4_294_967_295;
// Bounds on what one file may make the loader walk: aliases can repeat a subtree, and nesting is never this deep.
const MAX_MAPPINGS = 100_000;
const MAX_DEPTH = 64;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `['descriptors', 0, 'rate_limit', 'unit']` -> `descriptors[0].rate_limit.unit`; odd keys are quoted. */
export function formatConfigPath(path: Path): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (PLAIN_KEY.test(segment)) text += text === '' ? segment : `.${segment}`;
    else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}

/** A key of a mapping and what it holds. */
interface Field {
  readonly keyNode: Scalar;
  readonly value: YamlNode | null;
}

type Fields = ReadonlyMap<string, Field>;

/** Thrown inside the walk when a file is too large to walk; caught at the top and reported. */
class WalkLimitExceeded extends Error {}

interface LevelBuilder {
  readonly byValue: Map<string, Map<string, DescriptorNode>>;
  readonly wildcards: Map<string, DescriptorNode[]>;
  readonly keyOnly: Map<string, DescriptorNode>;
  size: number;
}

function emptyLevel(): LevelBuilder {
  return { byValue: new Map(), wildcards: new Map(), keyOnly: new Map(), size: 0 };
}

/** Walks one parsed file, collecting every problem rather than stopping at the first. */
class ConfigFileReader {
  readonly problems: EnvoyConfigProblem[] = [];
  #mappings = 0;

  constructor(
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
    private readonly source: string,
  ) {}

  problem(node: YamlNode | null | undefined, path: Path, reason: string): void {
    this.problemAt(node?.range?.[0], path, reason);
  }

  problemAt(offset: number | undefined, path: Path, reason: string): void {
    const position = offset === undefined ? undefined : this.lineCounter.linePos(offset);
    this.problems.push({
      source: this.source,
      line: position?.line ?? 1,
      column: position?.col ?? 1,
      path: formatConfigPath(path),
      reason,
    });
  }

  place(node: YamlNode | null | undefined): ConfigPlace {
    const offset = node?.range?.[0];
    const position = offset === undefined ? { line: 1, col: 1 } : this.lineCounter.linePos(offset);
    return { source: this.source, line: position.line, column: position.col };
  }

  resolve(node: YamlNode | null | undefined): YamlNode | null {
    if (isAlias(node)) return (node.resolve(this.doc) as YamlNode | undefined) ?? null;
    return node ?? null;
  }

  /** The keys of a mapping (`<<` merges included, explicit keys first), each checked against `allowed`. */
  fields(map: YAMLMap, path: Path, allowed: readonly string[]): Map<string, Field> {
    this.#mappings += 1;
    if (this.#mappings > MAX_MAPPINGS) throw new WalkLimitExceeded();
    const explicit = new Map<string, Field>();
    const merged = new Map<string, Field>();
    for (const pair of map.items) {
      const key = pair.key as YamlNode | null;
      const value = pair.value as YamlNode | null;
      if (isScalar(key) && typeof key.value === 'symbol') {
        for (const [name, field] of this.#mergedFields(key, value, path, allowed)) {
          if (!merged.has(name)) merged.set(name, field);
        }
        continue;
      }
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.problem(key ?? value, path, 'keys must be plain strings');
        continue;
      }
      if (!allowed.includes(key.value)) {
        this.problem(key, [...path, key.value], `unknown key; expected one of: ${allowed.join(', ')}`);
        continue;
      }
      explicit.set(key.value, { keyNode: key, value });
    }
    for (const [name, field] of merged) if (!explicit.has(name)) explicit.set(name, field);
    return explicit;
  }

  #mergedFields(
    key: Scalar,
    value: YamlNode | null,
    path: Path,
    allowed: readonly string[],
  ): Map<string, Field> {
    const target = this.resolve(value);
    const sources = isSeq(target) ? target.items.map((item) => this.resolve(item as YamlNode)) : [target];
    const fields = new Map<string, Field>();
    for (const source of sources) {
      if (!isMap(source)) {
        this.problem(key, path, 'a merge key (<<) takes a mapping or a list of mappings');
        continue;
      }
      for (const [name, field] of this.fields(source, path, allowed)) {
        if (!fields.has(name)) fields.set(name, field);
      }
    }
    return fields;
  }

  /** A mapping's fields, or undefined (reported) when the node is not a mapping. */
  mapping(node: YamlNode | null, path: Path, allowed: readonly string[], what: string): Fields | undefined {
    const resolved = this.resolve(node);
    if (!isMap(resolved)) {
      this.problem(node, path, `must be ${what}`);
      return undefined;
    }
    return this.fields(resolved, path, allowed);
  }

  /** A scalar's text; undefined when absent or null; null (reported) when it is not a scalar. */
  text(field: Field | undefined, path: Path, what: string): string | undefined | null {
    if (!field) return undefined;
    const node = this.resolve(field.value);
    if (node === null) return undefined;
    if (!isScalar(node) || typeof node.value !== 'string') {
      this.problem(node, path, `must be ${what}, not a ${isSeq(node) ? 'list' : 'mapping'}`);
      return null;
    }
    if (node.type === 'PLAIN' && YAML_NULLS.has(node.value)) return undefined;
    return node.value;
  }

  /** A non-empty string, or undefined when absent, null or empty (envoyproxy/ratelimit reads all three as ""). */
  string(fields: Fields, name: string, path: Path): string | undefined {
    const text = this.text(fields.get(name), [...path, name], 'a string');
    return text === null || text === '' ? undefined : text;
  }

  boolean(fields: Fields, name: string, path: Path): boolean {
    const field = fields.get(name);
    const text = this.text(field, [...path, name], 'true or false');
    if (text === undefined || text === null) return false;
    const node = this.resolve(field?.value);
    const plain = isScalar(node) && node.type === 'PLAIN';
    if (plain && YAML_TRUE.has(text)) return true;
    if (plain && YAML_FALSE.has(text)) return false;
    this.problem(node, [...path, name], `must be true or false, not ${JSON.stringify(text)}`);
    return false;
  }

  /** A whole number from 0 to 2^32 - 1, as envoyproxy/ratelimit's uint32; undefined when absent or invalid. */
  uint32(fields: Fields, name: string, path: Path): number | undefined {
    const field = fields.get(name);
    const text = this.text(field, [...path, name], 'a whole number');
    if (text === undefined || text === null) return undefined;
    const node = this.resolve(field?.value);
    const plain = isScalar(node) && node.type === 'PLAIN';
    if (!plain || !WHOLE_NUMBER.test(text) || Number(text) > UINT32_MAX) {
      this.problem(
        node,
        [...path, name],
        `must be a whole number from 0 to ${UINT32_MAX}, not ${JSON.stringify(text)}`,
      );
      return undefined;
    }
    return Number(text);
  }

  /** A list's items (aliases resolved); empty when absent or null; reported when it is not a list. */
  list(field: Field | undefined, path: Path, what: string): (YamlNode | null)[] {
    if (!field) return [];
    const node = this.resolve(field.value);
    if (node === null || (isScalar(node) && node.type === 'PLAIN' && YAML_NULLS.has(String(node.value)))) {
      return [];
    }
    if (!isSeq(node)) {
      this.problem(node, path, `must be ${what}`);
      return [];
    }
    return node.items.map((item) => this.resolve(item as YamlNode));
  }

  json(node: YamlNode | null, depth: number): JsonValue {
    if (depth > MAX_DEPTH) throw new WalkLimitExceeded();
    const resolved = this.resolve(node);
    if (resolved === null) return null;
    if (isMap(resolved)) {
      this.#mappings += 1;
      if (this.#mappings > MAX_MAPPINGS) throw new WalkLimitExceeded();
      const object: { [key: string]: JsonValue } = {};
      for (const pair of resolved.items) {
        const key = this.resolve(pair.key as YamlNode | null);
        object[isScalar(key) ? String(key.value) : ''] = this.json(pair.value as YamlNode | null, depth + 1);
      }
      return object;
    }
    if (isSeq(resolved)) return resolved.items.map((item) => this.json(item as YamlNode, depth + 1));
    if (!isScalar(resolved)) return null;
    const text = String(resolved.value);
    if (resolved.type !== 'PLAIN') return text;
    if (YAML_NULLS.has(text)) return null;
    if (YAML_TRUE.has(text)) return true;
    if (YAML_FALSE.has(text)) return false;
    if (YAML_INT.test(text) || YAML_FLOAT.test(text)) {
      const number = Number(text.replaceAll('_', ''));
      if (Number.isFinite(number)) return number;
    }
    return text;
  }

  rule(
    field: Field,
    path: Path,
    rulePath: string,
    descriptor: Fields,
    descriptorPath: Path,
  ): RateLimitRule | undefined {
    const node = this.resolve(field.value);
    if (node === null || (isScalar(node) && node.type === 'PLAIN' && YAML_NULLS.has(String(node.value)))) {
      this.problem(
        field.keyNode,
        path,
        'is empty: give unit and requests_per_unit, or unlimited: true (remove it to leave the descriptor without a limit)',
      );
      return undefined;
    }
    const fields = this.mapping(node, path, RATE_LIMIT_KEYS, 'a mapping with unit and requests_per_unit');
    if (!fields) return undefined;
    const problemsBefore = this.problems.length;
    const unlimited = this.boolean(fields, 'unlimited', path);
    const unitText = this.string(fields, 'unit', path);
    const requestsPerUnit = this.uint32(fields, 'requests_per_unit', path);
    let unit: RateLimitUnit | undefined;
    if (unlimited) {
      if (unitText !== undefined) {
        this.problem(fields.get('unit')?.keyNode, [...path, 'unit'], 'an unlimited rate_limit takes no unit');
      }
      if (
        fields.has('requests_per_unit') &&
        this.text(fields.get('requests_per_unit'), [], '') !== undefined
      ) {
        this.problem(
          fields.get('requests_per_unit')?.keyNode,
          [...path, 'requests_per_unit'],
          'an unlimited rate_limit takes no requests_per_unit',
        );
      }
    } else {
      if (unitText === undefined) {
        this.problem(node, [...path, 'unit'], `is required: one of ${UNIT_NAMES.join(', ')}`);
      } else {
        unit = parseRateLimitUnit(unitText);
        if (unit === undefined) {
          const unitNode = this.resolve(fields.get('unit')?.value);
          this.problem(
            unitNode,
            [...path, 'unit'],
            `invalid unit ${JSON.stringify(unitText)}; expected one of ${UNIT_NAMES.join(', ')}`,
          );
        }
      }
      if (
        !fields.has('requests_per_unit') ||
        this.text(fields.get('requests_per_unit'), [], '') === undefined
      ) {
        this.problem(node, [...path, 'requests_per_unit'], 'is required (0 refuses every request)');
      }
    }
    const name = this.string(fields, 'name', path);
    const replaces = this.replaces(fields, path, name);
    const shadowMode = this.boolean(descriptor, 'shadow_mode', descriptorPath);
    const quotaMode = this.boolean(descriptor, 'quota_mode', descriptorPath);
    const detailedMetric = this.boolean(descriptor, 'detailed_metric', descriptorPath);
    const metadata = this.metadata(descriptor, descriptorPath);
    if (this.problems.length > problemsBefore) return undefined;
    return {
      path: rulePath,
      unlimited,
      requestsPerUnit: unlimited ? 0 : (requestsPerUnit ?? 0),
      unit: unlimited ? undefined : unit,
      name,
      replaces,
      shadowMode,
      quotaMode,
      detailedMetric,
      metadata,
      place: this.place(field.keyNode),
    };
  }

  replaces(fields: Fields, path: Path, ownName: string | undefined): string[] {
    const replacesPath = [...path, 'replaces'];
    const names: string[] = [];
    const items = this.list(fields.get('replaces'), replacesPath, 'a list of {name: ...}');
    for (const [index, item] of items.entries()) {
      const itemPath = [...replacesPath, index];
      const entry = this.mapping(item, itemPath, REPLACES_KEYS, 'a mapping with a name');
      if (!entry) continue;
      const name = this.string(entry, 'name', itemPath);
      if (name === undefined) {
        this.problem(
          entry.get('name')?.keyNode ?? item,
          [...itemPath, 'name'],
          'every replaces entry needs a name',
        );
      } else if (name === ownName) {
        this.problem(
          this.resolve(entry.get('name')?.value),
          [...itemPath, 'name'],
          'a rule cannot replace itself',
        );
      } else {
        names.push(name);
      }
    }
    return names;
  }

  metadata(descriptor: Fields, path: Path): { [key: string]: JsonValue } | undefined {
    const field = descriptor.get('metadata');
    if (!field) return undefined;
    const node = this.resolve(field.value);
    if (node === null) return undefined;
    if (!isMap(node)) {
      this.problem(node, [...path, 'metadata'], 'must be a mapping');
      return undefined;
    }
    return this.json(node, 0) as { [key: string]: JsonValue };
  }

  descriptors(field: Field | undefined, path: Path, parentPath: string, depth: number): DescriptorLevel {
    const level = emptyLevel();
    const items = this.list(field, path, 'a list of descriptors');
    if (items.length > 0 && depth >= MAX_DEPTH) {
      this.problem(field?.keyNode, path, `descriptors nest deeper than ${MAX_DEPTH} levels`);
      return level;
    }
    for (const [index, item] of items.entries()) {
      const node = this.descriptor(item, [...path, index], parentPath, depth);
      if (node) this.#addToLevel(level, node, [...path, index]);
    }
    return level;
  }

  descriptor(
    item: YamlNode | null,
    path: Path,
    parentPath: string,
    depth: number,
  ): DescriptorNode | undefined {
    const fields = this.mapping(item, path, DESCRIPTOR_KEYS, 'a mapping with a key');
    if (!fields) return undefined;
    const problemsBefore = this.problems.length;
    const keyText = this.text(fields.get('key'), [...path, 'key'], 'a string');
    const key = keyText === null || keyText === '' ? undefined : keyText;
    // null: already reported as not a string.
    if (keyText === undefined || keyText === '') {
      this.problem(
        fields.get('key')?.keyNode ?? item,
        [...path, 'key'],
        'every descriptor needs a non-empty key',
      );
    }
    const value = this.string(fields, 'value', path);
    const segment = value === undefined ? (key ?? '') : `${key ?? ''}_${value}`;
    const rulePath = `${parentPath}.${segment}`;
    const parts = value === undefined ? undefined : wildcardParts(value);
    const shareThreshold = this.boolean(fields, 'share_threshold', path);
    if (shareThreshold && parts === undefined) {
      this.problem(
        fields.get('share_threshold')?.keyNode,
        [...path, 'share_threshold'],
        'applies only to a descriptor whose value is a wildcard (holds a *)',
      );
    }
    const valueToMetric = this.boolean(fields, 'value_to_metric', path);
    const ruleField = fields.get('rate_limit');
    let rule: RateLimitRule | undefined;
    if (ruleField) {
      rule = this.rule(ruleField, [...path, 'rate_limit'], rulePath, fields, path);
    } else {
      // Read so that their values are checked even where they do nothing.
      for (const name of ['shadow_mode', 'quota_mode', 'detailed_metric']) this.boolean(fields, name, path);
      this.metadata(fields, path);
    }
    const children = this.descriptors(
      fields.get('descriptors'),
      [...path, 'descriptors'],
      rulePath,
      depth + 1,
    );
    if (key === undefined || this.problems.length > problemsBefore) return undefined;
    return {
      key,
      value,
      wildcardParts: parts,
      rule,
      valueToMetric,
      shareThreshold,
      children,
      place: this.place(fields.get('key')?.keyNode),
    };
  }

  #addToLevel(level: LevelBuilder, node: DescriptorNode, path: Path): void {
    const sameKey =
      node.value === undefined ? level.keyOnly.get(node.key) : level.byValue.get(node.key)?.get(node.value);
    if (sameKey) {
      const what =
        node.value === undefined
          ? `key ${JSON.stringify(node.key)} without a value`
          : `key ${JSON.stringify(node.key)} with value ${JSON.stringify(node.value)}`;
      this.problems.push({
        source: this.source,
        line: node.place.line,
        column: node.place.column,
        path: formatConfigPath([...path, 'key']),
        reason: `duplicate descriptor: ${what} is already at line ${sameKey.place.line} of this list`,
      });
      return;
    }
    level.size += 1;
    if (node.value === undefined) {
      level.keyOnly.set(node.key, node);
      return;
    }
    let values = level.byValue.get(node.key);
    if (!values) {
      values = new Map();
      level.byValue.set(node.key, values);
    }
    values.set(node.value, node);
    if (node.wildcardParts) {
      const wildcards = level.wildcards.get(node.key) ?? [];
      wildcards.push(node);
      level.wildcards.set(node.key, wildcards);
    }
  }
}

function sortProblems(
  problems: readonly EnvoyConfigProblem[],
): [EnvoyConfigProblem, ...EnvoyConfigProblem[]] {
  const sorted = [...problems].sort(
    (a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0),
  );
  const [first, ...rest] = sorted;
  if (!first) throw new Error('an Envoy config error needs at least one problem');
  return [first, ...rest];
}

/**
 * Parses one envoyproxy/ratelimit configuration file: a domain and its descriptors, in that project's
 * format, unchanged. Throws EnvoyConfigError naming `source`, line:column, the path and the reason of every
 * problem found.
 */
export function parseEnvoyConfigFile(text: string, source: string): EnvoyDomain {
  const lineCounter = new LineCounter();
  // Failsafe schema: every scalar stays the text written, as envoyproxy/ratelimit reads values into strings.
  const doc = parseDocument(text, { schema: 'failsafe', merge: true, lineCounter, prettyErrors: false });
  const reader = new ConfigFileReader(doc, lineCounter, source);
  if (doc.errors.length > 0) {
    for (const error of doc.errors) reader.problemAt(error.pos[0], [], `YAML syntax: ${error.message}`);
    throw new EnvoyConfigError(sortProblems(reader.problems));
  }
  try {
    // Only a guard: toJS refuses documents whose aliases would expand without bound.
    doc.toJS({ maxAliasCount: 100, mapAsMap: true });
  } catch (cause) {
    reader.problemAt(0, [], `YAML: ${cause instanceof Error ? cause.message : String(cause)}`);
    throw new EnvoyConfigError(sortProblems(reader.problems), { cause });
  }
  let domain: EnvoyDomain | undefined;
  try {
    domain = readDomain(reader, doc);
  } catch (error) {
    if (!(error instanceof WalkLimitExceeded)) throw error;
    reader.problemAt(
      0,
      [],
      `the file holds more than ${MAX_MAPPINGS} mappings once its aliases are expanded`,
    );
  }
  if (reader.problems.length > 0 || !domain) throw new EnvoyConfigError(sortProblems(reader.problems));
  return domain;
}

function readDomain(reader: ConfigFileReader, doc: Document): EnvoyDomain | undefined {
  const root = reader.resolve(doc.contents as YamlNode | null);
  if (root === null) {
    reader.problemAt(0, [], 'the file is empty; it needs a domain and its descriptors');
    return undefined;
  }
  const fields = reader.mapping(root, [], ROOT_KEYS, 'a mapping with a domain and its descriptors');
  if (!fields) return undefined;
  const name = reader.string(fields, 'domain', []);
  if (name === undefined)
    reader.problem(fields.get('domain')?.keyNode ?? root, ['domain'], 'is required and cannot be empty');
  const descriptors = reader.descriptors(fields.get('descriptors'), ['descriptors'], name ?? '', 0);
  if (name === undefined) return undefined;
  return { name, descriptors, place: reader.place(reader.resolve(fields.get('domain')?.value)) };
}
