import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import type { AlertsSpec, LimitSpec, Policy } from '../../src/core/policy.js';
import type { Principal } from '../../src/core/quota.js';
import { WebhookDelivery } from '../../src/events/webhook-delivery.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { EVENT_OUTBOX_INDEX } from '../../src/store/keys.js';
import type { RedisEventOutbox } from '../../src/store/redis/redis-outbox.js';
import { createRedisClient, RedisStore } from '../../src/store/redis/redis-store.js';
import type { QuotaStore } from '../../src/store/store.js';
import {
  capturingLogger,
  checkInput,
  freshPrincipal,
  makeAuthority,
  usageInput,
  type TestAuthority,
} from '../../harness/authority.js';
import { eventually } from '../../harness/eventually.js';
import { limit, policyWith, tier } from '../../harness/policy.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { WebhookReceiver, type ReceivedEvent } from '../helpers/webhook-receiver.js';

const SECRET = 'whsec-test-0123456789abcdef';
const SECRET_ENV = 'QUOTAD_TEST_WEBHOOK_SECRET';
const DAY = 86_400_000;
const systemClock: Clock = { now: () => Date.now() };

/** 10,000 tokens a day at 50, 80 and 100 %; a weekly budget with its own [0.9]; a dollar budget with none. */
const tokensPerDay = limit({
  name: 'tokens_per_day',
  kind: 'budget',
  unit: 'tokens',
  limit: 10_000,
  alertThresholds: [0.5, 0.8, 1],
});
const tokensPerWeek = limit({
  name: 'tokens_per_week',
  kind: 'budget',
  unit: 'tokens',
  limit: 20_000,
  period: 'week',
  alertThresholds: [0.9],
});
const usdPerDay: LimitSpec = limit({
  name: 'usd_per_day',
  kind: 'budget',
  unit: 'usd_micros',
  limit: 1_000_000,
});

function alertPolicy(url: string): Policy {
  const alerts: AlertsSpec = {
    budgetThresholds: [0.5, 0.8, 1],
    webhook: { url, secretEnv: SECRET_ENV, timeoutMs: 300, maxInFlight: 4, retryForMs: 3_600_000 },
    anomaly: undefined,
  };
  return policyWith([tier('free', [tokensPerDay, tokensPerWeek, usdPerDay])], { alerts });
}

interface Node {
  store: QuotaStore;
  quota: TestAuthority;
  delivery: WebhookDelivery;
}

function makeNode(store: QuotaStore, clock: Clock, policy: Policy): Node {
  const quota = makeAuthority(store, clock, policy);
  const delivery = new WebhookDelivery({
    outbox: store.events,
    webhook: () => policy.alerts?.webhook,
    secret: (name) => (name === SECRET_ENV ? SECRET : undefined),
    metrics: quota.metrics.events,
    logger: capturingLogger().logger,
    pollMs: 20,
    baseBackoffMs: 20,
    maxBackoffMs: 200,
  });
  return { store, quota, delivery };
}

/** Checks of 250 tokens each (100 in, 150 out): 40 of them fill the 10,000-token day exactly. */
function fillCheck(principal: Principal) {
  return checkInput(principal, { inputTokens: 100, maxOutputTokens: 150 });
}

/** Waits until no node has an event waiting or in flight. */
async function drained(nodes: readonly Node[]): Promise<void> {
  await eventually(
    async () => {
      for (const n of nodes)
        if (n.delivery.inFlight > 0 || (await n.store.events.backlog()) > 0) return undefined;
      return true;
    },
    () => 'events still waiting for delivery',
  );
}

function thresholdsOf(events: readonly ReceivedEvent[], limitName = 'tokens_per_day'): number[] {
  return events
    .filter((event) => (event.json.limit as { name: string } | undefined)?.name === limitName)
    .map((event) => event.json.threshold)
    .sort();
}

describe('spend alerts on Redis, two authorities', () => {
  let redis: TestRedisServer;
  let receiver: WebhookReceiver;
  let policy: Policy;
  let a: Node;
  let b: Node;

  before(async () => {
    redis = await TestRedisServer.start();
    receiver = await WebhookReceiver.start(SECRET);
    policy = alertPolicy(receiver.url);
    const client = async () => {
      const connection = createRedisClient(redis.url, { commandTimeoutMs: 2_000 });
      await connection.connect();
      return connection;
    };
    a = makeNode(new RedisStore({ redis: await client() }), systemClock, policy);
    b = makeNode(new RedisStore({ redis: await client() }), systemClock, policy);
    a.delivery.start();
    b.delivery.start();
  });

  after(async () => {
    await a.delivery.stop();
    await b.delivery.stop();
    await a.store.close();
    await b.store.close();
    await receiver.close();
    await redis.stop();
  });

  test('200 concurrent checks over two authorities deliver each crossing of 50, 80 and 100 % once, signed', async () => {
    const principal = freshPrincipal('free');
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        (i % 2 === 0 ? a : b).quota.authority.check(fillCheck(principal)),
      ),
    );
    assert.equal(answers.filter((answer) => answer.allowed).length, 40);
    await drained([a, b]);
    const events = receiver.acceptedFor(principal.org);
    assert.deepEqual(
      events.map((event) => [event.json.threshold, event.signed, event.id === event.json.id]).sort(),
      [
        [0.5, true, true],
        [0.8, true, true],
        [1, true, true],
      ],
    );
  });

  test('an event carries its limit, period and principal, and never a key hash', async () => {
    const principal = freshPrincipal('free');
    await Promise.all(Array.from({ length: 20 }, () => a.quota.authority.check(fillCheck(principal))));
    await drained([a, b]);
    const [event] = receiver.acceptedFor(principal.org);
    assert.ok(event);
    const json = event.json as unknown as {
      type: string;
      created_at: string;
      limit: {
        name: string;
        unit: string;
        limit: number;
        used: number;
        period_start: string;
        period_end: string;
      };
      principal: Record<string, string>;
    };
    const dayStart = new Date(Math.floor(Date.now() / DAY) * DAY).toISOString();
    assert.deepEqual(
      {
        type: json.type,
        contentType: event.headers['content-type'],
        createdAt: Number.isFinite(Date.parse(json.created_at)),
        limit: { ...json.limit, used: json.limit.used >= 5_000 },
        principal: json.principal,
      },
      {
        type: 'budget.threshold',
        contentType: 'application/json',
        createdAt: true,
        limit: {
          name: 'tokens_per_day',
          unit: 'tokens',
          limit: 10_000,
          used: true,
          period_start: dayStart,
          period_end: new Date(Date.parse(dayStart) + DAY).toISOString(),
        },
        principal: { org: principal.org, subject: principal.subject, tier: 'free' },
      },
    );
  });

  test('a settlement above its estimate and a charge without reservation cross thresholds too', async () => {
    const principal = freshPrincipal('free');
    const check = fillCheck(principal);
    await a.quota.authority.check(check);
    await b.quota.authority.record(usageInput(check, { inputTokens: 100, outputTokens: 5_900 }));
    await a.quota.authority.record(
      usageInput(fillCheck(principal), { inputTokens: 1_000, outputTokens: 1_000 }),
    );
    await drained([a, b]);
    assert.deepEqual(thresholdsOf(receiver.acceptedFor(principal.org)), [0.5, 0.8]);
  });

  test('a settlement that brings the amount back below a threshold does not let it fire again', async () => {
    const principal = freshPrincipal('free');
    // Five checks of 1,000 tokens reach 50 %; cancelled, they give it all back; five more reach it again.
    for (let round = 0; round < 2; round++) {
      const checks = Array.from({ length: 5 }, () =>
        checkInput(principal, { inputTokens: 100, maxOutputTokens: 900 }),
      );
      for (const check of checks) assert.equal((await a.quota.authority.check(check)).allowed, true);
      for (const check of checks) {
        await b.quota.authority.record(
          usageInput(check, { inputTokens: 0, outputTokens: 0, outcome: 'cancelled' }),
        );
      }
    }
    await drained([a, b]);
    assert.deepEqual(thresholdsOf(receiver.acceptedFor(principal.org)), [0.5]);
  });

  test("a limit's own thresholds replace the policy's, and a limit with none raises nothing", async () => {
    const principal = freshPrincipal('free');
    const check = checkInput(principal, { inputTokens: 100, maxOutputTokens: 100 });
    await a.quota.authority.check(check);
    // 19,000 tokens: past 90 % of the week, and $0.038 of a $1 day... and far past the day's 10,000.
    await a.quota.authority.record(usageInput(check, { inputTokens: 9_000, outputTokens: 10_000 }));
    await drained([a, b]);
    const events = receiver.acceptedFor(principal.org);
    assert.deepEqual(
      {
        week: thresholdsOf(events, 'tokens_per_week'),
        usd: thresholdsOf(events, 'usd_per_day'),
        day: thresholdsOf(events, 'tokens_per_day'),
      },
      { week: [0.9], usd: [], day: [0.5, 0.8, 1] },
    );
  });
});

describe('spend alerts on Redis, delivery under failure', () => {
  let redis: TestRedisServer;
  let receiver: WebhookReceiver;
  let policy: Policy;
  const nodes: Node[] = [];

  before(async () => {
    redis = await TestRedisServer.start();
    receiver = await WebhookReceiver.start(SECRET);
    policy = alertPolicy(receiver.url);
  });

  after(async () => {
    for (const n of nodes) {
      await n.delivery.stop(true);
      await n.store.close();
    }
    await receiver.close();
    await redis.stop();
  });

  async function redisNode(clock?: ManualClock): Promise<Node> {
    const connection = createRedisClient(redis.url, { commandTimeoutMs: 2_000 });
    await connection.connect();
    const n = makeNode(
      new RedisStore({ redis: connection, ...(clock && { clock }) }),
      clock ?? systemClock,
      policy,
    );
    nodes.push(n);
    return n;
  }

  test('events raised while the receiver is down arrive once each after it is back', async () => {
    const n = await redisNode();
    receiver.mode = 'down';
    n.delivery.start();
    const principal = freshPrincipal('free');
    await Promise.all(Array.from({ length: 40 }, () => n.quota.authority.check(fillCheck(principal))));
    const org = (event: ReceivedEvent) => (event.json.principal as { org: string }).org;
    await eventually(
      async () =>
        receiver.seen.filter((event) => org(event) === principal.org).length >= 9 ? true : undefined,
      () => 'the sender did not retry',
    );
    receiver.mode = 'ok';
    await drained([n]);
    await n.delivery.stop();
    const accepted = receiver.acceptedFor(principal.org);
    assert.deepEqual(
      { thresholds: thresholdsOf(accepted), ids: new Set(accepted.map((event) => event.id)).size },
      { thresholds: [0.5, 0.8, 1], ids: 3 },
    );
  });

  test('an event an authority was delivering when it stopped is delivered by another', async () => {
    const first = await redisNode();
    const second = await redisNode();
    receiver.mode = 'hang';
    first.delivery.start();
    const principal = freshPrincipal('free');
    await Promise.all(Array.from({ length: 20 }, () => first.quota.authority.check(fillCheck(principal))));
    const org = (event: ReceivedEvent) => (event.json.principal as { org: string }).org;
    await eventually(
      async () => (receiver.seen.some((event) => org(event) === principal.org) ? true : undefined),
      () => 'the first authority sent nothing',
    );
    await first.delivery.stop(true);
    receiver.mode = 'ok';
    second.delivery.start();
    await drained([second]);
    await second.delivery.stop();
    assert.deepEqual(
      receiver.acceptedFor(principal.org).map((event) => event.json.threshold),
      [0.5],
    );
  });

  test('an outbox left out of the index (an authority died between script and note) is found by the sweep', async () => {
    const n = await redisNode();
    const principal = freshPrincipal('free');
    await Promise.all(Array.from({ length: 20 }, () => n.quota.authority.check(fillCheck(principal))));
    const inspect = redis.client();
    await eventually(
      async () => ((await inspect.zscore(EVENT_OUTBOX_INDEX, principal.org)) !== null ? true : undefined),
      () => 'the org was never noted',
    );
    await inspect.zrem(EVENT_OUTBOX_INDEX, principal.org);
    const outbox = n.store.events as RedisEventOutbox;
    const found = await outbox.recover();
    inspect.disconnect();
    n.delivery.start();
    await drained([n]);
    await n.delivery.stop();
    assert.deepEqual(
      { found: found >= 1, thresholds: thresholdsOf(receiver.acceptedFor(principal.org)) },
      { found: true, thresholds: [0.5] },
    );
  });

  test('a new period fires its thresholds again, under a new event id', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
    const n = await redisNode(clock);
    n.delivery.start();
    const principal = freshPrincipal('free');
    for (let day = 0; day < 2; day++) {
      await Promise.all(Array.from({ length: 20 }, () => n.quota.authority.check(fillCheck(principal))));
      clock.advance(DAY);
    }
    await drained([n]);
    await n.delivery.stop();
    const accepted = receiver.acceptedFor(principal.org);
    assert.deepEqual(
      {
        starts: accepted.map((event) => (event.json.limit as { period_start: string }).period_start).sort(),
        ids: new Set(accepted.map((event) => event.id)).size,
      },
      { starts: ['2026-06-01T00:00:00.000Z', '2026-06-02T00:00:00.000Z'], ids: 2 },
    );
  });
});

describe('spend alerts on the in-process store', () => {
  let receiver: WebhookReceiver;
  let n: Node;

  before(async () => {
    receiver = await WebhookReceiver.start(SECRET);
    n = makeNode(
      new MemoryStore({ clock: systemClock, sweepIntervalMs: 0 }),
      systemClock,
      alertPolicy(receiver.url),
    );
    n.delivery.start();
  });

  after(async () => {
    await n.delivery.stop();
    await n.store.close();
    await receiver.close();
  });

  test('200 concurrent checks deliver each crossing of 50, 80 and 100 % once, signed', async () => {
    const principal = freshPrincipal('free');
    const answers = await Promise.all(
      Array.from({ length: 200 }, () => n.quota.authority.check(fillCheck(principal))),
    );
    assert.equal(answers.filter((answer) => answer.allowed).length, 40);
    await drained([n]);
    assert.deepEqual(
      receiver
        .acceptedFor(principal.org)
        .map((event) => [event.json.threshold, event.signed])
        .sort(),
      [
        [0.5, true],
        [0.8, true],
        [1, true],
      ],
    );
  });

  test('a settlement moving back below a threshold does not let it fire again', async () => {
    const principal = freshPrincipal('free');
    for (let round = 0; round < 2; round++) {
      const checks = Array.from({ length: 5 }, () =>
        checkInput(principal, { inputTokens: 100, maxOutputTokens: 900 }),
      );
      for (const check of checks) await n.quota.authority.check(check);
      for (const check of checks) {
        await n.quota.authority.record(
          usageInput(check, { inputTokens: 0, outputTokens: 0, outcome: 'cancelled' }),
        );
      }
    }
    await n.quota.authority.record(
      usageInput(fillCheck(principal), { inputTokens: 4_000, outputTokens: 4_000 }),
    );
    await drained([n]);
    assert.deepEqual(thresholdsOf(receiver.acceptedFor(principal.org)), [0.5, 0.8]);
  });
});

describe('an event the receiver never takes', () => {
  let receiver: WebhookReceiver;

  before(async () => {
    receiver = await WebhookReceiver.start(SECRET);
  });

  after(() => receiver.close());

  test('is retried until retry_for has passed, then kept as dead and counted', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
    const policy = alertPolicy(receiver.url);
    const webhook = policy.alerts?.webhook;
    assert.ok(webhook);
    webhook.retryForMs = 60_000;
    const n = makeNode(new MemoryStore({ clock, sweepIntervalMs: 0 }), clock, policy);
    receiver.mode = 'down';
    n.delivery.start();
    const principal = freshPrincipal('free');
    await Promise.all(Array.from({ length: 20 }, () => n.quota.authority.check(fillCheck(principal))));
    const org = (event: ReceivedEvent) => (event.json.principal as { org: string }).org;
    await eventually(
      async () => (receiver.seen.some((event) => org(event) === principal.org) ? true : undefined),
      () => 'no attempt was made',
    );
    clock.advance(61_000);
    const [entry] = await eventually(
      async () => {
        const entries = await n.store.events.list({ org: principal.org, limit: 10 });
        return entries[0]?.state === 'dead' ? entries : undefined;
      },
      () => 'the event never became dead',
    );
    await n.delivery.stop();
    await n.store.close();
    const dead = (
      await n.quota.metrics.registry.getSingleMetric('quotad_webhook_deliveries_total')?.get()
    )?.values.find((value) => value.labels.result === 'dead')?.value;
    assert.deepEqual(
      { state: entry?.state, lastError: entry?.lastError, dead, backlog: await n.store.events.backlog() },
      { state: 'dead', lastError: 'HTTP 503', dead: 1, backlog: 0 },
    );
  });
});
