import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { GatewayProcess, postChat } from '../../harness/gateway-process.js';
import { adminClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';

/*
 * A burst as a busy platform sends one: 200 requests at once through a gateway to an authority, each its
 * own process, at their default settings and with the shipped policy, on this (shared, two-core) machine.
 * Every request must be decided: admitted, or refused by a limit. None may time out into a 503.
 * Not a timing test: how long the burst takes is measured by `make bench` (the `burst` scenario).
 */

const BURST = 200;
/** Keys on the shipped `pro` tier: 10 in flight and 60 a minute each, so the burst meets every kind of answer. */
const KEYS = 10;

const stores: { name: string; env: () => Promise<Record<string, string>> }[] = [
  { name: 'the in-process store', env: async () => ({}) },
  {
    name: 'Redis',
    env: async () => {
      const redis = await TestRedisServer.start();
      stops.push(() => redis.stop());
      return { REDIS_URL: redis.url };
    },
  },
];
const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const stop of stops.reverse()) await stop();
});

for (const store of stores) {
  describe(`a burst of ${BURST} requests at default settings, on ${store.name}`, { timeout: 60_000 }, () => {
    test('is decided: every request admitted or refused by a limit, none answered 503', async () => {
      const token = randomBytes(16).toString('hex');
      const upstream = await FakeUpstream.start();
      stops.push(() => upstream.close());
      const authority = await AuthorityProcess.spawn({
        QUOTAD_ADMIN_TOKEN: token,
        LOG_LEVEL: 'info',
        ...(await store.env()),
      });
      stops.push(() => authority.stop());
      const gateway = await GatewayProcess.spawn({
        QUOTAD_AUTHORITY: authority.grpcAddress,
        OPENAI_BASE_URL: upstream.url,
        LOG_LEVEL: 'info',
      });
      stops.push(() => gateway.stop());
      await Promise.all([authority.ready(), gateway.ready()]);
      const admin = adminClient(authority.grpcAddress, token);
      const secrets: string[] = [];
      for (let i = 0; i < KEYS; i++) {
        const created = await admin.createKey({
          name: `burst ${i}`,
          owner: 'burst',
          org: `burst-${i % 3}`,
          tier: 'pro',
        });
        secrets.push(created.secret);
      }
      admin.close();
      // One request first: the processes connect to each other, as they have by the time traffic comes.
      assert.equal((await postChat(gateway.url, secrets[0] as string, 'burst-first')).status, 200);

      const answers = await Promise.all(
        Array.from({ length: BURST }, async (_, i) => {
          const response = await postChat(gateway.url, secrets[i % KEYS] as string, `burst-${i}`);
          const body = (await response.json()) as { error?: { code?: string } };
          return `${response.status} ${body.error?.code ?? ''}`.trim();
        }),
      );
      const counts: Record<string, number> = {};
      for (const answer of answers) counts[answer] = (counts[answer] ?? 0) + 1;
      const undecided = Object.keys(counts).filter(
        (answer) => !/^(200|429 rate_limit_exceeded)$/.test(answer),
      );
      assert.deepEqual(undecided, [], `answers: ${JSON.stringify(counts)}`);
      assert.ok((counts['200'] ?? 0) > 0, `answers: ${JSON.stringify(counts)}`);
    });
  });
}
