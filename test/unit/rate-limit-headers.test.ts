import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rateLimitHeaders, retryHeaders, spreadRetry } from '../../src/gateway/rate-limit-headers.js';
import type { LimitStatus__Output } from '../../src/gen/quotad/v1/LimitStatus.js';

const DAY_MS = 86_400_000;

function status(
  fields: Partial<LimitStatus__Output> & Pick<LimitStatus__Output, 'name' | 'unit' | 'kind'>,
): LimitStatus__Output {
  return {
    limit: 0,
    used: 0,
    remaining: 0,
    resetAfterMs: 0,
    exceeded: false,
    shadow: false,
    retryAfterMs: 0,
    windowMs: 0,
    periodStartMs: 0,
    periodEndMs: 0,
    reserved: 0,
    held: false,
    ...fields,
  };
}

const rpm = status({
  name: 'requests_per_minute',
  unit: 'REQUESTS',
  kind: 'RATE',
  limit: 10,
  used: 2,
  remaining: 8,
  resetAfterMs: 42_000,
  windowMs: 60_000,
});
const tpm = status({
  name: 'tokens_per_minute',
  unit: 'TOKENS',
  kind: 'RATE',
  limit: 4_000,
  used: 1_200,
  remaining: 2_800,
  resetAfterMs: 18_000,
  windowMs: 60_000,
});
const tpd = status({
  name: 'tokens_per_day',
  unit: 'TOKENS',
  kind: 'BUDGET',
  limit: 100_000,
  used: 5_000,
  remaining: 95_000,
  resetAfterMs: 36_000_500,
  periodStartMs: DAY_MS,
  periodEndMs: 2 * DAY_MS,
});
const spend = status({
  name: 'spend_per_day',
  unit: 'USD_MICROS',
  kind: 'BUDGET',
  limit: 1_000_000,
  used: 250_000,
  remaining: 750_000,
  resetAfterMs: 36_000_500,
  periodStartMs: DAY_MS,
  periodEndMs: 2 * DAY_MS,
});
const concurrent = status({
  name: 'concurrent_requests',
  unit: 'CONCURRENT',
  kind: 'CONCURRENCY',
  limit: 2,
  used: 1,
  remaining: 1,
});
const freeTier = [rpm, tpm, tpd, spend, concurrent];

describe('rate-limit headers', () => {
  test('a free-tier limit set produces exactly the expected headers', () => {
    assert.deepEqual(rateLimitHeaders(freeTier), {
      'x-ratelimit-limit-requests': '10',
      'x-ratelimit-remaining-requests': '8',
      'x-ratelimit-reset-requests': '42s',
      'x-ratelimit-limit-tokens': '4000',
      'x-ratelimit-remaining-tokens': '2800',
      'x-ratelimit-reset-tokens': '18s',
      'x-ratelimit-limit': '10',
      'x-ratelimit-remaining': '8',
      'x-ratelimit-reset': '42',
      'ratelimit-policy':
        '"requests_per_minute";q=10;w=60, "tokens_per_minute";q=4000;w=60;qu="tokens", ' +
        '"tokens_per_day";q=100000;w=86400;qu="tokens", "spend_per_day";q=1000000;w=86400;qu="usd-micros"',
      ratelimit:
        '"requests_per_minute";r=8;t=42, "tokens_per_minute";r=2800;t=18, ' +
        '"tokens_per_day";r=95000;t=36001, "spend_per_day";r=750000;t=36001',
    });
  });

  test('no limits, no headers', () => {
    assert.deepEqual(rateLimitHeaders([]), {});
  });

  test('the request trio comes from the request rate with the least remaining', () => {
    const rph = status({
      name: 'requests_per_hour',
      unit: 'REQUESTS',
      kind: 'RATE',
      limit: 100,
      remaining: 3,
      resetAfterMs: 360_000,
      windowMs: 3_600_000,
    });
    const headers = rateLimitHeaders([rpm, rph]);
    assert.equal(headers['x-ratelimit-limit-requests'], '100');
    assert.equal(headers['x-ratelimit-remaining-requests'], '3');
    assert.equal(headers['x-ratelimit-reset-requests'], '6m0s');
  });

  test('between request rates with equal remaining, the shorter window wins', () => {
    const rph = status({
      name: 'requests_per_hour',
      unit: 'REQUESTS',
      kind: 'RATE',
      limit: 100,
      remaining: 8,
      resetAfterMs: 360_000,
      windowMs: 3_600_000,
    });
    assert.equal(rateLimitHeaders([rph, rpm])['x-ratelimit-limit-requests'], '10');
  });

  test('the token trio comes from a token budget when it has the least remaining', () => {
    const nearlySpent = { ...tpd, remaining: 250, resetAfterMs: 250 };
    const headers = rateLimitHeaders([tpm, nearlySpent]);
    assert.equal(headers['x-ratelimit-limit-tokens'], '100000');
    assert.equal(headers['x-ratelimit-remaining-tokens'], '250');
    assert.equal(headers['x-ratelimit-reset-tokens'], '250ms');
  });

  test('a trio is omitted when no limit of its unit exists', () => {
    const headers = rateLimitHeaders([spend]);
    assert.equal(headers['x-ratelimit-limit-requests'], undefined);
    assert.equal(headers['x-ratelimit-limit-tokens'], undefined);
  });

  test('shadow limits show in no header', () => {
    const shadows = freeTier.map((limit) => ({
      ...limit,
      name: `shadow_${limit.name}`,
      remaining: 0,
      shadow: true,
    }));
    assert.deepEqual(rateLimitHeaders([...freeTier, ...shadows]), rateLimitHeaders(freeTier));
  });

  test('X-RateLimit-* always describe the request rate with the least left, even when a token limit is tighter', () => {
    const tokensNearlySpent = { ...tpm, remaining: 10 };
    const headers = rateLimitHeaders([rpm, tokensNearlySpent, { ...concurrent, remaining: 0 }]);
    assert.deepEqual(
      [headers['x-ratelimit-limit'], headers['x-ratelimit-remaining'], headers['x-ratelimit-reset']],
      ['10', '8', '42'],
    );
  });

  test('no request rate, no X-RateLimit-* (a token or dollar amount never stands in for requests)', () => {
    const headers = rateLimitHeaders([tpm, spend]);
    assert.equal(headers['x-ratelimit-limit'], undefined);
  });

  test('every family gives one reset for one limit: OpenAI-style duration, X-RateLimit seconds, IETF t', () => {
    // A sliding minute whose current window holds requests: whole again 72 s from now, past the window.
    const sliding = { ...rpm, remaining: 0, exceeded: true, resetAfterMs: 72_000 };
    const headers = rateLimitHeaders([sliding]);
    assert.deepEqual(
      [headers['x-ratelimit-reset-requests'], headers['x-ratelimit-reset'], headers.ratelimit],
      ['1m12s', '72', '"requests_per_minute";r=0;t=72'],
    );
  });

  test('the reset in seconds rounds up', () => {
    assert.equal(rateLimitHeaders([{ ...rpm, resetAfterMs: 1_001 }])['x-ratelimit-reset'], '2');
  });

  test('concurrency limits are not listed in RateLimit-Policy or RateLimit', () => {
    const headers = rateLimitHeaders([concurrent, rpm]);
    assert.equal(headers['ratelimit-policy'], '"requests_per_minute";q=10;w=60');
    assert.equal(headers['ratelimit'], '"requests_per_minute";r=8;t=42');
  });

  test('RateLimit-Policy and RateLimit follow the order the authority reported', () => {
    const names = (header: string | undefined) => header?.split(', ').map((item) => item.split(';')[0]);
    const reversed = rateLimitHeaders([...freeTier].reverse());
    const expected = ['"spend_per_day"', '"tokens_per_day"', '"tokens_per_minute"', '"requests_per_minute"'];
    assert.deepEqual(names(reversed['ratelimit-policy']), expected);
    assert.deepEqual(names(reversed['ratelimit']), expected);
  });
});

describe('retry headers', () => {
  test('retry-after rounds up to whole seconds and retry-after-ms is exact', () => {
    assert.deepEqual(retryHeaders(1_500), { 'retry-after': '2', 'retry-after-ms': '1500' });
  });

  test('retry-after is at least one second', () => {
    assert.deepEqual(retryHeaders(0), { 'retry-after': '1', 'retry-after-ms': '0' });
    assert.deepEqual(retryHeaders(200), { 'retry-after': '1', 'retry-after-ms': '200' });
  });
});

describe('retry spread', () => {
  test('a refused caller is told to wait at least what the authority said, and at most half as long again', () => {
    assert.equal(
      spreadRetry(18_000, () => 0),
      18_000,
    );
    assert.equal(
      spreadRetry(18_000, () => 0.999_999),
      18_000 + 4_999,
    );
    assert.equal(
      spreadRetry(1_000, () => 0.999_999),
      1_000 + 499,
    );
    assert.equal(
      spreadRetry(20_000, () => 0.999_999),
      20_000 + 4_999,
      'the spread stops at 5 s',
    );
    assert.equal(
      spreadRetry(50, () => 0.999_999),
      50 + 99,
      'and starts at 100 ms',
    );
  });

  test('callers refused together are handed different retry times, so they come back one after another', () => {
    const times = Array.from({ length: 200 }, () => spreadRetry(18_000));
    assert.ok(new Set(times).size > 150, `${new Set(times).size} distinct of 200`);
    assert.ok(times.every((t) => t >= 18_000 && t < 23_000));
  });
});
