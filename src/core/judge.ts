/**
 * The verdicts of calendar budgets and concurrency leases (sliding windows are in sliding-window.ts).
 * Pure arithmetic, shared by MemoryStore and mirrored by the Lua scripts.
 */

export interface Verdict {
  used: number;
  remaining: number;
  exceeded: boolean;
  retryAfterMs: number;
  resetAfterMs: number;
}

/** A budget of `limit` in a period ending at `periodEndMs`, of which `used` is spent. */
export function judgeBudget(
  used: number,
  limit: number,
  cost: number,
  nowMs: number,
  periodEndMs: number,
): Verdict {
  const exceeded = used + cost > limit;
  const untilEnd = periodEndMs - nowMs;
  return {
    used,
    remaining: Math.max(0, limit - used),
    exceeded,
    // Only the next period has room again; a cost above the whole budget never fits.
    retryAfterMs: exceeded && cost <= limit ? untilEnd : 0,
    resetAfterMs: used > 0 ? untilEnd : 0,
  };
}

/**
 * `active` live leases, the earliest and latest ending at the given times, against `limit` slots.
 * A denial suggests a retry when the earliest lease ends, capped: leases are an upper bound, and most
 * requests finish long before theirs.
 */
export function judgeLeases(
  active: number,
  limit: number,
  cost: number,
  nowMs: number,
  earliestEndMs: number,
  latestEndMs: number,
  retryCapMs: number,
): Verdict {
  const exceeded = active + cost > limit;
  return {
    used: active,
    remaining: Math.max(0, limit - active),
    exceeded,
    retryAfterMs: exceeded && cost <= limit ? Math.min(retryCapMs, Math.max(1, earliestEndMs - nowMs)) : 0,
    resetAfterMs: active > 0 ? latestEndMs - nowMs : 0,
  };
}
