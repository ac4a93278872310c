import { InvalidArgumentError } from './errors.js';
import { formatUsd, parseUsdToMicros } from './money.js';
import type { LimitSpec, TierSpec } from './policy.js';

/** Per-key amounts by limit name, in each limit's unit (micro-dollars for spend). */
export type LimitOverrides = Readonly<Record<string, number>>;

const MINUTE = 60_000;

/** Short names operators type, each finding one limit of a tier by what it counts. */
const SHORT_NAMES: Record<string, (spec: LimitSpec) => boolean> = {
  rpm: (s) => s.kind === 'rate' && s.unit === 'requests' && s.windowMs === MINUTE,
  tpm: (s) => s.kind === 'rate' && s.unit === 'tokens' && s.windowMs === MINUTE,
  tpd: (s) => s.kind === 'budget' && s.unit === 'tokens' && s.period === 'day',
  usd_per_day: (s) => s.kind === 'budget' && s.unit === 'usd_micros' && s.period === 'day',
};

/** The tier's limit an override names, by its own name or a short name; INVALID_ARGUMENT otherwise. */
export function resolveOverrideName(tier: TierSpec, field: string, name: string): LimitSpec {
  const byName = tier.limits.find((spec) => spec.name === name);
  if (byName) return byName;
  const matches = SHORT_NAMES[name] ? tier.limits.filter(SHORT_NAMES[name]) : [];
  if (matches.length === 1) return matches[0] as LimitSpec;
  const known = tier.limits.map((spec) => spec.name).join(', ');
  const why = SHORT_NAMES[name]
    ? `tier '${tier.name}' has ${matches.length === 0 ? 'no' : 'more than one'} limit '${name}' could mean`
    : `tier '${tier.name}' has no limit '${name}'`;
  throw new InvalidArgumentError(field, `${why}; its limits are ${known}`);
}

/** Parses an override's amount as the policy writes it: whole requests/tokens, or dollars for spend. */
export function parseOverrideValue(spec: LimitSpec, field: string, text: string): number {
  if (spec.unit === 'usd_micros') {
    const micros = parseUsdToMicros(text);
    if (micros === undefined)
      throw new InvalidArgumentError(field, `'${text}' is not a dollar amount like 5.00`);
    return micros;
  }
  if (!/^\d{1,12}$/.test(text.trim()))
    throw new InvalidArgumentError(field, `'${text}' is not a whole number of ${spec.unit}`);
  return Number(text.trim());
}

/** An override's amount as the policy would write it. */
export function formatOverrideValue(spec: LimitSpec | undefined, amount: number): string {
  return spec?.unit === 'usd_micros' ? formatUsd(amount).slice(1) : String(amount);
}

/** The tier's limits with this key's overrides in place; overrides naming no limit of the tier are ignored. */
export function limitsWithOverrides(
  tier: TierSpec,
  overrides: LimitOverrides | undefined,
): readonly LimitSpec[] {
  if (!overrides) return tier.limits;
  let changed = false;
  const limits = tier.limits.map((spec) => {
    const amount = overrides[spec.name];
    if (amount === undefined || amount === spec.limit) return spec;
    changed = true;
    return { ...spec, limit: amount };
  });
  return changed ? limits : tier.limits;
}
