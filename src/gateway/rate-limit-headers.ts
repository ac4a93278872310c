import { formatDuration } from '../core/duration.js';
import type { LimitStatus__Output } from '../gen/quotad/v1/LimitStatus.js';

type Limit = LimitStatus__Output;

const IETF_UNITS: Partial<Record<Limit['unit'], string>> = {
  TOKENS: 'tokens',
  USD_MICROS: 'usd-micros',
};

/**
 * The rate-limit headers for a gateway response, from the limits the authority reported. Shadow limits never
 * show. Three dialects, each describing one thing in every answer:
 * - OpenAI's `x-ratelimit-*-requests`: the request rate with the least left; `x-ratelimit-*-tokens`: the
 *   token rate or budget with the least left;
 * - the widespread `x-ratelimit-limit|remaining|reset`: always requests (the same request rate), never a
 *   token or dollar amount, so a client counting requests is not handed tokens in the next answer;
 * - the IETF draft's `ratelimit-policy` and `ratelimit`: every rate and budget, by name.
 * "Reset" is the same in all three: how long until the limit has its whole allowance again. On a sliding
 * window that is when every request counted so far has left the window, up to two windows after the
 * latest one (the current window's requests weigh on the next); when to retry is `retry-after`, not reset.
 * Header names are lower-case.
 */
export function rateLimitHeaders(limits: readonly Limit[]): Record<string, string> {
  const enforced = limits.filter((limit) => !limit.shadow);
  const headers: Record<string, string> = {};

  const requests = leastRemaining(enforced.filter((l) => l.unit === 'REQUESTS' && l.kind === 'RATE'));
  if (requests) {
    headers['x-ratelimit-limit-requests'] = String(requests.limit);
    headers['x-ratelimit-remaining-requests'] = String(requests.remaining);
    headers['x-ratelimit-reset-requests'] = formatDuration(requests.resetAfterMs);
  }
  const tokens = leastRemaining(enforced.filter((l) => l.unit === 'TOKENS' && isRateOrBudget(l)));
  if (tokens) {
    headers['x-ratelimit-limit-tokens'] = String(tokens.limit);
    headers['x-ratelimit-remaining-tokens'] = String(tokens.remaining);
    headers['x-ratelimit-reset-tokens'] = formatDuration(tokens.resetAfterMs);
  }

  if (requests) {
    headers['x-ratelimit-limit'] = String(requests.limit);
    headers['x-ratelimit-remaining'] = String(requests.remaining);
    headers['x-ratelimit-reset'] = String(secondsUntil(requests.resetAfterMs));
  }

  // Concurrency limits are not listed: the draft's quota units describe amounts per window, and an
  // in-flight cap has neither a window nor a reset.
  const listed = enforced.filter(isRateOrBudget);
  if (listed.length > 0) {
    headers['ratelimit-policy'] = listed.map(policyItem).join(', ');
    headers['ratelimit'] = listed
      .map((l) => `${sfString(l.name)};r=${l.remaining};t=${secondsUntil(l.resetAfterMs)}`)
      .join(', ');
  }
  return headers;
}

/** The spread added to a retry time: half the wait, within these bounds. */
const SPREAD_MIN_MS = 100;
const SPREAD_MAX_MS = 5_000;

/**
 * A retry time for one of many callers refused by the same limit: the wait the authority gave, plus a
 * random share of half of it (100 ms to 5 s). Callers refused together then come back one after another,
 * each finding the room the one before left, instead of all in the same millisecond where one wins and the
 * rest are refused again (the OpenAI SDKs add no jitter to `retry-after-ms`).
 */
export function spreadRetry(waitMs: number, random: () => number = Math.random): number {
  const spread = Math.min(SPREAD_MAX_MS, Math.max(SPREAD_MIN_MS, waitMs / 2));
  return waitMs + Math.floor(random() * spread);
}

/** `retry-after` in whole seconds (rounded up, at least 1) and OpenAI's `retry-after-ms` with the exact wait. */
export function retryHeaders(retryAfterMs: number): Record<string, string> {
  const ms = Math.max(0, Math.ceil(retryAfterMs));
  return { 'retry-after': String(Math.max(1, Math.ceil(ms / 1_000))), 'retry-after-ms': String(ms) };
}

function isRateOrBudget(limit: Limit): boolean {
  return limit.kind === 'RATE' || limit.kind === 'BUDGET';
}

/** A rate's window, or a budget's calendar period, in milliseconds. */
function windowMs(limit: Limit): number {
  return limit.kind === 'BUDGET' ? limit.periodEndMs - limit.periodStartMs : limit.windowMs;
}

/** Least remaining; on a tie the shorter window, then the earlier in the authority's order. */
function leastRemaining(limits: readonly Limit[]): Limit | undefined {
  let best: Limit | undefined;
  for (const limit of limits) {
    if (
      !best ||
      limit.remaining < best.remaining ||
      (limit.remaining === best.remaining && windowMs(limit) < windowMs(best))
    ) {
      best = limit;
    }
  }
  return best;
}

function policyItem(limit: Limit): string {
  let item = `${sfString(limit.name)};q=${limit.limit}`;
  const windowSeconds = secondsUntil(windowMs(limit));
  if (windowSeconds > 0) item += `;w=${windowSeconds}`;
  const unit = IETF_UNITS[limit.unit];
  // "requests" is the draft's default quota unit, so it goes unsaid.
  if (unit) item += `;qu=${sfString(unit)}`;
  return item;
}

function secondsUntil(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1_000));
}

/** An RFC 8941 sf-string: quoted, with `\` and `"` escaped and anything outside printable ASCII dropped. */
function sfString(text: string): string {
  return `"${text.replace(/[^\x20-\x7e]/g, '').replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
