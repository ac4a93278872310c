import { InvalidArgumentError } from '../core/errors.js';
import type { RateLimitQuery, RequestDescriptor } from './match.js';
import { parseRateLimitUnit } from './rate-limit-unit.js';

/**
 * The descriptor keys quotad reserves for reserve-and-settle over Envoy. An entry with one of them is taken
 * out of its descriptor before matching (so the configuration never names it) and its value is the request
 * id: `quotad.reserve` on the request path (the hits are an estimate, charged as a reservation), and
 * `quotad.settle` on the response path (`apply_on_stream_done`, the hits are the real usage).
 */
export const RESERVE_KEY = 'quotad.reserve';
export const SETTLE_KEY = 'quotad.settle';

/** The most hits one request or descriptor may add: Envoy's own bound on a route's `hits_addend`. */
export const MAX_HITS = 1_000_000_000;
export const MAX_DESCRIPTORS = 64;
export const MAX_ENTRIES = 32;
/** The longest domain, key, value or request id, in characters. */
export const MAX_TEXT = 1_024;

/** ShouldRateLimit's request as it is decoded (proto field names, uint64 as strings, enums by name). */
export interface RlsRequestMessage {
  domain?: string;
  descriptors?: {
    entries?: { key?: string; value?: string }[];
    limit?: { requests_per_unit?: number; unit?: string };
    hits_addend?: { value?: string | number };
  }[];
  hits_addend?: number;
}

export interface ParsedRlsRequest {
  query: RateLimitQuery;
  /** charge: an ordinary request; reserve / settle: reserve-and-settle under `requestId`. */
  phase: 'charge' | 'reserve' | 'settle';
  requestId: string;
  /** Per descriptor: it carried the reserve or settle entry (only those are reserved and settled). */
  underRequestId: boolean[];
}

function hitsOf(field: string, raw: string | number | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  if (!/^\d+$/.test(text) || text.length > 10 || Number(text) > MAX_HITS) {
    throw new InvalidArgumentError(field, `must be a whole number from 0 to ${MAX_HITS}, got ${text}`);
  }
  return Number(text);
}

function text(field: string, value: string | undefined, allowEmpty: boolean): string {
  const s = value ?? '';
  if (!allowEmpty && s === '') throw new InvalidArgumentError(field, 'must not be empty');
  if (s.length > MAX_TEXT) throw new InvalidArgumentError(field, `must be at most ${MAX_TEXT} characters`);
  return s;
}

/**
 * Validates a ShouldRateLimit request and turns it into the matcher's query, taking the reserve-and-settle
 * entries out. Throws InvalidArgumentError naming the field: an empty domain or descriptor list (as
 * envoyproxy/ratelimit refuses them), an empty entry list or key, numbers out of range, an override with
 * no unit, or reserve/settle entries that disagree.
 */
export function parseRlsRequest(message: RlsRequestMessage): ParsedRlsRequest {
  const domain = text('domain', message.domain, false);
  const raw = message.descriptors ?? [];
  if (raw.length === 0) throw new InvalidArgumentError('descriptors', 'must not be empty');
  if (raw.length > MAX_DESCRIPTORS) {
    throw new InvalidArgumentError('descriptors', `must be at most ${MAX_DESCRIPTORS}, got ${raw.length}`);
  }
  const requestHits = hitsOf('hits_addend', message.hits_addend);
  let phase: ParsedRlsRequest['phase'] = 'charge';
  let requestId = '';
  const underRequestId: boolean[] = [];
  const descriptors = raw.map((descriptor, d): RequestDescriptor => {
    const at = `descriptors[${d}]`;
    const rawEntries = descriptor.entries ?? [];
    if (rawEntries.length === 0) throw new InvalidArgumentError(`${at}.entries`, 'must not be empty');
    if (rawEntries.length > MAX_ENTRIES) {
      throw new InvalidArgumentError(
        `${at}.entries`,
        `must be at most ${MAX_ENTRIES}, got ${rawEntries.length}`,
      );
    }
    const entries: { key: string; value: string }[] = [];
    underRequestId[d] = false;
    rawEntries.forEach((entry, e) => {
      const key = text(`${at}.entries[${e}].key`, entry.key, false);
      const value = text(`${at}.entries[${e}].value`, entry.value, true);
      if (key !== RESERVE_KEY && key !== SETTLE_KEY) {
        entries.push({ key, value });
        return;
      }
      const entryPhase = key === RESERVE_KEY ? 'reserve' : 'settle';
      if (value === '') {
        throw new InvalidArgumentError(
          `${at}.entries[${e}].value`,
          `${key} needs the request id as its value`,
        );
      }
      if (phase !== 'charge' && (phase !== entryPhase || requestId !== value)) {
        throw new InvalidArgumentError(
          `${at}.entries[${e}]`,
          `every ${RESERVE_KEY} / ${SETTLE_KEY} entry of a request must name the same phase and request id`,
        );
      }
      phase = entryPhase;
      requestId = value;
      underRequestId[d] = true;
    });
    let limit: RequestDescriptor['limit'];
    if (descriptor.limit) {
      const unit = parseRateLimitUnit(descriptor.limit.unit ?? '');
      if (!unit) {
        throw new InvalidArgumentError(
          `${at}.limit.unit`,
          `must be a known unit, got ${descriptor.limit.unit ?? 'none'}`,
        );
      }
      limit = { requestsPerUnit: descriptor.limit.requests_per_unit ?? 0, unit };
    }
    // A UInt64Value of 0 arrives empty: present but without a value.
    const hitsAddend = descriptor.hits_addend
      ? hitsOf(`${at}.hits_addend`, descriptor.hits_addend.value ?? 0)
      : undefined;
    return {
      entries,
      ...(limit ? { limit } : {}),
      ...(hitsAddend === undefined ? {} : { hitsAddend }),
    };
  });
  return {
    query: { domain, descriptors, ...(requestHits === undefined ? {} : { hitsAddend: requestHits }) },
    phase,
    requestId,
    underRequestId,
  };
}
