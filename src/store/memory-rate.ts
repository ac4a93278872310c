/**
 * The sliding-window counter of rate limits, as the in-process store (memory-store.ts) keeps it: two fixed
 * windows, the previous one weighted by how much of it the sliding window still covers. O(1) state per
 * (scope, limit): the current window's index and two counts.
 *
 * Twin of redis/lua/includes/rate.lua: the same arithmetic in Lua for the Redis store. Edit both;
 * test/integration/store-equivalence.test.ts is the guard that keeps them equal.
 *
 * The estimate assumes the previous window's hits were spread evenly over it. Within any aligned window
 * it never admits more than the limit; across a window-length span that straddles two windows it is
 * exact for evenly spread traffic and errs on the generous side only when the previous window's traffic
 * was bunched at its end. All arithmetic stays on integers below 2^53.
 */

export interface WindowCounts {
  /** Hits in the current window. */
  current: number;
  /** Hits in the previous window. */
  previous: number;
}

export interface StoredWindow extends WindowCounts {
  /** Index of the window `current` belongs to: floor(time / windowMs). */
  index: number;
}

/** The counts as seen from window `index`: rolled forward by one window, or cleared when further behind. */
export function rollWindow(stored: StoredWindow | undefined, index: number): WindowCounts {
  if (!stored) return { current: 0, previous: 0 };
  if (stored.index === index) return { current: stored.current, previous: stored.previous };
  if (stored.index === index - 1) return { current: 0, previous: stored.current };
  return { current: 0, previous: 0 };
}

export interface WindowVerdict {
  used: number;
  remaining: number;
  exceeded: boolean;
  retryAfterMs: number;
  resetAfterMs: number;
}

/**
 * Judges a charge of `cost` against `limit` in a window of `windowMs`, `elapsed` ms into the current window.
 * A cost above the limit can never fit: it is exceeded with no retry time.
 */
export function judgeWindow(
  counts: WindowCounts,
  limit: number,
  windowMs: number,
  elapsed: number,
  cost: number,
): WindowVerdict {
  const { current, previous } = counts;
  const weighted = previous * (windowMs - elapsed) + current * windowMs;
  const used = Math.ceil(weighted / windowMs);
  const exceeded = weighted + cost * windowMs > limit * windowMs;
  let retryAfterMs = 0;
  if (exceeded && cost <= limit) {
    if (current + cost <= limit) {
      // Fits once enough of the previous window has slid out.
      const spare = (limit - cost - current) * windowMs;
      retryAfterMs = windowMs - Math.floor(spare / previous) - elapsed;
    } else {
      // Fits only in the next window, once enough of this one has slid out.
      const spare = (limit - cost) * windowMs;
      retryAfterMs = windowMs - elapsed + (windowMs - Math.floor(spare / current));
    }
  }
  let resetAfterMs = 0;
  if (current > 0) resetAfterMs = 2 * windowMs - elapsed;
  else if (previous > 0) resetAfterMs = windowMs - elapsed;
  return { used, remaining: Math.max(0, limit - used), exceeded, retryAfterMs, resetAfterMs };
}
