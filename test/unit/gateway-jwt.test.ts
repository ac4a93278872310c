import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { JWT_IAT_SKEW_SECONDS, jwtVerifier } from '../../src/gateway/auth.js';
import { HttpError } from '../../src/gateway/errors.js';

const SECRET = new TextEncoder().encode('unit-test-jwt-secret-0123456789abcdef');
const DAY_MS = 86_400_000;
const now = () => Math.floor(Date.now() / 1000);

/** A token for a valid principal, with exactly the time claims given (none unless set). */
function sign(times: { exp?: number; iat?: number }, subject = 'svc-reports'): Promise<string> {
  return new SignJWT({ org: 'internal', tier: 'wide', ...times })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(subject)
    .sign(SECRET);
}

const verify = jwtVerifier({ kind: 'secret', secret: SECRET, maxLifetimeMs: DAY_MS });

/** The 401 a token gets: its code and message. */
async function refusal(token: string): Promise<{ code: string | null; message: string }> {
  try {
    await (
      await verify
    )(token);
  } catch (error) {
    assert.ok(error instanceof HttpError, String(error));
    assert.equal(error.status, 401);
    return { code: error.code, message: error.message };
  }
  assert.fail('the token was accepted');
}

describe('JWT lifetimes', () => {
  test('a token without exp is refused, naming the claim', async () => {
    const { code, message } = await refusal(await sign({ iat: now() }));
    assert.equal(code, 'invalid_token');
    assert.match(message, /"exp"/);
  });

  test('a token valid for longer than --jwt-max-lifetime is refused, with or without iat', async () => {
    for (const token of [
      await sign({ iat: now(), exp: now() + 2 * 86_400 }),
      await sign({ exp: now() + 86_400 + 3_600 }),
    ]) {
      const { code, message } = await refusal(token);
      assert.equal(code, 'invalid_token');
      assert.match(message, /exp claim is more than 24h0m0s after/);
    }
  });

  test('a token issued in the future beyond the skew is refused; within it, accepted', async () => {
    const ahead = await refusal(await sign({ iat: now() + JWT_IAT_SKEW_SECONDS + 60, exp: now() + 600 }));
    assert.deepEqual(ahead, { code: 'invalid_token', message: "The token's iat claim is in the future." });
    const principal = await (await verify)(await sign({ iat: now() + 10, exp: now() + 600 }));
    assert.equal(principal.subject, 'svc-reports');
  });

  test('a token within its lifetime is accepted, with or without iat', async () => {
    for (const token of [
      await sign({ iat: now(), exp: now() + 3_600 }),
      await sign({ exp: now() + 3_600 }),
    ]) {
      assert.deepEqual(await (await verify)(token), {
        subject: 'svc-reports',
        org: 'internal',
        tier: 'wide',
      });
    }
  });
});

test("a token whose sub starts with key_ is refused: that namespace is the API keys'", async () => {
  const { code, message } = await refusal(await sign({ exp: now() + 600 }, 'key_0mwt7oijhXB3bDeMRv4'));
  assert.equal(code, 'invalid_token');
  assert.match(message, /sub claim must not start with 'key_'/);
});
