import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeSlotWindow, rollSlotWindow } from '../../src/core/slot-window.js';

const MINUTE = 60_000;

describe('the sliding window of Envoy domains (thousandths of a window)', () => {
  test('a limit of 0 is over even for a call that adds nothing, and suggests no retry', () => {
    const verdict = judgeSlotWindow({ current: 0, previous: 0 }, 0, MINUTE, 0, 0);
    assert.deepEqual([verdict.exceeded, verdict.retryAfterMs], [true, 0]);
  });

  test('a full previous window blocks until the share of it that one hit needs has slid out', () => {
    const blocked = judgeSlotWindow({ current: 0, previous: 20 }, 20, MINUTE, 0, 1);
    assert.deepEqual([blocked.exceeded, blocked.retryAfterMs], [true, 3_000]);
    assert.equal(judgeSlotWindow({ current: 0, previous: 20 }, 20, MINUTE, 3_000, 1).exceeded, false);
  });

  test('it never admits more than the limit in any one-window span, whatever the timing', () => {
    // Greedy traffic: at every 250 ms, as many single hits as the window admits.
    const limit = 7;
    const hits: number[] = [];
    let stored = { index: 0, current: 0, previous: 0 };
    for (let now = 0; now < 10 * MINUTE; now += 250) {
      const index = Math.floor(now / MINUTE);
      let counts = rollSlotWindow(stored, index);
      while (!judgeSlotWindow(counts, limit, MINUTE, now - index * MINUTE, 1).exceeded) {
        counts = { ...counts, current: counts.current + 1 };
        hits.push(now);
      }
      stored = { index, ...counts };
    }
    for (const start of hits) {
      assert.ok(hits.filter((t) => t >= start && t < start + MINUTE).length <= limit, `window from ${start}`);
    }
    // And it is not far stricter than the limit either: over 10 minutes, at least 8 windows' worth.
    assert.ok(hits.length >= 8 * limit, `admitted ${hits.length}`);
  });

  test('counts stay exact for a day-long window of four billion hits', () => {
    const day = 86_400_000;
    const verdict = judgeSlotWindow(
      { current: 3_999_999_999, previous: 4_000_000_000 },
      4_000_000_000,
      day,
      day - 1,
      1,
    );
    assert.equal(verdict.used, 3_999_999_999 + 4_000_000);
  });
});
