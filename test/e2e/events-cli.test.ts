import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Event__Output } from '../../src/gen/quotad/v1/Event.js';
import { AuthorityProcess } from '../../harness/authority-process.js';
import { runCli } from '../helpers/cli.js';
import { eventually } from '../../harness/eventually.js';
import { quotaClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { SHIPPED_POLICY } from '../../harness/serve-config.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

const SECRET = randomBytes(24).toString('hex');

describe('quotad serve delivering events, and quotad events', () => {
  const token = randomBytes(16).toString('hex');
  let redis: TestRedisServer;
  let receiver: WebhookReceiver;
  let dir: string;
  let policyPath: string;
  const processes: AuthorityProcess[] = [];

  before(async () => {
    redis = await TestRedisServer.start();
    receiver = await WebhookReceiver.start(SECRET);
    dir = await mkdtemp(join(tmpdir(), 'quotad-events-'));
    policyPath = join(dir, 'policy.yaml');
    const alerts = [
      'alerts:',
      '  budget_thresholds: [0.5, 0.8, 1.0]',
      '  webhook:',
      `    url: ${receiver.url}`,
      '    secret_env: QUOTAD_WEBHOOK_SECRET',
      '    timeout: 1s',
      '',
    ].join('\n');
    await writeFile(policyPath, `${await readFile(SHIPPED_POLICY, 'utf8')}\n${alerts}`);
  });

  after(async () => {
    for (const quotad of processes) await quotad.stop();
    await receiver.close();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function authority(): Promise<AuthorityProcess> {
    const quotad = await AuthorityProcess.spawn({
      REDIS_URL: redis.url,
      QUOTAD_POLICY: policyPath,
      QUOTAD_ADMIN_TOKEN: token,
      QUOTAD_WEBHOOK_SECRET: SECRET,
    });
    processes.push(quotad);
    return quotad.ready();
  }

  /** Reports usage without a reservation (a direct charge) of `tokens` to the free tier's 10,000 a day. */
  async function spend(quotad: AuthorityProcess, org: string, tokens: number): Promise<void> {
    const quota = quotaClient(quotad.grpcAddress);
    try {
      await quota.recordUsage({
        requestId: randomUUID(),
        principal: { subject: 'alice', org, tier: 'free' },
        model: 'gpt-4o-mini',
        inputTokens: tokens,
        outputTokens: 0,
        outcome: 'COMPLETED',
      });
    } finally {
      quota.close();
    }
  }

  const cli = (args: string[]) =>
    runCli(args, { QUOTAD_AUTHORITY: processes[0]?.grpcAddress ?? '', QUOTAD_ADMIN_TOKEN: token });

  test('crossings are delivered signed, and listed as delivered by quotad events (table and --json)', async () => {
    const quotad = await authority();
    const org = `events-${randomUUID().slice(0, 8)}`;
    await spend(quotad, org, 6_000);
    await spend(quotad, org, 2_500);
    await eventually(
      async () => (receiver.acceptedFor(org).length === 2 ? true : undefined),
      () => `the receiver got ${receiver.acceptedFor(org).length} of 2 events`,
    );
    const table = await cli(['events', '--org', org]);
    const json = await cli(['events', '--org', org, '--type', 'budget.threshold', '--json']);
    const events = (JSON.parse(json.stdout) as { events: Event__Output[] }).events;
    assert.deepEqual(
      {
        signed: receiver.acceptedFor(org).map((event) => event.signed),
        table: table.stdout
          .split('\n')
          .filter((line) => line.includes(org))
          .map((line) => /\bdelivered\b/.test(line)),
        json: events.map((event) => [
          event.limit,
          event.threshold,
          event.delivery,
          JSON.parse(event.body).id === event.id,
        ]),
      },
      {
        signed: [true, true],
        table: [true, true],
        json: [
          ['tokens_per_day', 0.8, 'delivered', true],
          ['tokens_per_day', 0.5, 'delivered', true],
        ],
      },
    );
  });

  test('quotad events refuses an unknown type with exit code 2, naming the field', async () => {
    const run = await cli(['events', '--type', 'budget.crossed']);
    assert.deepEqual({ code: run.code, named: /type/.test(run.stderr) }, { code: 2, named: true });
  });

  test('an event held by an authority that is killed is delivered by another', async () => {
    // Only the authority about to be killed may claim the event.
    for (const running of processes) await running.stop();
    receiver.mode = 'hang';
    const doomed = await authority();
    const org = `killed-${randomUUID().slice(0, 8)}`;
    await spend(doomed, org, 5_000);
    await eventually(
      async () => (receiver.seen.some((event) => event.body.includes(org)) ? true : undefined),
      () => 'the first authority sent nothing',
    );
    doomed.child.kill('SIGKILL');
    receiver.mode = 'ok';
    await authority();
    await eventually(
      async () => (receiver.acceptedFor(org).length > 0 ? true : undefined),
      () => 'no other authority delivered the event',
    );
    assert.deepEqual(
      receiver.acceptedFor(org).map((event) => [event.json.threshold, event.signed]),
      [[0.5, true]],
    );
  });
});
