import type { LimitSpec } from '../core/policy.js';
import type { Principal } from '../core/quota.js';

/**
 * Every key quotad writes, built in one place. All keys of an org share the hash tag `{org:<org>}`, so one
 * script touches one Redis Cluster slot. Parts a caller chooses (subject, request_id) are escaped so that
 * no two identities share a key.
 */

const PLAIN = /^[A-Za-z0-9._-]*$/;

function escapePart(part: string): string {
  return PLAIN.test(part) ? part : encodeURIComponent(part);
}

const KIND_SEGMENT: Record<LimitSpec['kind'], string> = {
  rate: 'rate',
  budget: 'budget',
  concurrency: 'conc',
};

export function orgPrefix(org: string): string {
  return `quotad:{org:${org}}`;
}

function scopeOf(principal: Principal, spec: LimitSpec): string {
  return spec.scope === 'org' ? 'org' : `s:${escapePart(principal.subject)}`;
}

/**
 * One limit of one principal (or of the principal's whole org, for org-scoped limits), by name: the
 * in-process store's key, Redis's lease set of a concurrency limit, and the name a rate or budget limit's
 * events are known by in Redis (the key its counter had before `countersKey`; data found there is folded in).
 */
export function limitKey(principal: Principal, spec: LimitSpec): string {
  return `${orgPrefix(principal.org)}:${KIND_SEGMENT[spec.kind]}:${scopeOf(principal, spec)}:${spec.name}`;
}

/**
 * The Redis hash holding every rate and budget counter of a limit's scope: the subject's, or its org's for
 * org-scoped limits (see lua/includes/counters.lua).
 */
export function countersKey(principal: Principal, spec: LimitSpec): string {
  return `${orgPrefix(principal.org)}:c:${scopeOf(principal, spec)}`;
}

/** The reservation record of one request_id of one subject. */
export function reservationKey(principal: Principal, requestId: string): string {
  return `${orgPrefix(principal.org)}:res:${escapePart(principal.subject)}:${escapePart(requestId)}`;
}

/** A signed request's nonce, consumed by the reserve that admits it (in the org's slot, beside its counters). */
export function nonceKey(principal: Principal, nonce: string): string {
  return `${orgPrefix(principal.org)}:nonce:${escapePart(principal.subject)}:${escapePart(nonce)}`;
}

/** A reservation's member in its concurrency lease sets (unique within an org). */
export function leaseMember(principal: Principal, requestId: string): string {
  return `${escapePart(principal.subject)}:${escapePart(requestId)}`;
}

/**
 * The API key registry lives under one hash tag, `{keys}`: a lookup by secret hash cannot know the org,
 * and one slot lets a script follow the hash to the record. Lookups are cached by the authority, so this
 * slot sees writes and cache misses only.
 */
export const KEY_REGISTRY_PREFIX = 'quotad:{keys}';

/** The prefix `apiKeyRecordKey` puts before an id, for scripts that follow a secret's index to its record. */
export const API_KEY_RECORD_PREFIX = `${KEY_REGISTRY_PREFIX}:key:`;

/** An API key's record (hash: doc, v, used). Ids are plain (`key_` + base62), as scripts assume. */
export function apiKeyRecordKey(id: string): string {
  return `${API_KEY_RECORD_PREFIX}${escapePart(id)}`;
}

/** A secret's index entry: its SHA-256 (hex) to the key id. */
export function apiKeySecretKey(sha256Hex: string): string {
  return `${KEY_REGISTRY_PREFIX}:secret:${sha256Hex}`;
}

/** Every key id (sorted set, all scores 0, so ids page in lexical order: creation order). */
export const API_KEY_IDS = `${KEY_REGISTRY_PREFIX}:ids`;

/** One org's key ids, likewise. */
export function apiKeyOrgIdsKey(org: string): string {
  return `${KEY_REGISTRY_PREFIX}:org:${escapePart(org)}`;
}

/** The store's identity marker (see check-marker.lua): gone or changed means the store was replaced. */
export const STORE_MARKER = `${KEY_REGISTRY_PREFIX}:store-id`;

/** The marker id of a reset that awaits an operator's confirmation (--on-store-reset refuse). */
export const STORE_RESET_PENDING = `${KEY_REGISTRY_PREFIX}:store-reset-pending`;

/** The marker id an operator's confirmation wrote last (quotad store confirm-reset). */
export const STORE_CONFIRMED = `${KEY_REGISTRY_PREFIX}:store-confirmed`;

/** Where the authority replicas hear that a key changed (the message is its id), to drop cached lookups. */
export const API_KEY_CHANGES_CHANNEL = 'quotad:keys:changed';

/** An org's events: the records (hash: id -> event JSON, id:s -> delivery state). */
export function eventRecordsKey(org: string): string {
  return `${orgPrefix(org)}:ev`;
}

/** An org's outbox: the events still to deliver (sorted set: id -> when it is due, ms). */
export function eventOutboxKey(org: string): string {
  return `${orgPrefix(org)}:evq`;
}

/** An org's event log, newest last (sorted set: id -> created ms), for `quotad events`. */
export function eventLogKey(org: string): string {
  return `${orgPrefix(org)}:evlog`;
}

/**
 * The orgs whose outbox may hold events (sorted set: org -> when last noted). It has its own hash tag:
 * a decision script touches its org's slot only, so the authority notes the org right after a script
 * that raised events (and a slow sweep finds outboxes a crash left unnoted).
 */
export const EVENT_OUTBOX_INDEX = 'quotad:{events}:outboxes';

/** The orgs with events in their log (sorted set: org -> last event ms), for listing. */
export const EVENT_LOG_INDEX = 'quotad:{events}:orgs';

/** A subject's usage baseline for anomaly detection (hash; see includes/events.lua). */
export function anomalyKey(principal: Principal): string {
  return `${orgPrefix(principal.org)}:anom:s:${escapePart(principal.subject)}`;
}

/** The audit trail: one stream under a hash tag of its own (admin calls are rare; one slot is plenty). */
export const AUDIT_STREAM = 'quotad:{audit}:log';
