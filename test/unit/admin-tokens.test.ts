import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AdminTokens, AdminTokensError, parseAdminTokens } from '../../src/authority/admin-tokens.js';

const hex = (token: string) => createHash('sha256').update(token).digest('hex');

function bearer(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

test('a call is named by the token it carries: a file entry with its role, or QUOTAD_ADMIN_TOKEN as admin', () => {
  const file = `tokens:\n  - { name: alice, role: admin, sha256: ${hex('alice-token-123456')} }\n  - name: viewer\n    role: read-only\n    sha256: ${hex('viewer-token-12345')}\n`;
  const tokens = new AdminTokens('env-token-1234567', parseAdminTokens(file, 'tokens.yaml'));
  assert.deepEqual(
    ['alice-token-123456', 'viewer-token-12345', 'env-token-1234567', 'nobody-token-1234'].map((t) =>
      tokens.identify(bearer(t)),
    ),
    [
      { name: 'alice', role: 'admin' },
      { name: 'viewer', role: 'read-only' },
      { name: 'admin', role: 'admin' },
      undefined,
    ],
  );
});

test('a tokens file is refused naming the entry and field: bad role, bad hash, a name or hash twice, unknown fields', () => {
  const h = hex('x');
  const cases: [string, RegExp][] = [
    [`tokens:\n  - { name: a, role: owner, sha256: ${h} }`, /tokens\[0\]\.role: expected admin or read-only/],
    [
      `tokens:\n  - { name: a, role: admin, sha256: abc }`,
      /tokens\[0\]\.sha256: expected the token's SHA-256/,
    ],
    [
      `tokens:\n  - { name: a, role: admin, sha256: ${h} }\n  - { name: a, role: admin, sha256: ${hex('y')} }`,
      /tokens\[1\]\.name: 'a' is named twice/,
    ],
    [
      `tokens:\n  - { name: a, role: admin, sha256: ${h} }\n  - { name: b, role: admin, sha256: ${h} }`,
      /tokens\[1\]\.sha256: the same token as 'a'/,
    ],
    [
      `tokens:\n  - { name: a, role: admin, sha256: ${h}, token: secret }`,
      /tokens\[0\]\.token: unknown field/,
    ],
    [`tokens: nope`, /tokens: expected a list/],
  ];
  for (const [text, message] of cases) {
    assert.throws(
      () => parseAdminTokens(text, 'f.yaml'),
      (error: Error) => error instanceof AdminTokensError && message.test(error.message),
      text,
    );
  }
});

test("a file may not name a token 'admin' while QUOTAD_ADMIN_TOKEN is set", () => {
  const entries = parseAdminTokens(
    `tokens:\n  - { name: admin, role: admin, sha256: ${hex('z')} }`,
    'f.yaml',
  );
  assert.throws(
    () => new AdminTokens('env-token-1234567', entries),
    /the name 'admin' is QUOTAD_ADMIN_TOKEN's/,
  );
  assert.equal(new AdminTokens(undefined, entries).size, 1);
});
