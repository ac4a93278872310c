/**
 * An API key as the authority stores it, and the pure rules over it: state at a time, authentication of
 * one secret, revocation and rotation. No secret is ever part of a record, only SHA-256 hashes.
 */

import type { Principal } from './quota.js';

/** How long before expiry a key's answers carry a warning. */
export const EXPIRY_WARNING_MS = 14 * 86_400_000;
/** How long a revoked or expired key (or a rotated-out secret) is kept, to answer KEY_REVOKED / KEY_EXPIRED. */
export const KEY_RETENTION_MS = 30 * 86_400_000;
/** The overlap during which a rotated-out secret keeps working, when the caller names none. */
export const DEFAULT_ROTATION_OVERLAP_MS = 24 * 3_600_000;

export interface KeySecretRecord {
  /** SHA-256 of the secret, lowercase hex. */
  sha256: string;
  /** Type prefix and first characters, for humans (see keyHint). */
  hint: string;
  createdMs: number;
  /** When a rotated-out secret stops working; null while it is the key's current secret. */
  notAfterMs: number | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  owner: string;
  org: string;
  tier: string;
  createdMs: number;
  expiresMs: number | null;
  revokedMs: number | null;
  /** Newest last. */
  secrets: KeySecretRecord[];
  /** Per-key limit overrides by limit name, in the limit's unit (micro-dollars for spend). */
  limits: Record<string, number>;
  /** Whether requests must be signed (see signing.ts); absent means off. */
  signing?: SigningMode;
  /** Bumped by every write; a store writes a record only over the version before it. */
  version: number;
  /** Kept apart from the versioned document and written off the hot path, at most once a minute. */
  lastUsedMs: number | null;
}

export type KeyState = 'active' | 'revoked' | 'expired';

/** off: signatures are ignored; optional: verified when sent; required: every metered request is signed. */
export type SigningMode = 'off' | 'optional' | 'required';

export const SIGNING_MODES: readonly SigningMode[] = ['off', 'optional', 'required'];

export function signingOf(record: ApiKeyRecord): SigningMode {
  return record.signing ?? 'off';
}

/** The record with its signing mode set (absent when off, as records written before signing are). */
export function setKeySigningRecord(record: ApiKeyRecord, mode: SigningMode): ApiKeyRecord {
  if (signingOf(record) === mode) return record;
  const changed: ApiKeyRecord = { ...record, version: record.version + 1 };
  if (mode === 'off') delete changed.signing;
  else changed.signing = mode;
  return changed;
}

/** Whom a key's usage is charged to: its id, so rotation keeps its counters. */
export function keyPrincipal(record: ApiKeyRecord): Principal {
  return { subject: record.id, org: record.org, tier: record.tier };
}

export function keyState(record: ApiKeyRecord, nowMs: number): KeyState {
  if (record.revokedMs !== null) return 'revoked';
  if (record.expiresMs !== null && record.expiresMs <= nowMs) return 'expired';
  return 'active';
}

/** The answer to "may this secret be used now?". */
export type KeyAuthentication =
  | { code: 'OK'; record: ApiKeyRecord; expiresAtMs: number | null; warning: string }
  | { code: 'KEY_REVOKED' | 'KEY_EXPIRED'; record: ApiKeyRecord; expiresAtMs: number | null; reason: string }
  | { code: 'INVALID_KEY'; reason: string };

const UNKNOWN: KeyAuthentication = { code: 'INVALID_KEY', reason: 'the API key is not known' };

function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

function daysLeft(fromMs: number, toMs: number): string {
  const days = Math.floor((toMs - fromMs) / 86_400_000);
  return days >= 1 ? `in ${days} day${days === 1 ? '' : 's'}` : 'within a day';
}

/** Decides whether the secret hashing to `sha256` may be used at `nowMs`. */
export function authenticateSecret(
  record: ApiKeyRecord | undefined,
  sha256: string,
  nowMs: number,
): KeyAuthentication {
  const secret = record?.secrets.find((s) => s.sha256 === sha256);
  if (!record || !secret) return UNKNOWN;
  if (record.revokedMs !== null) {
    const reason = `the API key ${record.id} was revoked at ${isoDate(record.revokedMs)}`;
    return { code: 'KEY_REVOKED', record, expiresAtMs: record.expiresMs, reason };
  }
  // A secret stops at the earlier of the key's expiry and, once rotated out, its own end.
  const ends = [record.expiresMs, secret.notAfterMs].filter((ms): ms is number => ms !== null);
  const expiresAtMs = ends.length > 0 ? Math.min(...ends) : null;
  if (expiresAtMs !== null && expiresAtMs <= nowMs) {
    const what =
      secret.notAfterMs === expiresAtMs ? 'this secret was rotated out and stopped working' : 'expired';
    const reason = `the API key ${record.id} ${what} at ${isoDate(expiresAtMs)}`;
    return { code: 'KEY_EXPIRED', record, expiresAtMs, reason };
  }
  let warning = '';
  if (secret.notAfterMs !== null && secret.notAfterMs === expiresAtMs) {
    warning = `this secret of API key ${record.id} was rotated out and stops working ${daysLeft(nowMs, expiresAtMs)} (${isoDate(expiresAtMs)}); switch to the new secret`;
  } else if (expiresAtMs !== null && expiresAtMs - nowMs <= EXPIRY_WARNING_MS) {
    warning = `API key ${record.id} expires ${daysLeft(nowMs, expiresAtMs)} (${isoDate(expiresAtMs)}); rotate or replace it`;
  }
  return { code: 'OK', record, expiresAtMs, warning };
}

export interface NewKey {
  id: string;
  name: string;
  owner: string;
  org: string;
  tier: string;
  secret: Omit<KeySecretRecord, 'notAfterMs' | 'createdMs'>;
  nowMs: number;
  /** 0 or undefined: never expires. */
  expiresInMs?: number;
  signing?: SigningMode;
}

export function newKeyRecord(key: NewKey): ApiKeyRecord {
  return {
    id: key.id,
    name: key.name,
    owner: key.owner,
    org: key.org,
    tier: key.tier,
    createdMs: key.nowMs,
    expiresMs: key.expiresInMs ? key.nowMs + key.expiresInMs : null,
    revokedMs: null,
    secrets: [{ ...key.secret, createdMs: key.nowMs, notAfterMs: null }],
    limits: {},
    ...(key.signing && key.signing !== 'off' ? { signing: key.signing } : {}),
    version: 1,
    lastUsedMs: null,
  };
}

/** The next version of a record: what every change returns, so stores can compare and set. */
function next(record: ApiKeyRecord, change: Partial<ApiKeyRecord>): ApiKeyRecord {
  return { ...record, ...change, version: record.version + 1 };
}

/** Revokes a key; a revoked key stays as it was. */
export function revokeKeyRecord(record: ApiKeyRecord, nowMs: number): ApiKeyRecord {
  return record.revokedMs !== null ? record : next(record, { revokedMs: nowMs });
}

/**
 * Adds a new current secret. Every older secret still in force stops at `nowMs + overlapMs` (or earlier,
 * if it was already due to stop). Rotated-out secrets are kept for KEY_RETENTION_MS after their end, so
 * they are refused as rotated out rather than as unknown.
 */
export function rotateKeyRecord(
  record: ApiKeyRecord,
  secret: Omit<KeySecretRecord, 'notAfterMs' | 'createdMs'>,
  nowMs: number,
  overlapMs: number,
): ApiKeyRecord {
  const until = nowMs + overlapMs;
  const previous = record.secrets
    .map((s) => ({ ...s, notAfterMs: s.notAfterMs === null ? until : Math.min(s.notAfterMs, until) }))
    .filter((s) => s.notAfterMs + KEY_RETENTION_MS > nowMs);
  return next(record, { secrets: [...previous, { ...secret, createdMs: nowMs, notAfterMs: null }] });
}

export function setKeyLimitsRecord(
  record: ApiKeyRecord,
  set: Readonly<Record<string, number>>,
  unset: readonly string[],
): ApiKeyRecord {
  const merged = { ...record.limits, ...set };
  const limits = Object.fromEntries(Object.entries(merged).filter(([name]) => !unset.includes(name)));
  return next(record, { limits });
}

/**
 * How long a store keeps the record after `nowMs`, or null for as long as the key lives: revoked and
 * expired keys are kept KEY_RETENTION_MS, so they are refused with a reason rather than as unknown.
 */
export function recordTtlMs(record: ApiKeyRecord, nowMs: number): number | null {
  const end = record.revokedMs ?? record.expiresMs;
  return end === null ? null : Math.max(1, end + KEY_RETENTION_MS - nowMs);
}

/** How long a store keeps a secret's index entry after `nowMs`; null for as long as the record. */
export function secretTtlMs(record: ApiKeyRecord, secret: KeySecretRecord, nowMs: number): number | null {
  const recordTtl = recordTtlMs(record, nowMs);
  if (secret.notAfterMs === null) return recordTtl;
  const own = Math.max(1, secret.notAfterMs + KEY_RETENTION_MS - nowMs);
  return recordTtl === null ? own : Math.min(own, recordTtl);
}
