import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { deriveSigningSecret, signRequest, verifySignature } from '../../src/keys/signing.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const MASTER = Buffer.from('m'.repeat(64));
const SECRET = deriveSigningSecret(MASTER, 'key_abc', 'ab'.repeat(32));
const BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}';
const NOW_S = 1_800_000_000;

function input(
  overrides: Partial<{ timestamp: string; nonce: string; method: string; path: string; body: string }> = {},
) {
  const request = {
    timestamp: String(NOW_S),
    nonce: 'abcdefghijklmnop',
    method: 'POST',
    path: '/v1/chat/completions',
    body: BODY,
    ...overrides,
  };
  return {
    ...request,
    signature: signRequest(SECRET, request),
    bodySha256: createHash('sha256').update(request.body).digest(),
  };
}

test('a signing secret is derived per key and per API secret, so rotation gives a new one', () => {
  assert.match(SECRET, /^qd_sign_[0-9a-f]{64}$/);
  assert.notEqual(deriveSigningSecret(MASTER, 'key_abc', 'cd'.repeat(32)), SECRET);
  assert.notEqual(deriveSigningSecret(MASTER, 'key_abd', 'ab'.repeat(32)), SECRET);
  assert.equal(deriveSigningSecret(MASTER, 'key_abc', 'ab'.repeat(32)), SECRET);
});

test('a signature verifies against its secret and fails for another body, path, method, nonce or secret', () => {
  const good = input();
  assert.deepEqual(verifySignature(good, SECRET, NOW_S * 1000, 300_000), { ok: true });
  const changed = [
    { ...good, bodySha256: createHash('sha256').update(`${BODY} `).digest() },
    { ...good, path: '/v1/completions' },
    { ...good, method: 'PUT' },
    { ...good, nonce: 'abcdefghijklmnoq' },
  ];
  for (const each of changed) {
    assert.equal(verifySignature(each, SECRET, NOW_S * 1000, 300_000).ok, false);
  }
  const other = deriveSigningSecret(MASTER, 'key_other', 'ab'.repeat(32));
  assert.deepEqual(verifySignature(good, other, NOW_S * 1000, 300_000).ok, false);
});

test('a timestamp more than the allowed age away either way is signature_expired; at the bound it passes', () => {
  const codes = [-301, -300, 300, 301].map((offsetS) => {
    const result = verifySignature(
      input({ timestamp: String(NOW_S + offsetS) }),
      SECRET,
      NOW_S * 1000,
      300_000,
    );
    return result.ok ? 'ok' : result.code;
  });
  assert.deepEqual(codes, ['SIGNATURE_EXPIRED', 'ok', 'ok', 'SIGNATURE_EXPIRED']);
});

test("the README's openssl one-liner signs exactly as the authority verifies", () => {
  const block = /```sh\n(BODY='[\s\S]*?)\ncurl /.exec(README)?.[1];
  assert.ok(block, 'README has the openssl signing example');
  const script = `${block.replace(/^TS=.*$/m, `TS=${NOW_S}; NONCE=abcdefghijklmnop`)}\nprintf %s "$SIG"`;
  const hex = execFileSync('bash', ['-c', script], {
    env: { PATH: process.env.PATH ?? '', QUOTAD_SIGNING_SECRET: SECRET },
    encoding: 'utf8',
  });
  assert.equal(`v1=${hex}`, input().signature);
});
