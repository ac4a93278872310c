/**
 * The verdict of a calendar budget, as the in-process store (memory-store.ts) judges it; the verdict type
 * its other limit kinds share.
 *
 * Twin of redis/lua/includes/budget.lua: the same arithmetic in Lua for the Redis store. Edit both;
 * test/integration/store-equivalence.test.ts is the guard that keeps them equal.
 */

export interface Verdict {
  used: number;
  remaining: number;
  exceeded: boolean;
  retryAfterMs: number;
  resetAfterMs: number;
  /** Budgets: of `used`, how much requests in flight hold. */
  reserved: number;
  /** Budgets: exceeded only because of `reserved`. */
  held: boolean;
}

/** What requests in flight hold of one budget period: their reserved amount, and their latest lease end. */
export interface BudgetHolds {
  reserved: number;
  /** Past it every lease has ended: what they reserved and never settled stays charged, as spending. */
  untilMs: number;
}

/**
 * A budget of `limit` in a period ending at `periodEndMs`, of which `used` is charged, `holds.reserved`
 * of it by reservations still in flight. When only those block the charge, the denial says so and
 * suggests a retry when the latest lease ends, capped like a concurrency denial: requests in flight
 * usually settle long before their lease ends, giving back what they did not use.
 */
export function judgeBudget(
  used: number,
  limit: number,
  cost: number,
  nowMs: number,
  periodEndMs: number,
  holds: BudgetHolds,
  retryCapMs: number,
): Verdict {
  const exceeded = used + cost > limit;
  const untilEnd = periodEndMs - nowMs;
  const reserved = nowMs < holds.untilMs ? Math.min(used, holds.reserved) : 0;
  const held = exceeded && used - reserved + cost <= limit;
  let retryAfterMs = 0;
  // Else only the next period has room again; a cost above the whole budget never fits.
  if (held) retryAfterMs = Math.min(retryCapMs, Math.max(1, holds.untilMs - nowMs));
  else if (exceeded && cost <= limit) retryAfterMs = untilEnd;
  return {
    used,
    remaining: Math.max(0, limit - used),
    exceeded,
    retryAfterMs,
    resetAfterMs: used > 0 ? untilEnd : 0,
    reserved,
    held,
  };
}
