import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { periodAt, periodBounds } from '../../src/core/calendar.js';
import { formatDuration, parseDuration } from '../../src/core/duration.js';
import { costMicros, formatUsd, parseUsdToMicros } from '../../src/core/money.js';
import { judgeWindow, rollWindow } from '../../src/store/memory-rate.js';

describe('money', () => {
  test('dollar amounts parse to exact integer micro-dollars', () => {
    assert.equal(parseUsdToMicros('0.15'), 150_000);
    assert.equal(parseUsdToMicros(2.5), 2_500_000);
    assert.equal(parseUsdToMicros('$500'), 500_000_000);
    assert.equal(parseUsdToMicros('0.0000001'), undefined);
    assert.equal(parseUsdToMicros('-1'), undefined);
  });

  test('a price is rounded up to the next micro-dollar, never down', () => {
    const price = { inputMicrosPerMillion: 150_000, outputMicrosPerMillion: 600_000 };
    assert.equal(costMicros(price, 1, 0), 1);
    assert.equal(costMicros(price, 1_000_000, 1_000_000), 750_000);
    assert.equal(formatUsd(1_500_000), '$1.50');
  });
});

describe('durations', () => {
  test('policy durations parse to milliseconds', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('90d'), 90 * 86_400_000);
    assert.equal(parseDuration('1.5h'), undefined);
  });

  test('reset times are written as OpenAI writes them: 1s, 6m0s, 1h2m3s, 250ms', () => {
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(1_000), '1s');
    assert.equal(formatDuration(360_000), '6m0s');
    assert.equal(formatDuration(3_723_000), '1h2m3s');
  });
});

describe('calendar periods', () => {
  test('the day of a DST change in New York is 25 hours long and starts at local midnight', () => {
    const [, start, end] = periodBounds('day', 'America/New_York', Date.UTC(2026, 10, 1, 12));
    assert.equal(start, Date.UTC(2026, 10, 1, 4));
    assert.equal(end - start, 25 * 3_600_000);
  });

  test('weeks start on Monday and months on the first, in the configured zone', () => {
    const sunday = Date.UTC(2026, 10, 22, 12);
    assert.equal(periodBounds('week', 'UTC', sunday)[1], Date.UTC(2026, 10, 16));
    assert.equal(
      periodBounds('month', 'Asia/Kolkata', Date.UTC(2026, 11, 31, 20))[1],
      Date.UTC(2026, 11, 31, 18, 30),
    );
  });

  test('a store whose clock is past the period the authority computed picks the next period', () => {
    const bounds = periodBounds('day', 'UTC', Date.UTC(2026, 10, 22, 23, 59, 59, 999));
    assert.deepEqual(periodAt(bounds, Date.UTC(2026, 10, 23)), {
      start: Date.UTC(2026, 10, 23),
      end: Date.UTC(2026, 10, 24),
    });
  });
});

describe('sliding window', () => {
  test('counts roll forward one window and clear after two', () => {
    const stored = { index: 5, current: 7, previous: 3 };
    assert.deepEqual(rollWindow(stored, 5), { current: 7, previous: 3 });
    assert.deepEqual(rollWindow(stored, 6), { current: 0, previous: 7 });
    assert.deepEqual(rollWindow(stored, 7), { current: 0, previous: 0 });
  });

  test('for any state, waiting retry_after admits the charge and one millisecond less does not', () => {
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const windowMs = 60_000;
    for (let i = 0; i < 5_000; i++) {
      const limit = 1 + random(50);
      const cost = 1 + random(limit);
      const counts = { current: random(limit + 1), previous: random(limit + 1) };
      const now = random(windowMs);
      const verdict = judgeWindow(counts, limit, windowMs, now, cost);
      if (!verdict.exceeded) continue;
      const at = (t: number) => {
        const index = Math.floor(t / windowMs);
        return judgeWindow(
          rollWindow({ index: 0, ...counts }, index),
          limit,
          windowMs,
          t - index * windowMs,
          cost,
        );
      };
      assert.equal(
        at(now + verdict.retryAfterMs).exceeded,
        false,
        JSON.stringify({ limit, cost, counts, now }),
      );
      assert.equal(
        at(now + verdict.retryAfterMs - 1).exceeded,
        true,
        JSON.stringify({ limit, cost, counts, now }),
      );
    }
  });

  test('under bursty traffic it never admits more than the limit within one aligned window', () => {
    const windowMs = 1_000;
    const limit = 10;
    let stored = { index: 0, current: 0, previous: 0 };
    const admittedPerWindow = new Map<number, number>();
    let seed = 7;
    for (let t = 0; t < 200 * windowMs; t += 1 + ((seed = (seed * 48_271) % 2_147_483_647) % 120)) {
      const index = Math.floor(t / windowMs);
      const counts = rollWindow(stored, index);
      if (!judgeWindow(counts, limit, windowMs, t - index * windowMs, 1).exceeded) {
        stored = { index, current: counts.current + 1, previous: counts.previous };
        admittedPerWindow.set(index, (admittedPerWindow.get(index) ?? 0) + 1);
      }
    }
    assert.ok(Math.max(...admittedPerWindow.values()) <= limit);
    assert.ok(admittedPerWindow.size > 150, 'traffic reached most windows');
  });
});
