import { createHash } from 'node:crypto';

/**
 * Where the counters of Envoy domains live: the same stores as the policy's limits (memory, Redis), with
 * keys of their own. One command is one atomic step (one Lua script on Redis), whatever its phase.
 */

/** One counter a request touches: a descriptor that resolved to a limit. */
export interface EnvoyCounterSpec {
  /** The matcher's counter key (unique within the domain); the store keys it by its SHA-256 and `windowMs`. */
  counterKey: string;
  windowMs: number;
  /** requests_per_unit; 0 is always over. */
  limit: number;
  /** Hits this request adds. */
  cost: number;
  /** shadow_mode: judged and counted, but never makes the request over. */
  shadow: boolean;
  /**
   * reserve: this charge is the request id's reservation (released when it settles); false charges it for
   * good, as in phase charge. settle: unused (every counter is charged the actual).
   */
  reserved: boolean;
}

/**
 * `charge`: check every counter, then charge all of them or none. `reserve`: likewise, and remember what
 * the `reserved` counters were charged under the request id until it is settled or `reservationTtlMs`
 * passes; a request id seen before charges nothing again. `settle`: release what the request id's reservation charged and charge
 * `cost` of each counter instead, without a limit check (the usage happened); once per request id.
 */
export type EnvoyPhase = 'charge' | 'reserve' | 'settle';

export interface EnvoyRateLimitCommand {
  domain: string;
  phase: EnvoyPhase;
  /** reserve and settle: the request id; '' for charge. */
  requestId: string;
  /** How long a reservation (or the memory of a settled one) is kept. */
  reservationTtlMs: number;
  counters: readonly EnvoyCounterSpec[];
}

export interface EnvoyCounterState {
  /** Hits in the sliding window after this command (before it, when nothing was charged). */
  used: number;
  /** limit − used, never below 0. */
  remaining: number;
  /** This counter was over for this command (a shadow counter too). */
  exceeded: boolean;
  /** Over: when the same hits would fit (0: never, more than the limit). */
  retryAfterMs: number;
  /** When every hit counted so far has slid out of the window. */
  resetAfterMs: number;
}

/**
 * admitted / denied (charge, reserve); duplicate (reserve of a request id already reserved or settled:
 * nothing charged); settled / settled_duplicate / settled_without_reservation (settle: the reservation
 * was released and the actual charged; the request id was settled before, nothing moved; no reservation
 * was found, the actual was charged).
 */
export type EnvoyOutcome =
  'admitted' | 'denied' | 'duplicate' | 'settled' | 'settled_duplicate' | 'settled_without_reservation';

export interface EnvoyRateLimitResult {
  outcome: EnvoyOutcome;
  /** One per command counter, in order. */
  counters: EnvoyCounterState[];
}

export interface EnvoyRateLimitStore {
  readonly kind: 'memory' | 'redis';
  /** Runs one command atomically. Rejects with StoreUnavailableError when the store is out. */
  shouldRateLimit(command: EnvoyRateLimitCommand): Promise<EnvoyRateLimitResult>;
}

const PLAIN = /^[A-Za-z0-9._-]*$/;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Every key of one domain shares the hash tag `{envoy:<domain>}`, so one request's script touches one Redis
 * Cluster slot. The domain is escaped (a `{` or `}` in it would move the tag); caller-chosen parts are hashed.
 */
export function envoyDomainPrefix(domain: string): string {
  return `quotad:{envoy:${PLAIN.test(domain) ? domain : encodeURIComponent(domain)}}`;
}

/** A sliding-window counter: hash {w = window index, c = current count, p = previous count}. */
export function envoyCounterKey(domain: string, windowMs: number, counterKey: string): string {
  return `${envoyDomainPrefix(domain)}:rl:${windowMs}:${sha256Hex(counterKey)}`;
}

/** A reservation record of one request id: hash {s = 0 reserved | 1 settled, <counter key> = "<window index>:<hits>"}. */
export function envoyReservationKey(domain: string, requestId: string): string {
  return `${envoyDomainPrefix(domain)}:res:${sha256Hex(requestId)}`;
}
