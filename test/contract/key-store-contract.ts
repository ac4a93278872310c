import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import {
  newKeyRecord,
  revokeKeyRecord,
  rotateKeyRecord,
  setKeyLimitsRecord,
  type ApiKeyRecord,
} from '../../src/core/key-record.js';
import type { KeyStore } from '../../src/store/key-store.js';

/** Opens a key store on the given clock; the suite closes it. */
export type KeyStoreFactory = (clock: ManualClock) => Promise<KeyStore>;

const NOW = Date.UTC(2026, 10, 23, 12, 0, 0);
const DAY = 86_400_000;
let sequence = 0;

function fresh(org = `org-${process.pid}-${++sequence}`): ApiKeyRecord {
  sequence += 1;
  const id = `key_${NOW.toString(36)}${String(sequence).padStart(6, '0')}${process.pid}`;
  return newKeyRecord({
    id,
    name: `key ${sequence}`,
    owner: 'contract',
    org,
    tier: 'pro',
    secret: { sha256: `${String(sequence).padStart(8, '0')}${'f'.repeat(56)}`, hint: 'qd_live_AAAA…' },
    nowMs: NOW,
  });
}

function secretOf(record: ApiKeyRecord, index = 0): string {
  return (record.secrets[index] as { sha256: string }).sha256;
}

/** The behaviour every KeyStore must show. */
export function describeKeyStoreContract(storeName: string, openStore: KeyStoreFactory): void {
  describe(`key store contract on ${storeName}`, () => {
    async function setup() {
      const clock = new ManualClock(NOW);
      return { clock, store: await openStore(clock) };
    }

    test('a written key is found by id and by the hash of its secret, as written', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const key = fresh();
      assert.equal(await store.putKey(key, NOW), true);
      assert.deepEqual(await store.getKey(key.id), key);
      assert.deepEqual(await store.findKeyBySecret(secretOf(key)), key);
      assert.equal(await store.findKeyBySecret('0'.repeat(64)), undefined);
      assert.equal(await store.getKey('key_missing'), undefined);
    });

    test('a second write of version 1 under the same id is refused and changes nothing', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const key = fresh();
      await store.putKey(key, NOW);
      assert.equal(await store.putKey({ ...key, name: 'impostor' }, NOW), false);
      assert.equal((await store.getKey(key.id))?.name, key.name);
    });

    test('of two changes made from the same version, exactly one is written', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const key = fresh();
      await store.putKey(key, NOW);
      const results = await Promise.all([
        store.putKey(revokeKeyRecord(key, NOW), NOW),
        store.putKey(setKeyLimitsRecord(key, { requests_per_minute: 5 }, []), NOW),
      ]);
      assert.deepEqual(results.filter(Boolean).length, 1);
      assert.equal((await store.getKey(key.id))?.version, 2);
    });

    test('a rotated key is found by both secrets', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const key = fresh();
      await store.putKey(key, NOW);
      const rotated = rotateKeyRecord(key, { sha256: 'e'.repeat(64), hint: 'qd_live_EEEE…' }, NOW, DAY);
      assert.equal(await store.putKey(rotated, NOW), true);
      assert.equal((await store.findKeyBySecret(secretOf(key)))?.version, 2);
      assert.equal((await store.findKeyBySecret('e'.repeat(64)))?.id, key.id);
    });

    test('keys list in id order, a page at a time, all or one org', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const org = `org-list-${process.pid}-${++sequence}`;
      const keys = [fresh(org), fresh(org), fresh(org), fresh()];
      for (const key of keys) await store.putKey(key, NOW);
      const first = await store.listKeys({ org, limit: 2 });
      const second = await store.listKeys({ org, after: first.at(-1)?.id as string, limit: 2 });
      assert.deepEqual(
        [...first, ...second].map((k) => k.id),
        keys.slice(0, 3).map((k) => k.id),
      );
      const all = await store.listKeys({ limit: 1_000 });
      assert.ok(keys.every((k) => all.some((listed) => listed.id === k.id)));
      assert.deepEqual(
        all.map((k) => k.id),
        all.map((k) => k.id).sort(),
      );
    });

    test('last-used only moves forward, and touching an unknown id creates nothing', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const key = fresh();
      await store.putKey(key, NOW);
      await store.touchKey(key.id, NOW + 5_000);
      await store.touchKey(key.id, NOW + 1_000);
      assert.equal((await store.getKey(key.id))?.lastUsedMs, NOW + 5_000);
      await store.touchKey('key_unknown', NOW);
      assert.equal(await store.getKey('key_unknown'), undefined);
    });

    test('a write keeps last-used, which lives apart from the versioned document', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const key = fresh();
      await store.putKey(key, NOW);
      await store.touchKey(key.id, NOW + 1);
      await store.putKey(revokeKeyRecord(key, NOW + 2), NOW + 2);
      const stored = await store.getKey(key.id);
      assert.equal(stored?.lastUsedMs, NOW + 1);
      assert.equal(stored?.revokedMs, NOW + 2);
    });

    test('every write is announced to change watchers with the key id', async (t) => {
      const { store } = await setup();
      t.after(() => store.close());
      const heard: string[] = [];
      let subscribed: () => void = () => undefined;
      const listening = new Promise<void>((resolve) => (subscribed = resolve));
      store.watchKeyChanges((id) => (id === undefined ? subscribed() : heard.push(id)));
      // Redis announces (with undefined: forget everything) once its channel listens; memory listens at once.
      if (store.kind === 'redis') await listening;
      const key = fresh();
      await store.putKey(key, NOW);
      await store.putKey(revokeKeyRecord(key, NOW), NOW);
      while (heard.length < 2) await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(heard, [key.id, key.id]);
    });
  });
}
