import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadQuotaPackage } from '../../src/api/proto.js';
import { connectAuthority, type AuthorityClient } from '../../src/gateway/authority-client.js';
import type { CheckQuotaBatchRequest__Output } from '../../src/gen/quotad/v1/CheckQuotaBatchRequest.js';
import type { CheckQuotaRequest } from '../../src/gen/quotad/v1/CheckQuotaRequest.js';
import type { QuotaServiceHandlers } from '../../src/gen/quotad/v1/QuotaService.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

/** A QuotaService on a real socket with the test's own handlers; methods left out answer UNIMPLEMENTED. */
async function fakeAuthority(
  handlers: Partial<QuotaServiceHandlers>,
): Promise<{ address: string; stop(): void }> {
  const { proto } = loadQuotaPackage();
  const server = new grpc.Server();
  server.addService(proto.quotad.v1.QuotaService.service, handlers as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return { address: `127.0.0.1:${port}`, stop: () => server.forceShutdown() };
}

const allowed = { allowed: true, code: 'OK' as const, model: 'gpt-4o-mini' };

let sequence = 0;
function check(org = 'batching-org'): CheckQuotaRequest {
  sequence += 1;
  return {
    requestId: `batching-${sequence}`,
    principal: { subject: `batching-user-${sequence}`, org, tier: 'pro' },
    model: 'gpt-4o-mini',
    inputTokens: 10,
    maxOutputTokens: 10,
  };
}

describe('the gateway coalesces concurrent calls to the authority', () => {
  test('checks made in one turn go out as one batch; more than 256 as several', async (t) => {
    const batchSizes: number[] = [];
    const fake = await fakeAuthority({
      CheckQuotaBatch: (call: grpc.ServerUnaryCall<CheckQuotaBatchRequest__Output, unknown>, callback) => {
        batchSizes.push(call.request.checks.length);
        callback(null, { results: call.request.checks.map(() => ({ response: allowed })) });
      },
    });
    const client = connectAuthority(fake.address);
    t.after(() => {
      client.close();
      fake.stop();
    });
    const answers = await Promise.all(Array.from({ length: 100 }, () => client.check(check(), 5_000)));
    assert.equal(answers.filter((a) => a.allowed).length, 100);
    assert.deepEqual(batchSizes, [100]);
    batchSizes.length = 0;
    await Promise.all(Array.from({ length: 600 }, () => client.check(check(), 5_000)));
    assert.deepEqual(
      batchSizes.sort((a, b) => a - b),
      [88, 256, 256],
    );
  });

  test('an authority older than batching is called one request at a time, after one UNIMPLEMENTED', async (t) => {
    let unary = 0;
    const fake = await fakeAuthority({
      CheckQuota: (_call, callback) => {
        unary += 1;
        callback(null, allowed);
      },
      RecordUsage: (_call, callback) => {
        unary += 1;
        callback(null, { status: 'SETTLED' });
      },
    });
    let told = 0;
    const client = connectAuthority(fake.address, { onBatchUnimplemented: () => (told += 1) });
    t.after(() => {
      client.close();
      fake.stop();
    });
    const first = await Promise.all(Array.from({ length: 50 }, () => client.check(check(), 5_000)));
    const later = await Promise.all(Array.from({ length: 50 }, () => client.check(check(), 5_000)));
    const settled = await Promise.all(
      [...first, ...later].map((_, i) =>
        client.record(
          {
            requestId: `old-authority-${i}`,
            principal: { subject: 'batching-user', org: 'batching-org', tier: 'pro' },
            model: 'gpt-4o-mini',
            inputTokens: 10,
            outputTokens: 5,
            outcome: 'COMPLETED',
          },
          5_000,
        ),
      ),
    );
    assert.equal([...first, ...later].filter((a) => a.allowed).length, 100);
    assert.equal(settled.filter((s) => s.status === 'SETTLED').length, 100);
    assert.equal(unary, 200);
    assert.equal(told, 1, 'the caller hears of it once, though checks and settlements each found out');
  });

  test('a batch carries its earliest deadline: no call waits past its own', async (t) => {
    const fake = await fakeAuthority({ CheckQuotaBatch: () => undefined /* never answers */ });
    const client = connectAuthority(fake.address);
    t.after(() => {
      client.close();
      fake.stop();
    });
    const started = performance.now();
    const results = await Promise.allSettled([client.check(check(), 50), client.check(check(), 60_000)]);
    const elapsed = performance.now() - started;
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.equal((result.reason as grpc.ServiceError).code, grpc.status.DEADLINE_EXCEEDED);
    }
    assert.ok(elapsed < 30_000, `both ended with the first deadline, after ${Math.round(elapsed)} ms`);
  });

  describe('against a real authority', () => {
    let authority: RunningAuthority;
    let client: AuthorityClient;
    before(async () => {
      authority = await startAuthority(inProcessServeConfig(['--log-level', 'silent'], {}));
      client = connectAuthority(`127.0.0.1:${authority.grpcPort}`);
    });
    after(async () => {
      client.close();
      await authority.stop();
    });

    test('an item the authority refuses fails alone, with the code and message of its own call', async () => {
      const results = await Promise.allSettled([
        client.check(check(), 5_000),
        client.check(check('not an org'), 5_000),
        client.check(check(), 5_000),
      ]);
      assert.equal(results[0]?.status, 'fulfilled');
      assert.equal(results[2]?.status, 'fulfilled');
      const refused = results[1];
      assert.equal(refused?.status, 'rejected');
      const error = (refused as PromiseRejectedResult).reason as grpc.ServiceError;
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.match(error.details, /^principal\.org: /);
    });

    test('200 concurrent checks and their settlements reach the authority as a few batch calls', async () => {
      const count = async (name: string, method: string) =>
        (await authority.metrics.registry.getSingleMetric(name)?.get())?.values.find(
          (v) => v.labels.method === method && (v as { metricName?: string }).metricName === `${name}_count`,
        )?.value ?? 0;
      const sum = async (method: string) =>
        (await authority.metrics.registry.getSingleMetric('quotad_batch_items')?.get())?.values.find(
          (v) =>
            v.labels.method === method &&
            (v as { metricName?: string }).metricName === 'quotad_batch_items_sum',
        )?.value ?? 0;
      const [callsBefore, itemsBefore] = [
        await count('quotad_batch_items', 'CheckQuotaBatch'),
        await sum('CheckQuotaBatch'),
      ];
      const checks = Array.from({ length: 200 }, () => check());
      const answers = await Promise.all(checks.map((c) => client.check(c, 5_000)));
      assert.equal(answers.filter((a) => a.allowed).length, 200);
      const settled = await Promise.all(
        checks.map((c) =>
          client.record({ ...c, outputTokens: 5, outcome: 'COMPLETED' }, 5_000).then((r) => r.status),
        ),
      );
      assert.deepEqual(new Set(settled), new Set(['SETTLED']));
      assert.equal((await sum('CheckQuotaBatch')) - itemsBefore, 200);
      assert.equal(await sum('RecordUsageBatch'), 200);
      const batchCalls = (await count('quotad_batch_items', 'CheckQuotaBatch')) - callsBefore;
      assert.ok(batchCalls >= 1 && batchCalls <= 4, `200 checks in ${batchCalls} batch calls`);
    });
  });
});
