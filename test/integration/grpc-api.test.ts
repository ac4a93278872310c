import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ManualClock } from '../../src/core/clock.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { healthClient, quotaClient, reflectionClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

const START = Date.UTC(2026, 10, 22, 10, 0, 0);

let redis: TestRedisServer;
let running: RunningAuthority;
let client: QuotaClient;
let address: string;
const clock = new ManualClock(START);

before(async () => {
  redis = await TestRedisServer.start();
  const config = inProcessServeConfig(['--log-level', 'silent'], {
    REDIS_URL: redis.url,
    QUOTAD_REDIS_TIMEOUT: '2s',
  });
  running = await startAuthority(config, { clock });
  address = `127.0.0.1:${running.grpcPort}`;
  client = quotaClient(address);
});

after(async () => {
  client.close();
  await running.stop();
  await redis.stop();
});

let sequence = 0;
function principal(tier = 'free') {
  sequence += 1;
  return { subject: `grpc-user-${sequence}`, org: `grpc-org-${sequence}`, tier };
}
function check(who: ReturnType<typeof principal>, extra: Record<string, unknown> = {}) {
  sequence += 1;
  return {
    requestId: `grpc-req-${sequence}`,
    principal: who,
    model: 'gpt-4o-mini',
    inputTokens: 50,
    maxOutputTokens: 100,
    ...extra,
  };
}

function assertInvalidArgument(field: string) {
  return (error: grpc.ServiceError) => {
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.match(error.details, new RegExp(`^${field.replace('.', '\\.')}: `));
    return true;
  };
}

describe('QuotaService over a real socket', () => {
  test('CheckQuota admits and reports each limit, the reservation and the tier cap', async () => {
    const answer = await client.checkQuota(check(principal()));
    assert.equal(answer.allowed, true);
    assert.equal(answer.code, 'OK');
    assert.equal(answer.maxOutputTokens, 500);
    assert.equal(answer.model, 'gpt-4o-mini');
    assert.equal(answer.reservation?.tokens, 150);
    assert.equal(answer.reservation?.expiresAtMs, START + 600_000);
    const rpm = answer.limits.find((l) => l.name === 'requests_per_minute');
    assert.deepEqual([rpm?.unit, rpm?.kind, rpm?.limit, rpm?.remaining], ['REQUESTS', 'RATE', 10, 9]);
  });

  test('the 11th request in a minute on free is an answer with allowed=false, and waiting retry_after_ms admits', async () => {
    const who = principal();
    for (let i = 0; i < 10; i++) {
      const request = check(who);
      assert.equal((await client.checkQuota(request)).allowed, true);
      await client.recordUsage({ ...request, outputTokens: 20, outcome: 'COMPLETED' });
    }
    const denied = await client.checkQuota(check(who));
    assert.equal(denied.allowed, false);
    assert.equal(denied.code, 'OVER_LIMIT');
    assert.match(denied.reason, /requests_per_minute/);
    assert.ok(denied.retryAfterMs > 0);
    clock.advance(denied.retryAfterMs);
    assert.equal((await client.checkQuota(check(who))).allowed, true);
  });

  test('RecordUsage settles once and answers DUPLICATE after', async () => {
    const who = principal('pro');
    const request = check(who);
    await client.checkQuota(request);
    const usage = {
      requestId: request.requestId,
      principal: who,
      model: 'gpt-4o-mini',
      inputTokens: 50,
      outputTokens: 10,
      outcome: 'COMPLETED' as const,
    };
    const first = await client.recordUsage(usage);
    assert.equal(first.status, 'SETTLED');
    assert.equal(first.reservedTokens, 150);
    assert.deepEqual(first.charged, { inputTokens: 50, outputTokens: 10, usdMicros: 14 });
    const second = await client.recordUsage(usage);
    assert.equal(second.status, 'DUPLICATE');
    const report = await client.getUsage({ principal: who });
    assert.equal(report.tokensUsed, 60);
    assert.equal(report.usdMicrosSpent, 14);
  });

  test('an unknown tier is an answer, not an error', async () => {
    const answer = await client.checkQuota(check(principal('platinum')));
    assert.equal(answer.allowed, false);
    assert.equal(answer.code, 'UNKNOWN_TIER');
  });

  test('a model the tier may not use is refused with MODEL_NOT_ALLOWED', async () => {
    const answer = await client.checkQuota(check(principal('free'), { model: 'gpt-4o' }));
    assert.equal(answer.code, 'MODEL_NOT_ALLOWED');
  });

  test('max_output_tokens above the tier cap is REQUEST_TOO_LARGE and charges nothing', async () => {
    const who = principal('free');
    const answer = await client.checkQuota(check(who, { maxOutputTokens: 501 }));
    assert.equal(answer.code, 'REQUEST_TOO_LARGE');
    assert.equal(
      (await client.getUsage({ principal: who })).limits.every((l) => l.used === 0),
      true,
    );
  });

  test('a missing request_id is INVALID_ARGUMENT naming request_id', async () => {
    await assert.rejects(
      client.checkQuota({ ...check(principal()), requestId: '' }),
      assertInvalidArgument('request_id'),
    );
  });

  test('a missing credential is INVALID_ARGUMENT naming credential', async () => {
    await assert.rejects(
      client.checkQuota({ requestId: 'x', model: 'gpt-4o-mini' }),
      assertInvalidArgument('credential'),
    );
  });

  test('an org outside [A-Za-z0-9._-] is INVALID_ARGUMENT naming principal.org, and charges nothing', async () => {
    const who = { ...principal(), org: 'evil}org' };
    await assert.rejects(client.checkQuota(check(who)), assertInvalidArgument('principal.org'));
  });

  test('an absurd token count is INVALID_ARGUMENT naming input_tokens', async () => {
    await assert.rejects(
      client.checkQuota(check(principal(), { inputTokens: 4_000_000_000 })),
      assertInvalidArgument('input_tokens'),
    );
  });

  test('max_output_tokens of 2^32 + 1 arrives whole: INVALID_ARGUMENT naming it, and nothing charged', async () => {
    const who = principal('pro');
    await assert.rejects(
      client.checkQuota(check(who, { maxOutputTokens: 4_294_967_297 })),
      assertInvalidArgument('max_output_tokens'),
    );
    assert.equal(
      (await client.getUsage({ principal: who })).limits.every((l) => l.used === 0),
      true,
    );
  });

  test('a negative token count sent as a 64-bit varint is INVALID_ARGUMENT naming input_tokens', async () => {
    // What a client with int64 fields sends for -1: the 10-byte varint of 2^64 - 1.
    await assert.rejects(
      client.checkQuota(check(principal(), { inputTokens: '18446744073709551615' })),
      assertInvalidArgument('input_tokens'),
    );
  });

  test('a RecordUsage of 2^32 + 5 output tokens is INVALID_ARGUMENT naming output_tokens, and charges nothing', async () => {
    const who = principal('pro');
    await assert.rejects(
      client.recordUsage({
        requestId: 'wrapped-usage',
        principal: who,
        model: 'gpt-4o-mini',
        inputTokens: 5,
        outputTokens: 4_294_967_301,
        outcome: 'COMPLETED',
      }),
      assertInvalidArgument('output_tokens'),
    );
    assert.equal((await client.getUsage({ principal: who })).tokensUsed, 0);
  });

  test('no_output with an output allowance is INVALID_ARGUMENT naming max_output_tokens', async () => {
    await assert.rejects(
      client.checkQuota(check(principal(), { noOutput: true, maxOutputTokens: 10 })),
      assertInvalidArgument('max_output_tokens'),
    );
  });

  test('a RecordUsage without an outcome is INVALID_ARGUMENT naming outcome, and charges nothing', async () => {
    const who = principal('pro');
    await assert.rejects(
      client.recordUsage({
        requestId: 'r',
        principal: who,
        model: 'gpt-4o-mini',
        inputTokens: 5,
        outputTokens: 5,
      }),
      assertInvalidArgument('outcome'),
    );
    assert.equal((await client.getUsage({ principal: who })).tokensUsed, 0);
  });

  test('health reports SERVING for the server and for QuotaService', async () => {
    const health = healthClient(address);
    for (const service of ['', 'quotad.v1.QuotaService']) {
      const answer = await new Promise<{ status: string }>((resolve, reject) =>
        health.check({ service }, (error, response) =>
          error ? reject(error) : resolve(response as { status: string }),
        ),
      );
      assert.equal(answer.status, 'SERVING');
    }
    health.close();
  });

  test('server reflection lists QuotaService and describes its messages', async () => {
    const reflection = reflectionClient(address);
    const stream = reflection.ServerReflectionInfo();
    const answers: unknown[] = [];
    stream.on('data', (answer) => answers.push(answer));
    const ended = new Promise((resolve) => stream.on('end', resolve));
    stream.write({ list_services: '' });
    stream.write({ file_containing_symbol: 'quotad.v1.QuotaService' });
    stream.end();
    await ended;
    reflection.close();
    const [list, file] = answers as [
      { list_services_response: { service: { name: string }[] } },
      { file_descriptor_response: { file_descriptor_proto: Buffer[] } },
    ];
    const names = list.list_services_response.service.map((s) => s.name);
    assert.ok(names.includes('quotad.v1.QuotaService'), names.join(', '));
    assert.ok(names.includes('grpc.health.v1.Health'), names.join(', '));
    assert.ok(
      file.file_descriptor_response.file_descriptor_proto.some((b) =>
        b.toString('latin1').includes('CheckQuotaRequest'),
      ),
    );
  });
});
