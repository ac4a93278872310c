/**
 * The sliding window of Envoy domains: two fixed windows, the previous one weighted by how much of it the
 * sliding window still covers, measured in 1/1000ths of the window (`WINDOW_SLOTS`) rather than in
 * milliseconds. Counts then stay exact integers far past any limit Envoy can send (requests_per_unit is a
 * uint32, hits up to 10^9 each) even for day-long windows, where count × window-in-ms would pass 2^53.
 *
 * The slot is rounded down, so the previous window weighs at most one slot (0.1 % of a window) more than
 * it would to the millisecond: the window errs on the strict side, never admitting more than the limit.
 * The Lua script `envoy-rate-limit.lua` implements the same arithmetic; the RLS tests run on both stores.
 */

export const WINDOW_SLOTS = 1_000;

export interface SlotWindowCounts {
  /** Hits in the current fixed window. */
  current: number;
  /** Hits in the previous fixed window. */
  previous: number;
}

export interface SlotWindowVerdict {
  /** Hits the sliding window holds now, rounded up. */
  used: number;
  /** Whether `cost` more hits would pass the limit; a limit of 0 is always over, as envoyproxy/ratelimit has it. */
  exceeded: boolean;
  /** Over: the least wait after which the same cost fits; 0 when it never can (cost over the limit). */
  retryAfterMs: number;
  /** The wait until every hit counted so far has slid out of the window (0: it holds none). */
  resetAfterMs: number;
}

/**
 * Judges `cost` more hits against `limit` in a window of `windowMs` (a multiple of WINDOW_SLOTS ms),
 * `elapsed` ms into the current fixed window.
 */
export function judgeSlotWindow(
  counts: SlotWindowCounts,
  limit: number,
  windowMs: number,
  elapsed: number,
  cost: number,
): SlotWindowVerdict {
  const { current, previous } = counts;
  const S = WINDOW_SLOTS;
  const slotMs = windowMs / S;
  const slot = Math.floor(elapsed / slotMs);
  const weighted = previous * (S - slot) + current * S;
  const used = Math.ceil(weighted / S);
  const exceeded = limit === 0 || weighted + cost * S > limit * S;
  let retryAfterMs = 0;
  if (exceeded && limit > 0 && cost <= limit) {
    if (current + cost <= limit) {
      // Fits once enough of the previous window has slid out, later in this one.
      const fitSlot = S - Math.floor(((limit - cost - current) * S) / previous);
      retryAfterMs = Math.max(1, fitSlot * slotMs - elapsed);
    } else {
      // Fits only in the next window, once enough of this one has slid out.
      const fitSlot = S - Math.floor(((limit - cost) * S) / current);
      retryAfterMs = windowMs - elapsed + fitSlot * slotMs;
    }
  }
  let resetAfterMs = 0;
  if (current > 0) resetAfterMs = 2 * windowMs - elapsed;
  else if (previous > 0) resetAfterMs = windowMs - elapsed;
  return { used, exceeded, retryAfterMs, resetAfterMs };
}

/** The counts as seen from window `index`, given what was stored at window `storedIndex`. */
export function rollSlotWindow(
  stored: (SlotWindowCounts & { index: number }) | undefined,
  index: number,
): SlotWindowCounts {
  if (!stored) return { current: 0, previous: 0 };
  if (stored.index === index) return { current: stored.current, previous: stored.previous };
  if (stored.index === index - 1) return { current: 0, previous: stored.current };
  return { current: 0, previous: 0 };
}
