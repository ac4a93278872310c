/**
 * The time units of envoyproxy/ratelimit's `rate_limit.unit` and of Envoy's `RateLimitUnit` enum. Its
 * README documents second to day; its loader accepts every name of the enum, so week, month and year load
 * too (a month is 30 days and a year 365, as envoyproxy/ratelimit counts them).
 */
export type RateLimitUnit = 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year';

const DAY_MS = 86_400_000;

/** The length of one unit, which is the length of quotad's sliding window for a rule in that unit. */
export const UNIT_WINDOW_MS: Readonly<Record<RateLimitUnit, number>> = {
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: DAY_MS,
  week: 7 * DAY_MS,
  month: 30 * DAY_MS,
  year: 365 * DAY_MS,
};

const UNITS = Object.keys(UNIT_WINDOW_MS) as RateLimitUnit[];

/** `minute`, `MINUTE`, `Minute` -> `minute`; undefined for anything else (`UNKNOWN` included). */
export function parseRateLimitUnit(name: string): RateLimitUnit | undefined {
  const lower = name.toLowerCase();
  return UNITS.find((unit) => unit === lower);
}

/** The unit names an operator may write, for error messages. */
export const UNIT_NAMES: readonly RateLimitUnit[] = UNITS;
