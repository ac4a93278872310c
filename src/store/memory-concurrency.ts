/**
 * The verdict of a concurrency limit's leases, as the in-process store (memory-store.ts) judges it.
 *
 * Twin of redis/lua/includes/concurrency.lua: the same arithmetic in Lua for the Redis store. Edit both;
 * test/integration/store-equivalence.test.ts is the guard that keeps them equal.
 */
import type { Verdict } from './memory-budget.js';

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
    reserved: 0,
    held: false,
  };
}
