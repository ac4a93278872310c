import type { AnomalySpec } from './policy.js';

/**
 * A principal's usage against its own baseline: counts of the interval in progress, and the decayed
 * average of the intervals before it (each interval's weight halves every half-life).
 */
export interface UsageBaseline {
  /** The interval in progress (now ÷ interval length). */
  index: number;
  requests: number;
  tokens: number;
  baselineRequests: number;
  baselineTokens: number;
  /** How much of the principal's time the baseline has seen, ms. */
  historyMs: number;
  /** No anomaly is raised before this (the cool-down of the last one). */
  quietUntilMs: number;
  /** Checks are denied before this (a `block` anomaly's cool-down); 0 when not blocked. */
  blockedUntilMs: number;
}

export interface UsageAnomaly {
  measure: 'requests' | 'tokens';
  observed: number;
  baseline: number;
}

/**
 * Counts one admitted request of `tokens` at `now`, rolling finished intervals into the baseline, and
 * says whether the interval in progress is now an anomaly: above `factor` × its baseline and above the
 * minimums, once the baseline has `minHistoryMs` behind it, outside a cool-down. includes/events.lua
 * computes the same in Redis.
 */
export function observeUsage(
  stored: UsageBaseline | undefined,
  spec: AnomalySpec,
  now: number,
  tokens: number,
  action: 'alert' | 'block',
): { baseline: UsageBaseline; anomaly: UsageAnomaly | undefined } {
  const index = Math.floor(now / spec.intervalMs);
  const b: UsageBaseline = stored
    ? { ...stored }
    : {
        index,
        requests: 0,
        tokens: 0,
        baselineRequests: 0,
        baselineTokens: 0,
        historyMs: 0,
        quietUntilMs: 0,
        blockedUntilMs: 0,
      };
  if (b.index < index) {
    const alpha = 0.5 ** (spec.intervalMs / spec.halfLifeMs);
    const decay = alpha ** (index - b.index - 1);
    b.baselineRequests = (b.baselineRequests * alpha + b.requests * (1 - alpha)) * decay;
    b.baselineTokens = (b.baselineTokens * alpha + b.tokens * (1 - alpha)) * decay;
    b.historyMs += (index - b.index) * spec.intervalMs;
    b.index = index;
    b.requests = 0;
    b.tokens = 0;
  }
  b.requests += 1;
  b.tokens += tokens;
  let anomaly: UsageAnomaly | undefined;
  if (b.historyMs >= spec.minHistoryMs && now >= b.quietUntilMs) {
    // The average started from 0: divided by the weight its intervals have so far, it is not biased low
    // while the history is short.
    const weight = 1 - (0.5 ** (spec.intervalMs / spec.halfLifeMs)) ** (b.historyMs / spec.intervalMs);
    const baselineRequests = b.baselineRequests / weight;
    const baselineTokens = b.baselineTokens / weight;
    if (b.requests >= spec.minRequests && b.requests > spec.factor * baselineRequests) {
      anomaly = { measure: 'requests', observed: b.requests, baseline: baselineRequests };
    } else if (b.tokens >= spec.minTokens && b.tokens > spec.factor * baselineTokens) {
      anomaly = { measure: 'tokens', observed: b.tokens, baseline: baselineTokens };
    }
    if (anomaly) {
      b.quietUntilMs = now + spec.cooldownMs;
      b.blockedUntilMs = action === 'block' ? now + spec.cooldownMs : 0;
    }
  }
  return { baseline: b, anomaly };
}
