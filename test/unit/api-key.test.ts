import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { checkApiKey, formatApiKey, KEY_RANDOM_BYTES, keyHint } from '../../src/keys/api-key.js';

const key = () => formatApiKey('live', randomBytes(KEY_RANDOM_BYTES));

test('a key is the type prefix, 32 random base62 characters and a 6-character checksum', () => {
  assert.match(key(), /^qd_live_[0-9A-Za-z]{38}$/);
  assert.match(formatApiKey('demo', randomBytes(KEY_RANDOM_BYTES)), /^qd_demo_[0-9A-Za-z]{38}$/);
});

test('the random body carries at least 128 bits: 32 characters of 62 each', () => {
  assert.ok(32 * Math.log2(62) >= 128);
  const keys = new Set(Array.from({ length: 10_000 }, key));
  assert.equal(keys.size, 10_000);
});

test('a well-formed key passes its check and hashes to its SHA-256', () => {
  const secret = key();
  const checked = checkApiKey(secret);
  assert.ok(checked.ok);
  assert.deepEqual(checked.sha256, createHash('sha256').update(secret).digest());
});

test('any one-character typo in the body fails the checksum, without any lookup', () => {
  const secret = key();
  for (let at = 'qd_live_'.length; at < secret.length; at++) {
    const typo = secret.slice(0, at) + (secret[at] === 'x' ? 'y' : 'x') + secret.slice(at + 1);
    assert.deepEqual(checkApiKey(typo), { ok: false, reason: 'checksum' }, `typo at ${at}`);
  }
});

test('text that is not a quotad key at all is malformed', () => {
  for (const text of ['', 'sk-abc', `qd_test_${'a'.repeat(38)}`, key().slice(0, -1), `${key()} `]) {
    assert.deepEqual(checkApiKey(text), { ok: false, reason: 'malformed' }, text);
  }
});

test('bytes that would bias the alphabet are skipped, so every character is uniform', () => {
  const biased = new Uint8Array(KEY_RANDOM_BYTES).fill(255);
  biased.set(
    Array.from({ length: 32 }, (_, i) => i),
    10,
  );
  assert.equal(formatApiKey('live', biased).slice(8, 40), '0123456789ABCDEFGHIJKLMNOPQRSTUV');
  assert.throws(() => formatApiKey('live', new Uint8Array(KEY_RANDOM_BYTES).fill(250)), /not enough/);
});

test('the hint shows the type prefix and four characters, never the rest of the secret', () => {
  const secret = key();
  assert.equal(keyHint(secret), `${secret.slice(0, 12)}…`);
});
