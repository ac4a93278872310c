import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { EnvoyMemoryStore } from '../../src/store/envoy-memory-store.js';
import type { EnvoyCounterSpec, EnvoyRateLimitCommand } from '../../src/store/envoy-store.js';
import { EnvoyRedisStore } from '../../src/store/redis/envoy-redis-store.js';
import { createRedisClient } from '../../src/store/redis/redis-store.js';
import { TestRedisServer } from '../../harness/redis-server.js';

let redisServer: TestRedisServer;
let redis: ReturnType<typeof createRedisClient>;

before(async () => {
  redisServer = await TestRedisServer.start();
  redis = createRedisClient(redisServer.url, { commandTimeoutMs: 2_000 });
  await redis.connect();
});

after(async () => {
  redis.disconnect();
  await redisServer.stop();
});

/** A small deterministic generator (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const COUNTERS: Omit<EnvoyCounterSpec, 'cost' | 'reserved'>[] = [
  { counterKey: 'a', windowMs: 1_000, limit: 5, shadow: false },
  { counterKey: 'b', windowMs: 60_000, limit: 20, shadow: false },
  { counterKey: 'c', windowMs: 60_000, limit: 3, shadow: true },
  { counterKey: 'd', windowMs: 3_600_000, limit: 1_000, shadow: false },
  { counterKey: 'e', windowMs: 60_000, limit: 0, shadow: false },
];

for (const seed of [15, 16, 17]) {
  test(`the memory store and the Redis script give the same answers to 1,000 mixed commands at the same times (seed ${seed})`, async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 5) + 123);
    const memory = new EnvoyMemoryStore({ clock });
    const script = new EnvoyRedisStore({ redis, clock });
    const next = random(seed);
    const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] as T;
    const ids: string[] = [];
    for (let i = 0; i < 1_000; i++) {
      clock.advance(Math.floor(next() * 700));
      const phase = pick(['charge', 'charge', 'charge', 'reserve', 'settle'] as const);
      let requestId = '';
      if (phase === 'reserve') {
        requestId = `r${i}`;
        ids.push(requestId);
      } else if (phase === 'settle') {
        requestId = ids.length > 0 && next() < 0.8 ? pick(ids) : `never-${i}`;
      }
      const counters = Array.from({ length: 1 + Math.floor(next() * 3) }, () => {
        const counter = pick(COUNTERS);
        const cost = counter.windowMs === 3_600_000 ? Math.floor(next() * 300) : Math.floor(next() * 3);
        return { ...counter, cost, reserved: phase === 'reserve' && next() < 0.7 };
      });
      const command: EnvoyRateLimitCommand = {
        domain: `equal-${seed}`,
        phase,
        requestId,
        reservationTtlMs: 90_000,
        counters,
      };
      const [fromMemory, fromRedis] = await Promise.all([
        memory.shouldRateLimit(command),
        script.shouldRateLimit(command),
      ]);
      assert.deepEqual(fromRedis, fromMemory, `command ${i}: ${JSON.stringify(command)}`);
    }
  });
}
