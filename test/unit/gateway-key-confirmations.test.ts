import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { KeyConfirmations } from '../../src/gateway/key-confirmations.js';

const hashOf = (key: string) => createHash('sha256').update(key).digest();

function confirmations(maxKeys = 100): { keys: KeyConfirmations; clock: ManualClock } {
  const clock = new ManualClock(1_000_000);
  return { keys: new KeyConfirmations({ ttlMs: 60_000, maxKeys, clock }), clock };
}

describe('keys the authority confirmed', () => {
  test('a confirmation lasts its TTL, and each new one extends it', () => {
    const { keys, clock } = confirmations();
    const key = hashOf('qd_live_a');
    assert.equal(keys.isConfirmed(key), false);
    keys.confirm(key);
    clock.advance(59_999);
    assert.equal(keys.isConfirmed(key), true);
    keys.confirm(key);
    clock.advance(59_999);
    assert.equal(keys.isConfirmed(key), true);
    clock.advance(1);
    assert.equal(keys.isConfirmed(key), false);
  });

  test('a refusal forgets the key at once', () => {
    const { keys } = confirmations();
    const key = hashOf('qd_live_b');
    keys.confirm(key);
    keys.forget(key);
    assert.equal(keys.isConfirmed(key), false);
  });

  test('past the most keys, the one confirmed longest ago goes first', () => {
    const { keys } = confirmations(3);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((k) => hashOf(`qd_live_${k}`)) as [
      Buffer,
      Buffer,
      Buffer,
      Buffer,
    ];
    keys.confirm(a);
    keys.confirm(b);
    keys.confirm(c);
    keys.confirm(a); // a is the newest now
    keys.confirm(d);
    assert.equal(keys.size, 3);
    assert.deepEqual(
      [a, b, c, d].map((k) => keys.isConfirmed(k)),
      [true, false, true, true],
    );
  });

  test('100 requests of one key waiting on its confirmation ask once, and all see a refusal', async () => {
    const { keys } = confirmations();
    const key = hashOf('qd_live_unknown');
    let asked = 0;
    let refuse = (_error: Error) => {};
    const ask = () => {
      asked += 1;
      return new Promise<void>((_resolve, reject) => (refuse = reject));
    };
    const waiting = Array.from({ length: 100 }, () =>
      keys.confirmOnce(key, ask).then(
        () => 'confirmed',
        () => 'refused',
      ),
    );
    refuse(new Error('unknown key'));
    assert.deepEqual(new Set(await Promise.all(waiting)), new Set(['refused']));
    assert.equal(asked, 1);
    // The next request asks again: a refusal is not remembered.
    await keys.confirmOnce(key, async () => void (asked += 1));
    assert.equal(asked, 2);
  });
});
