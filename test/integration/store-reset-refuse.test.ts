import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { isGrpcError } from '../../src/api/client.js';
import { REFUSAL_TRAILER, STORE_RESET_REFUSAL } from '../../src/api/trailers.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { runCli } from '../helpers/cli.js';
import { eventually } from '../../harness/eventually.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

const ADMIN_TOKEN = 'admin-token-for-the-reset-test-01';

const quiet = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

let redis: TestRedisServer;
let flusher: Redis;
/** Two authorities that refuse on a reset, and one on the default (serve). */
let refusing: RunningAuthority[];
let serving: RunningAuthority;
const clients: QuotaClient[] = [];

function start(args: string[]): Promise<RunningAuthority> {
  return startAuthority(
    inProcessServeConfig(['--key-cache-ttl', '200ms', ...args], {
      REDIS_URL: redis.url,
      QUOTAD_ADMIN_TOKEN: ADMIN_TOKEN,
    }),
    { logDestination: quiet() },
  );
}

before(async () => {
  redis = await TestRedisServer.start();
  flusher = new Redis(redis.url);
  refusing = [await start(['--on-store-reset', 'refuse']), await start(['--on-store-reset', 'refuse'])];
  serving = await start([]);
});
after(async () => {
  for (const client of clients) client.close();
  for (const authority of [...refusing, serving]) await authority.stop();
  flusher.disconnect();
  await redis.stop();
});

function clientOf(authority: RunningAuthority): QuotaClient {
  const client = quotaClient(`127.0.0.1:${authority.grpcPort}`);
  clients.push(client);
  return client;
}

const principal = { subject: 'reset-user', org: 'reset-org', tier: 'free' };
let sequence = 0;
/** Checks answered OK: each reserved 20 tokens of the daily budget, left unsettled (so charged). */
let admitted = 0;
const check = async (client: QuotaClient) => {
  const answer = await client.checkQuota({
    requestId: `reset-${++sequence}`,
    principal,
    model: 'gpt-4o-mini',
    inputTokens: 10,
    maxOutputTokens: 10,
  });
  if (answer.allowed) admitted += 1;
  return answer;
};

/** The status a call failed with, or 'OK'. */
async function outcome(call: Promise<unknown>): Promise<{ code: string; refusal: string; details: string }> {
  try {
    await call;
    return { code: 'OK', refusal: '', details: '' };
  } catch (error) {
    if (!isGrpcError(error)) throw error;
    return {
      code: grpc.status[error.code] ?? String(error.code),
      refusal: String(error.metadata.get(REFUSAL_TRAILER)[0] ?? ''),
      details: error.details,
    };
  }
}

test('with --on-store-reset refuse, a FLUSHALL makes every QuotaService call UNAVAILABLE, charging nothing, until an operator confirms; then every authority serves again', async () => {
  const [first, second] = refusing.map(clientOf) as [QuotaClient, QuotaClient];
  const defaulted = clientOf(serving);
  for (const client of [first, second, defaulted]) assert.equal((await outcome(check(client))).code, 'OK');

  await flusher.flushall();
  admitted = 0;

  for (const client of [first, second]) {
    const refused = await eventually(
      async () => {
        const answer = await outcome(check(client));
        return answer.code === 'OK' ? undefined : answer;
      },
      () => 'an authority with --on-store-reset refuse kept serving after FLUSHALL',
    );
    assert.deepEqual([refused.code, refused.refusal], ['UNAVAILABLE', STORE_RESET_REFUSAL]);
    assert.match(refused.details, /emptied or replaced.*quotad store confirm-reset/);
  }
  const usageRefused = await outcome(first.getUsage({ principal }));
  assert.equal(usageRefused.refusal, STORE_RESET_REFUSAL, 'GetUsage is refused too');
  assert.equal((await outcome(check(defaulted))).code, 'OK', 'the default (serve) keeps answering');

  const confirmed = await runCli(
    ['store', 'confirm-reset', '--authority', `127.0.0.1:${refusing[0]?.grpcPort}`],
    {
      QUOTAD_ADMIN_TOKEN: ADMIN_TOKEN,
    },
  );
  assert.equal(confirmed.code, 0, confirmed.stderr);
  assert.match(confirmed.stdout, /Store reset confirmed/);

  for (const client of [first, second]) {
    await eventually(
      async () => ((await outcome(check(client))).code === 'OK' ? true : undefined),
      () => 'an authority kept refusing after the operator confirmed the reset',
    );
  }
  // The daily budget holds exactly the admitted checks since the flush: the refused ones charged nothing.
  const usage = await defaulted.getUsage({ principal });
  const tokens = usage.limits.find((limit) => limit.name === 'tokens_per_day')?.used;
  assert.equal(tokens, admitted * 20);
});
