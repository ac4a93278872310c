import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  authenticateSecret,
  DEFAULT_ROTATION_OVERLAP_MS,
  KEY_RETENTION_MS,
  newKeyRecord,
  recordTtlMs,
  revokeKeyRecord,
  rotateKeyRecord,
  secretTtlMs,
  setKeyLimitsRecord,
  type ApiKeyRecord,
} from '../../src/core/key-record.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 23, 12, 0, 0);
const FIRST = { sha256: 'a'.repeat(64), hint: 'qd_live_AAAA…' };
const SECOND = { sha256: 'b'.repeat(64), hint: 'qd_live_BBBB…' };

function record(expiresInMs = 0): ApiKeyRecord {
  return newKeyRecord({
    id: 'key_1',
    name: 'ci',
    owner: 'ops',
    org: 'acme',
    tier: 'pro',
    secret: FIRST,
    nowMs: NOW,
    expiresInMs,
  });
}

test('an active key without expiry authenticates with no warning', () => {
  const auth = authenticateSecret(record(), FIRST.sha256, NOW);
  assert.equal(auth.code, 'OK');
  assert.equal(auth.code === 'OK' && auth.warning, '');
});

test('an unknown record or a secret the record does not hold is INVALID_KEY', () => {
  assert.equal(authenticateSecret(undefined, FIRST.sha256, NOW).code, 'INVALID_KEY');
  assert.equal(authenticateSecret(record(), SECOND.sha256, NOW).code, 'INVALID_KEY');
});

test('a revoked key is KEY_REVOKED, and revoking again changes nothing', () => {
  const revoked = revokeKeyRecord(record(), NOW + 1);
  assert.equal(authenticateSecret(revoked, FIRST.sha256, NOW + 2).code, 'KEY_REVOKED');
  assert.equal(revokeKeyRecord(revoked, NOW + 5), revoked);
});

test('a key past its expiry is KEY_EXPIRED', () => {
  assert.equal(authenticateSecret(record(DAY), FIRST.sha256, NOW + DAY).code, 'KEY_EXPIRED');
});

test('a key 10 days from expiry carries a warning naming the days left; 15 days out it does not', () => {
  const near = authenticateSecret(record(10 * DAY), FIRST.sha256, NOW);
  assert.equal(near.code, 'OK');
  assert.match(near.code === 'OK' ? near.warning : '', /expires in 10 days/);
  const far = authenticateSecret(record(15 * DAY), FIRST.sha256, NOW);
  assert.equal(far.code === 'OK' && far.warning, '');
});

test('after a rotation both secrets work during the overlap, and only the new one after it', () => {
  const rotated = rotateKeyRecord(record(), SECOND, NOW, DEFAULT_ROTATION_OVERLAP_MS);
  const during = authenticateSecret(rotated, FIRST.sha256, NOW + DEFAULT_ROTATION_OVERLAP_MS - 1);
  assert.equal(during.code, 'OK');
  assert.match(during.code === 'OK' ? during.warning : '', /rotated out/);
  assert.equal(authenticateSecret(rotated, SECOND.sha256, NOW).code, 'OK');
  const after = NOW + DEFAULT_ROTATION_OVERLAP_MS;
  assert.equal(authenticateSecret(rotated, FIRST.sha256, after).code, 'KEY_EXPIRED');
  assert.equal(authenticateSecret(rotated, SECOND.sha256, after).code, 'OK');
});

test('a second rotation shortens, never lengthens, an older secret overlap', () => {
  const once = rotateKeyRecord(record(), SECOND, NOW, DAY);
  const twice = rotateKeyRecord(once, { sha256: 'c'.repeat(64), hint: 'qd_live_CCCC…' }, NOW + 1, 7 * DAY);
  assert.deepEqual(
    twice.secrets.map((s) => s.notAfterMs),
    [NOW + DAY, NOW + 1 + 7 * DAY, null],
  );
});

test('every change bumps the version by one, so stores can compare and set', () => {
  const base = record();
  assert.equal(base.version, 1);
  assert.equal(revokeKeyRecord(base, NOW).version, 2);
  assert.equal(rotateKeyRecord(base, SECOND, NOW, 0).version, 2);
  assert.equal(setKeyLimitsRecord(base, { rpm: 5 }, []).version, 2);
});

test('limits set and unset replace and remove only the overrides named', () => {
  const set = setKeyLimitsRecord(record(), { requests_per_minute: 5, tokens_per_minute: 100 }, []);
  const unset = setKeyLimitsRecord(set, { requests_per_minute: 7 }, ['tokens_per_minute']);
  assert.deepEqual(unset.limits, { requests_per_minute: 7 });
});

test('a living key is kept for good; a revoked one for the retention period after revocation', () => {
  assert.equal(recordTtlMs(record(), NOW), null);
  assert.equal(recordTtlMs(revokeKeyRecord(record(), NOW), NOW), KEY_RETENTION_MS);
  const rotated = rotateKeyRecord(record(), SECOND, NOW, DAY);
  assert.equal(secretTtlMs(rotated, rotated.secrets[0]!, NOW), DAY + KEY_RETENTION_MS);
  assert.equal(secretTtlMs(rotated, rotated.secrets[1]!, NOW), null);
});
