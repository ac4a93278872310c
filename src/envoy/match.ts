import type { DescriptorLevel, DescriptorNode, EnvoyConfig, EnvoyDomain, RateLimitRule } from './config.js';
import type { RateLimitUnit } from './rate-limit-unit.js';
import { UNIT_WINDOW_MS } from './rate-limit-unit.js';
import { matchesWildcard } from './wildcard.js';

/** One key/value pair of a request's descriptor, as Envoy sends it. */
export interface DescriptorEntry {
  readonly key: string;
  readonly value: string;
}

/** The `limit` Envoy may send with a descriptor: it replaces whatever the configuration says. */
export interface LimitOverride {
  readonly requestsPerUnit: number;
  readonly unit: RateLimitUnit;
}

/** One descriptor of a `ShouldRateLimit` request. */
export interface RequestDescriptor {
  readonly entries: readonly DescriptorEntry[];
  readonly limit?: LimitOverride | undefined;
  /** The descriptor's own `hits_addend`, when sent; 0 is a check that charges nothing. */
  readonly hitsAddend?: number | undefined;
}

/** What the matcher needs of a `ShouldRateLimit` request. */
export interface RateLimitQuery {
  readonly domain: string;
  readonly descriptors: readonly RequestDescriptor[];
  /** The request's `hits_addend`; 0 or absent means 1. */
  readonly hitsAddend?: number | undefined;
}

/** No limit applies: `OK` with no current limit. */
export interface NoLimit {
  readonly kind: 'no_limit';
  /** `unknown_domain`: no file defines the domain; `no_rule`: no descriptor with a rate_limit matches. */
  readonly reason: 'unknown_domain' | 'no_rule';
  readonly hits: number;
}

/** A rule with `unlimited: true` matched: `OK`, never counted. */
export interface UnlimitedMatch {
  readonly kind: 'unlimited';
  readonly rule: RateLimitRule;
  readonly metricName: string;
  readonly hits: number;
}

/** A named rule matched but another rule of the same request `replaces` it: it is neither checked nor counted. */
export interface ReplacedMatch {
  readonly kind: 'replaced';
  readonly rule: RateLimitRule;
  readonly metricName: string;
  readonly hits: number;
}

/** A limit applies: count `hits` against `requestsPerUnit` in a sliding window of `windowMs`. */
export interface LimitedMatch {
  readonly kind: 'limited';
  /** The configuration's rule; undefined when the descriptor's own `limit` override applies. */
  readonly rule: RateLimitRule | undefined;
  readonly override: boolean;
  /**
   * Where the count lives, unique within the domain: the descriptor's entries with the request's values,
   * except that an entry matched by a `share_threshold` wildcard carries the wildcard, so that every value
   * it matches shares one counter. The store keys it together with the domain and `windowMs`.
   */
  readonly counterKey: string;
  readonly requestsPerUnit: number;
  readonly unit: RateLimitUnit;
  readonly windowMs: number;
  /** The rule's `name`, which Envoy reports in `current_limit.name`. */
  readonly name: string | undefined;
  /** `shadow_mode`: report OVER_LIMIT for this descriptor, never deny the request for it. */
  readonly shadow: boolean;
  readonly quotaMode: boolean;
  /**
   * envoyproxy/ratelimit's statistics key: the rule's path, with the request's values only where
   * `detailed_metric` or `value_to_metric` ask for them, so its cardinality is the configuration's.
   */
  readonly metricName: string;
  readonly hits: number;
}

export type DescriptorMatch = NoLimit | UnlimitedMatch | ReplacedMatch | LimitedMatch;

/** How a request entry found its descriptor, which decides what metric names and counters carry. */
type MatchedBy = 'value' | 'wildcard' | 'key';

interface Step {
  readonly entry: DescriptorEntry;
  readonly node: DescriptorNode;
  readonly by: MatchedBy;
}

/** Exact value first, then the first wildcard of that key that matches, then the key alone. */
function lookUp(level: DescriptorLevel, entry: DescriptorEntry): Step | undefined {
  const exact = level.byValue.get(entry.key)?.get(entry.value);
  if (exact) return { entry, node: exact, by: 'value' };
  const wildcard = level.wildcards
    .get(entry.key)
    ?.find((node) => node.wildcardParts !== undefined && matchesWildcard(node.wildcardParts, entry.value));
  if (wildcard) return { entry, node: wildcard, by: 'wildcard' };
  const keyOnly = level.keyOnly.get(entry.key);
  return keyOnly ? { entry, node: keyOnly, by: 'key' } : undefined;
}

/**
 * The rule a descriptor resolves to, as envoyproxy/ratelimit resolves it: one level per entry, never
 * backtracking, and only the rule of the level of the last entry counts (a request with fewer or more
 * entries than the configuration nests matches nothing).
 */
function resolve(
  domain: EnvoyDomain,
  entries: readonly DescriptorEntry[],
): { rule: RateLimitRule; steps: Step[] } | undefined {
  let level = domain.descriptors;
  const steps: Step[] = [];
  for (const [index, entry] of entries.entries()) {
    const step = lookUp(level, entry);
    if (!step) return undefined;
    steps.push(step);
    if (index === entries.length - 1) return step.node.rule ? { rule: step.node.rule, steps } : undefined;
    level = step.node.children;
    if (level.size === 0) return undefined;
  }
  return undefined;
}

function segment(key: string, value: string): string {
  return value === '' ? key : `${key}_${value}`;
}

/** The wildcard an entry's count is shared under, when it matched a `share_threshold` wildcard. */
function sharedValue(step: Step): string | undefined {
  return step.by === 'wildcard' && step.node.shareThreshold ? step.node.value : undefined;
}

function counterKeyOf(entries: readonly (readonly [string, string])[]): string {
  return JSON.stringify(entries);
}

function metricNameOf(domain: string, rule: RateLimitRule, steps: readonly Step[]): string {
  const segments = steps.map((step) => {
    const { key, value } = step.entry;
    const shared = sharedValue(step);
    if (shared !== undefined) return segment(key, shared);
    if (rule.detailedMetric) return segment(key, value);
    switch (step.by) {
      case 'value':
        return segment(key, value);
      case 'wildcard':
        return segment(key, step.node.valueToMetric ? value : (step.node.value ?? ''));
      case 'key':
        return segment(key, step.node.valueToMetric ? value : '');
    }
  });
  return [domain, ...segments].join('.');
}

function hitsOf(descriptor: RequestDescriptor, query: RateLimitQuery): number {
  return descriptor.hitsAddend ?? Math.max(1, query.hitsAddend ?? 0);
}

function matchOne(domain: EnvoyDomain, descriptor: RequestDescriptor, hits: number): DescriptorMatch {
  const { entries, limit } = descriptor;
  if (entries.length === 0) return { kind: 'no_limit', reason: 'no_rule', hits };
  if (limit) {
    return {
      kind: 'limited',
      rule: undefined,
      override: true,
      counterKey: counterKeyOf(entries.map((entry) => [entry.key, entry.value])),
      requestsPerUnit: limit.requestsPerUnit,
      unit: limit.unit,
      windowMs: UNIT_WINDOW_MS[limit.unit],
      name: undefined,
      shadow: false,
      quotaMode: false,
      // Keys only: an override is no rule of the configuration, and its values are the request's.
      metricName: [domain.name, ...entries.map((entry) => entry.key)].join('.'),
      hits,
    };
  }
  const resolved = resolve(domain, entries);
  if (!resolved) return { kind: 'no_limit', reason: 'no_rule', hits };
  const { rule, steps } = resolved;
  const metricName = metricNameOf(domain.name, rule, steps);
  if (rule.unlimited || rule.unit === undefined) return { kind: 'unlimited', rule, metricName, hits };
  return {
    kind: 'limited',
    rule,
    override: false,
    counterKey: counterKeyOf(steps.map((step) => [step.entry.key, sharedValue(step) ?? step.entry.value])),
    requestsPerUnit: rule.requestsPerUnit,
    unit: rule.unit,
    windowMs: UNIT_WINDOW_MS[rule.unit],
    name: rule.name,
    shadow: rule.shadowMode,
    quotaMode: rule.quotaMode,
    metricName,
    hits,
  };
}

/**
 * Resolves every descriptor of a request to what applies to it, in request order. Then `replaces`: a
 * limited rule whose `name` another matched rule of the same request replaces is dropped (unlimited rules
 * and overrides are never dropped). Pure: no clock, no store.
 */
export function matchDescriptors(config: EnvoyConfig, query: RateLimitQuery): DescriptorMatch[] {
  const domain = config.domains.get(query.domain);
  if (!domain) {
    return query.descriptors.map((descriptor) => ({
      kind: 'no_limit',
      reason: 'unknown_domain',
      hits: hitsOf(descriptor, query),
    }));
  }
  const matches = query.descriptors.map((descriptor) =>
    matchOne(domain, descriptor, hitsOf(descriptor, query)),
  );
  const replaced = new Set<string>();
  for (const match of matches) {
    if (match.kind === 'limited' || match.kind === 'unlimited') {
      for (const name of match.rule?.replaces ?? []) replaced.add(name);
    }
  }
  if (replaced.size === 0) return matches;
  return matches.map((match) =>
    match.kind === 'limited' && match.rule?.name !== undefined && replaced.has(match.rule.name)
      ? { kind: 'replaced', rule: match.rule, metricName: match.metricName, hits: match.hits }
      : match,
  );
}
