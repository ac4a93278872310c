import type { RateLimitUnit } from './rate-limit-unit.js';

/** A JSON value, as the `metadata` of a descriptor holds it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Where something was written, for logs and errors. */
export interface ConfigPlace {
  readonly source: string;
  /** 1-based. */
  readonly line: number;
  readonly column: number;
}

/** A `rate_limit` block: what applies when a request's descriptor resolves to its descriptor. */
export interface RateLimitRule {
  /**
   * envoyproxy/ratelimit's key for the rule: the domain and each level's `key` or `key_value` (wildcard
   * values as written), joined by dots, e.g. `messaging.message_type_marketing.to_number`.
   */
  readonly path: string;
  /** `unlimited: true`: always OK, never counted. Then `unit` is undefined and `requestsPerUnit` 0. */
  readonly unlimited: boolean;
  readonly requestsPerUnit: number;
  readonly unit: RateLimitUnit | undefined;
  /** `name`, for `replaces`; undefined when the rule has none. */
  readonly name: string | undefined;
  /** Names of the rules this rule replaces when both apply to one request. */
  readonly replaces: readonly string[];
  /** `shadow_mode`: decided and counted, reported OVER_LIMIT per descriptor, but never denies. */
  readonly shadowMode: boolean;
  /** `quota_mode` (undocumented by envoyproxy/ratelimit but accepted): over only when every quota descriptor is. */
  readonly quotaMode: boolean;
  /** `detailed_metric`: the metric name carries the request's values. */
  readonly detailedMetric: boolean;
  /** `metadata`, returned as dynamic metadata by envoyproxy/ratelimit when asked to. */
  readonly metadata: { readonly [key: string]: JsonValue } | undefined;
  readonly place: ConfigPlace;
}

/** One entry of a descriptor list in the file: a key, maybe a value, maybe a rule, maybe children. */
export interface DescriptorNode {
  readonly key: string;
  /** undefined for a key-only descriptor (no `value`, or an empty one). */
  readonly value: string | undefined;
  /** The value split on `*` when it holds one: a wildcard that matches values by these literal parts. */
  readonly wildcardParts: readonly string[] | undefined;
  readonly rule: RateLimitRule | undefined;
  /** `value_to_metric`: metric names carry the request's value at this level. */
  readonly valueToMetric: boolean;
  /** `share_threshold` (wildcards only): every value the wildcard matches counts in one counter. */
  readonly shareThreshold: boolean;
  readonly children: DescriptorLevel;
  readonly place: ConfigPlace;
}

/** The descriptors of one list, indexed the three ways a request entry is looked up. */
export interface DescriptorLevel {
  /** key -> value -> node, for descriptors with a value (wildcards too, under their pattern). */
  readonly byValue: ReadonlyMap<string, ReadonlyMap<string, DescriptorNode>>;
  /** key -> wildcard descriptors of that key, in file order (the first that matches wins). */
  readonly wildcards: ReadonlyMap<string, readonly DescriptorNode[]>;
  /** key -> the key-only descriptor. */
  readonly keyOnly: ReadonlyMap<string, DescriptorNode>;
  /** How many descriptors the list holds; 0 ends a match. */
  readonly size: number;
}

/** One configuration file: a domain and its descriptor tree. */
export interface EnvoyDomain {
  readonly name: string;
  readonly descriptors: DescriptorLevel;
  readonly place: ConfigPlace;
}

/** Every domain in force, by name. */
export interface EnvoyConfig {
  readonly domains: ReadonlyMap<string, EnvoyDomain>;
}
