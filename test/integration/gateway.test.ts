import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import OpenAI from 'openai';
import { estimateInputTokens, countTextTokens } from '../../src/gateway/estimate.js';
import { parseModelCall } from '../../src/gateway/requests.js';
import { formatApiKey, KEY_RANDOM_BYTES } from '../../src/keys/api-key.js';
import { startGateway, type RunningGateway } from '../../src/main/gateway.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { eventually } from '../../harness/eventually.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { pngDataUrl } from '../helpers/media.js';
import { quotaClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { freePort, TestRedisServer } from '../../harness/redis-server.js';
import { inProcessGatewayConfig, inProcessServeConfig } from '../../harness/serve-config.js';

/** A gauge's value on a gateway's /metrics. */
async function gaugeOf(gateway: RunningGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

const JWT_SECRET = 'gateway-test-jwt-secret-0123456789abcdef';
const UPSTREAM_KEY = 'sk-upstream-secret-never-logged-4242';
/** Sent in prompts; it must never reach a log line. */
const CANARY_PROMPT = 'canary prompt text 7f3a9c';
/** The token budget of the `pool` tier, which the concurrency test spends. */
const POOL_TOKENS = 3_000;

const POLICY = `
version: 1
timezone: UTC
reservation: { lease: 10m, idempotency_window: 1h }
replicas: 1
models:
  gpt-4o-mini: { input_per_million: '0.15', output_per_million: '0.60', aliases: [gpt-4o-mini-2024-07-18] }
  gpt-4o: { input_per_million: '2.50', output_per_million: '10.00' }
  gpt-3.5-turbo-instruct: { input_per_million: '1.50', output_per_million: '2.00' }
  text-embedding-3-small: { input_per_million: '0.02', output_per_million: '0.00' }
tiers:
  free:
    models: [gpt-4o-mini, text-embedding-3-small]
    max_output_tokens: 500
    max_input_tokens: 3000
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 10, window: 1m }
      - { name: tokens_per_minute, type: rate, unit: tokens, limit: 4000, window: 1m }
      - { name: tokens_per_day, type: budget, unit: tokens, limit: 10000, period: day }
      - { name: concurrent_requests, type: concurrency, limit: 2 }
  wide:
    max_output_tokens: 1000
    max_input_tokens: 3000
    limits:
      - { name: requests_per_minute, type: rate, unit: requests, limit: 100000, window: 1m }
      - { name: tokens_per_day, type: budget, unit: tokens, limit: 100000000, period: day }
      - { name: concurrent_requests, type: concurrency, limit: 1000 }
  pool:
    max_output_tokens: 100
    limits:
      - { name: tokens_per_day, type: budget, unit: tokens, limit: ${POOL_TOKENS}, period: day }
  burst:
    max_output_tokens: 100
    limits:
      - { name: requests_per_second, type: rate, unit: requests, limit: 1, window: 1s }
`;

const logLines: string[] = [];
const issuedSecrets: string[] = [];
let dir: string;
let redis: TestRedisServer;
let authority: RunningAuthority;
let quota: QuotaClient;
let upstream: FakeUpstream;
let gateway: RunningGateway;

function capture(): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
}

async function startTestGateway(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunningGateway> {
  const config = inProcessGatewayConfig(authority.grpcPort, upstream.url, ['--log-level', 'debug', ...args], {
    OPENAI_API_KEY: UPSTREAM_KEY,
    ...env,
  });
  return startGateway(config, { logDestination: capture(), settlementBackoffMs: [10, 20, 40] });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quotad-gateway-'));
  await writeFile(join(dir, 'policy.yaml'), POLICY);
  redis = await TestRedisServer.start();
  upstream = await FakeUpstream.start({ apiKey: UPSTREAM_KEY });
  authority = await startAuthority(
    inProcessServeConfig(['--policy', join(dir, 'policy.yaml'), '--log-level', 'debug'], {
      REDIS_URL: redis.url,
      QUOTAD_REDIS_TIMEOUT: '2s',
    }),
    { logDestination: capture() },
  );
  quota = quotaClient(`127.0.0.1:${authority.grpcPort}`);
  // A generous deadline: on this shared box 200 concurrent checks can outlast 100 ms, and these tests are
  // about decisions, not deadlines (those have their own tests below).
  gateway = await startTestGateway(['--max-body', '64kb', '--authority-timeout', '5s'], {
    QUOTAD_JWT_SECRET: JWT_SECRET,
  });
});

after(async () => {
  quota.close();
  await gateway.stop();
  await authority.stop();
  await upstream.close();
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
});

let sequence = 0;

async function createKey(tier = 'free'): Promise<{ id: string; secret: string }> {
  sequence += 1;
  const { record, secret } = await authority.keys.create({
    name: `gateway test ${sequence}`,
    owner: 'gateway test',
    org: `gw-org-${sequence}`,
    tier,
    expiresInMs: 0,
  });
  issuedSecrets.push(secret);
  return { id: record.id, secret };
}

function sdk(apiKey: string, options: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}): OpenAI {
  return new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey, maxRetries: 0, ...options });
}

const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: `Hello, ${CANARY_PROMPT}` }],
  max_tokens: 20,
  ...extra,
});

function post(
  path: string,
  secret: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
) {
  return fetch(`${gateway.url}${path}`, {
    method: 'POST',
    ...(signal ? { signal } : {}),
    headers: {
      'content-type': 'application/json',
      ...(secret ? { authorization: `Bearer ${secret}` } : {}),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** What the authority holds for a key: tokens used today and requests in the current minute. */
async function usageOf(secret: string): Promise<{ tokens: number; requests: number }> {
  const usage = await quota.getUsage({ apiKeySha256: createHash('sha256').update(secret).digest() });
  const requests = usage.limits.find((l) => l.unit === 'REQUESTS')?.used ?? 0;
  return { tokens: usage.tokensUsed, requests };
}

/** How many concurrency slots a key holds now. */
async function inFlightOf(secret: string): Promise<number> {
  const usage = await quota.getUsage({ apiKeySha256: createHash('sha256').update(secret).digest() });
  return usage.limits.find((l) => l.unit === 'CONCURRENT')?.used ?? 0;
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function errorOf(response: Response): Promise<ErrorBody['error']> {
  const body = (await response.json()) as ErrorBody;
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  return body.error;
}

describe('the official openai SDK through the gateway', () => {
  test('a chat completion comes back with the upstream usage and the rate-limit headers', async () => {
    const key = await createKey();
    const { data, response } = await sdk(key.secret)
      .chat.completions.create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .withResponse();
    const reported = upstream.reportedFor(data.id);
    assert.ok(data.choices[0]?.message.content?.includes('demo upstream'));
    assert.equal(data.usage?.completion_tokens, reported?.completion_tokens);
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '9');
    assert.match(response.headers.get('x-ratelimit-reset-requests') ?? '', /^(\d+m)?\d+s$|^\d+ms$/);
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '4000');
    assert.ok(response.headers.get('x-ratelimit-remaining-tokens'));
    assert.ok(response.headers.get('x-ratelimit-limit'));
    assert.match(response.headers.get('ratelimit-policy') ?? '', /"requests_per_minute";q=10;w=60/);
    assert.match(response.headers.get('ratelimit') ?? '', /"requests_per_minute";r=9;t=\d+/);
  });

  test("a model call's time is counted stage by stage: intake, estimate, decision, upstream, relay", async () => {
    const key = await createKey();
    const STAGES = [
      'quotad_gateway_stage_duration_seconds_count{stage="intake"}',
      'quotad_gateway_stage_duration_seconds_count{stage="estimate"}',
      'quotad_gateway_decision_duration_seconds_count{result="OK"}',
      'quotad_gateway_upstream_duration_seconds_count{route="chat_completions",outcome="ok"}',
      'quotad_gateway_stage_duration_seconds_count{stage="relay"}',
    ];
    const counts = async () => {
      const text = await (await fetch(`${gateway.url}/metrics`)).text();
      return STAGES.map((series) => {
        const line = text.split('\n').find((l) => l.startsWith(`${series} `));
        return Number(line?.slice(series.length + 1) ?? 0);
      });
    };
    const before = await counts();
    await sdk(key.secret).chat.completions.create(
      chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming,
    );
    const after = await counts();
    assert.deepEqual(
      after.map((n, i) => n - (before[i] as number)),
      STAGES.map(() => 1),
    );
  });

  test('its settled usage is exactly what the upstream reported', async () => {
    const key = await createKey();
    const data = await sdk(key.secret).chat.completions.create(
      chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming,
    );
    await gateway.settler.drain();
    assert.equal((await usageOf(key.secret)).tokens, data.usage?.total_tokens);
  });

  test('a stream with include_usage ends with the usage chunk, and is charged exactly that', async () => {
    const key = await createKey();
    const stream = await sdk(key.secret).chat.completions.create({
      ...(chatBody() as OpenAI.ChatCompletionCreateParamsStreaming),
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(text.includes('demo upstream'));
    assert.ok(usage);
    await gateway.settler.drain();
    assert.equal((await usageOf(key.secret)).tokens, usage.total_tokens);
  });

  test('a stream without include_usage carries no usage, yet is charged what the upstream reported', async () => {
    const key = await createKey();
    const before = upstream.calls.length;
    const response = await post('/v1/chat/completions', key.secret, chatBody({ stream: true }));
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '9');
    const events = (await response.text()).split('\n\n').filter(Boolean);
    assert.equal(events.at(-1), 'data: [DONE]');
    for (const event of events.slice(0, -1)) {
      const chunk = JSON.parse(event.replace(/^data: /, '')) as { usage?: unknown; choices: unknown[] };
      assert.ok(!chunk.usage, 'no chunk carries usage');
      assert.ok(chunk.choices.length > 0, 'the usage-only chunk was removed');
    }
    const call = upstream.calls[before];
    assert.equal(call?.includeUsage, true, 'the gateway asked the upstream for usage');
    await gateway.settler.drain();
    assert.equal((await usageOf(key.secret)).tokens, upstream.reportedFor(call.id)?.total_tokens);
  });

  test('legacy completions and embeddings go through; an embedding is charged its input only', async () => {
    const key = await createKey('wide');
    const client = sdk(key.secret);
    const completion = await client.completions.create({
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'Say hi',
      max_tokens: 10,
    });
    assert.ok(completion.choices[0]?.text);
    const embedding = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'embed me' });
    assert.equal(embedding.data.length, 1);
    await gateway.settler.drain();
    const total = (completion.usage?.total_tokens ?? 0) + embedding.usage.prompt_tokens;
    assert.equal((await usageOf(key.secret)).tokens, total);
  });

  test('over the limit the SDK raises its own RateLimitError, with the headers', async () => {
    const key = await createKey();
    const client = sdk(key.secret);
    for (let i = 0; i < 10; i++) {
      await client.chat.completions.create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming);
    }
    const error = await client.chat.completions
      .create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .then(
        () => assert.fail('the 11th request was admitted'),
        (e: unknown) => e,
      );
    assert.ok(error instanceof OpenAI.RateLimitError);
    assert.equal(error.status, 429);
    assert.equal(error.code, 'rate_limit_exceeded');
    assert.equal(error.type, 'requests');
    assert.match(error.message, /requests_per_minute/);
    assert.ok(Number(error.headers?.get('retry-after')) >= 1);
    assert.ok(Number(error.headers?.get('retry-after-ms')) > 0);
    assert.equal(error.headers?.get('x-ratelimit-remaining-requests'), '0');
  });

  test("the SDK's retry waits the retry-after-ms the gateway sent, then succeeds", async () => {
    const key = await createKey('burst');
    const attempts: { at: number; status: number; retryAfterMs: number }[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      attempts.push({
        at: performance.now(),
        status: response.status,
        retryAfterMs: Number(response.headers.get('retry-after-ms') ?? 0),
      });
      return response;
    };
    const client = sdk(key.secret, { maxRetries: 3, fetch: recording });
    await client.chat.completions.create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming);
    await client.chat.completions.create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(attempts[0]?.status, 200);
    assert.equal(attempts[1]?.status, 429);
    assert.equal(attempts.at(-1)?.status, 200);
    const denied = attempts[1] as (typeof attempts)[number];
    const retried = attempts[2] as (typeof attempts)[number];
    assert.ok(
      // The authority's wait (at most about 2 s here), spread by up to half of it.
      denied.retryAfterMs > 0 && denied.retryAfterMs <= 3_000,
      `retry-after-ms ${denied.retryAfterMs}`,
    );
    // The retry's response arrives after the wait; timers may fire a millisecond early.
    assert.ok(retried.at - denied.at >= denied.retryAfterMs - 2, 'the SDK waited as told');
  });
});

describe('accounting', () => {
  test('200 concurrent requests never reserve more than a token budget, and settle to exactly what the upstream reported', async () => {
    const key = await createKey('pool');
    const body = chatBody({ max_tokens: 50 });
    const perRequest = estimateInputTokens(parseModelCall('chat', body)) + 50;
    const release = upstream.hold();
    const callsBefore = upstream.calls.length;
    let answered = 0;
    let wake = () => {};
    const responses = Array.from({ length: 200 }, () =>
      post('/v1/chat/completions', key.secret, body).then((response) => {
        answered += 1;
        wake();
        return response;
      }),
    );
    // Every admitted request is held at the upstream; every other one has its answer.
    while (answered + (upstream.calls.length - callsBefore) < 200) {
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), upstream.nextCall()]);
    }
    const admitted = upstream.calls.length - callsBefore;
    assert.equal(admitted, Math.floor(POOL_TOKENS / perRequest), 'as many as fit, no more');
    assert.ok(admitted * perRequest <= POOL_TOKENS);
    release();
    const statuses = await Promise.all(
      (await Promise.all(responses)).map(async (r) => [r.status, await r.text()] as const),
    );
    assert.equal(statuses.filter(([status]) => status === 200).length, admitted);
    // Refused while the admitted ones were in flight: their reservations, not spending, held the budget.
    const refusals = new Set(
      statuses
        .filter(([s]) => s !== 200)
        .map(([s, text]) => `${s} ${(JSON.parse(text) as ErrorBody).error.code}`),
    );
    assert.deepEqual([...refusals], ['429 quota_reserved']);
    await gateway.settler.drain();
    const reported = upstream.calls
      .slice(callsBefore)
      .reduce((sum, call) => sum + (upstream.reportedFor(call.id)?.total_tokens ?? 0), 0);
    assert.equal((await usageOf(key.secret)).tokens, reported);
  });

  test('a client that leaves mid-stream is charged for what was streamed, not the reservation', async () => {
    const key = await createKey();
    const body = chatBody({ max_tokens: 200, stream: true });
    upstream.stallNext(3);
    const abort = new AbortController();
    const stream = await sdk(key.secret).chat.completions.create(
      body as OpenAI.ChatCompletionCreateParamsStreaming,
      { signal: abort.signal },
    );
    let contentChunks = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) contentChunks += 1;
      if (contentChunks === 3) abort.abort();
    }
    const { streamed } = await upstream.waitForClientGone();
    await gateway.settler.drain();
    const input = estimateInputTokens(parseModelCall('chat', body));
    const charged = (await usageOf(key.secret)).tokens;
    assert.equal(charged, input + countTextTokens(streamed.text, 'gpt-4o-mini'));
    assert.ok(charged < input + 200);
  });

  test(
    'a stream abandoned before the upstream answers frees its slot and is charged its input only',
    { timeout: 10_000 },
    async () => {
      const key = await createKey('wide');
      const body = chatBody({ stream: true });
      const release = upstream.hold();
      const arrived = upstream.nextCall();
      const abort = new AbortController();
      const request = post('/v1/chat/completions', key.secret, body, {}, abort.signal).catch(() => 'aborted');
      await arrived;
      abort.abort();
      assert.equal(await request, 'aborted');
      const { call } = await upstream.waitForClientGone();
      release();
      assert.equal(call.stream, true);
      await gateway.settler.drain();
      assert.equal(await inFlightOf(key.secret), 0);
      assert.deepEqual(await usageOf(key.secret), {
        tokens: estimateInputTokens(parseModelCall('chat', body)),
        requests: 1,
      });
    },
  );

  test(
    '100 streams abandoned at scattered moments all settle and leave no slot held',
    { timeout: 20_000 },
    async (t) => {
      // A gateway and upstream of its own: a request the client left may reach them after this test ends.
      const ownUpstream = await FakeUpstream.start({ apiKey: UPSTREAM_KEY });
      const own = await startTestGateway(['--upstream-url', ownUpstream.url]);
      t.after(() => ownUpstream.close());
      const key = await createKey('wide');
      const streams = Array.from({ length: 100 }, async (_, i) => {
        const abort = new AbortController();
        const answer = fetch(`${own.url}/v1/chat/completions`, {
          method: 'POST',
          signal: abort.signal,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
          body: JSON.stringify(chatBody({ stream: true })),
        })
          .then((response) => response.text())
          .catch(() => 'aborted');
        // Abort after 0 to 24 turns of the event loop: during the check, the upstream call, or the stream.
        for (let turn = 0; turn < i % 25; turn++) await new Promise((resolve) => setImmediate(resolve));
        abort.abort();
        return answer;
      });
      await Promise.all(streams);
      // Stopping finishes every request in progress and its settlement; a leaked one would hang here, or
      // hold its slot for the 10-minute lease.
      await own.stop();
      assert.equal(await inFlightOf(key.secret), 0);
    },
  );

  test('an upstream that breaks off mid-stream: the client gets an error event and is charged what it got', async () => {
    const key = await createKey();
    const body = chatBody({ max_tokens: 200, stream: true });
    upstream.cutNext(4);
    const response = await post('/v1/chat/completions', key.secret, body);
    assert.equal(response.status, 200);
    const events = (await response.text()).split('\n\n').filter(Boolean);
    const last = JSON.parse((events.at(-1) as string).replace(/^data: /, '')) as ErrorBody;
    assert.equal(last.error.code, 'upstream_error');
    assert.match(last.error.message, /only what was streamed is charged/);
    const streamed = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.replace(/^data: /, '')) as { choices: { delta: { content?: string } }[] })
      .map((chunk) => chunk.choices[0]?.delta.content ?? '')
      .join('');
    await gateway.settler.drain();
    const input = estimateInputTokens(parseModelCall('chat', body));
    assert.equal((await usageOf(key.secret)).tokens, input + countTextTokens(streamed, 'gpt-4o-mini'));
  });

  test('a client that leaves before a whole answer arrives is still charged what the upstream reports', async () => {
    const key = await createKey();
    const release = upstream.hold();
    const arrived = upstream.nextCall();
    const abort = new AbortController();
    const request = post('/v1/chat/completions', key.secret, chatBody(), {}, abort.signal).catch(
      () => 'aborted',
    );
    await arrived;
    const call = upstream.calls.at(-1);
    abort.abort();
    assert.equal(await request, 'aborted');
    release();
    await gateway.drain();
    assert.equal((await usageOf(key.secret)).tokens, upstream.reportedFor(call?.id ?? '')?.total_tokens);
  });

  test('a key that expires within 14 days says so in x-quotad-warning', async () => {
    sequence += 1;
    const { secret } = await authority.keys.create({
      name: 'expiring',
      owner: 'gateway test',
      org: `gw-org-${sequence}`,
      tier: 'free',
      expiresInMs: 10 * 86_400_000,
    });
    issuedSecrets.push(secret);
    const response = await post('/v1/chat/completions', secret, chatBody());
    assert.equal(response.status, 200);
    assert.match(response.headers.get('x-quotad-warning') ?? '', /expires in \d+ days/);
  });

  test('an upstream 500 refunds the reservation: no tokens, no request', async () => {
    const key = await createKey();
    upstream.failNext(500);
    const error = await sdk(key.secret)
      .chat.completions.create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    assert.ok(error instanceof OpenAI.InternalServerError);
    assert.equal(error.status, 502);
    assert.equal(error.code, 'upstream_error');
    await gateway.settler.drain();
    assert.deepEqual(await usageOf(key.secret), { tokens: 0, requests: 0 });
  });

  test('a budget held by requests in flight is a short 429 quota_reserved, which SDKs retry', async () => {
    const key = await createKey('pool');
    const body = chatBody({ max_tokens: 50 });
    const release = upstream.hold();
    const held: Promise<Response>[] = [];
    let refused: Response | undefined;
    // One at a time, each admitted one held at the upstream, until the budget is all reserved.
    while (!refused) {
      const response = post('/v1/chat/completions', key.secret, body);
      const first = await Promise.race([response, upstream.nextCall().then(() => undefined)]);
      if (first) refused = first;
      else held.push(response);
    }
    release();
    await Promise.all(held);
    assert.equal(refused.status, 429);
    const error = await errorOf(refused);
    assert.deepEqual([error.type, error.code], ['tokens', 'quota_reserved']);
    assert.match(error.message, /held by requests in flight/);
    // At most a second, spread by up to half of it so that waiting callers come back in turn.
    assert.ok(Number(refused.headers.get('retry-after-ms')) <= 1_500);
    assert.ok(Number(refused.headers.get('retry-after')) <= 2);
    assert.equal(refused.headers.get('x-should-retry'), null);
  });

  test('a retry after a 502 under the same Idempotency-Key is sent upstream again, and charged once', async () => {
    const key = await createKey();
    const headers = { 'idempotency-key': `idem-retry-${sequence}` };
    upstream.failNext(500);
    const failed = await post('/v1/chat/completions', key.secret, chatBody(), headers);
    assert.equal(failed.status, 502);
    await gateway.settler.drain();
    const retried = await post('/v1/chat/completions', key.secret, chatBody(), headers);
    assert.equal(retried.status, 200);
    await gateway.settler.drain();
    assert.equal((await usageOf(key.secret)).requests, 1);
  });

  test('a reused Idempotency-Key gets 409 and is neither sent upstream again nor charged twice', async () => {
    const key = await createKey();
    const headers = { 'idempotency-key': `idem-${sequence}` };
    const first = await post('/v1/chat/completions', key.secret, chatBody(), headers);
    assert.equal(first.status, 200);
    const calls = upstream.calls.length;
    const again = await post('/v1/chat/completions', key.secret, chatBody(), headers);
    assert.equal(again.status, 409);
    assert.equal((await errorOf(again)).code, 'idempotency_key_reused');
    assert.equal(again.headers.get('x-should-retry'), 'false');
    assert.equal(upstream.calls.length, calls);
    await gateway.settler.drain();
    assert.equal((await usageOf(key.secret)).requests, 1);
  });
});

describe('settlement', () => {
  test('a settlement that finds the authority down is retried until it lands', async (t) => {
    const port = await freePort();
    const startReplica = () =>
      startAuthority(
        inProcessServeConfig(['--policy', join(dir, 'policy.yaml'), '--grpc-addr', `127.0.0.1:${port}`], {
          REDIS_URL: redis.url,
          QUOTAD_REDIS_TIMEOUT: '2s',
        }),
        { logDestination: capture() },
      );
    let replica = await startReplica();
    const config = inProcessGatewayConfig(port, upstream.url, [], { OPENAI_API_KEY: UPSTREAM_KEY });
    const patient = await startGateway(config, {
      logDestination: capture(),
      settlementBackoffMs: [50, 100, 200, 400, 800, 1_600, 3_200],
    });
    t.after(async () => {
      await patient.stop();
      await replica.stop();
    });
    const key = await createKey();
    const release = upstream.hold();
    const answer = fetch(`${patient.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
      body: JSON.stringify(chatBody()),
    });
    await upstream.nextCall();
    await replica.stop();
    release();
    const response = await answer;
    assert.equal(response.status, 200, 'the answer does not wait for settlement');
    const { usage } = (await response.json()) as { usage: { total_tokens: number } };
    replica = await startReplica();
    await patient.settler.drain();
    assert.equal((await usageOf(key.secret)).tokens, usage.total_tokens);
    const metrics = await (await fetch(`${patient.url}/metrics`)).text();
    assert.match(metrics, /^quotad_gateway_settlements_total\{result="settled"\} 1$/m);
    assert.match(metrics, /^quotad_gateway_settlement_retries_total [1-9]/m);
  });
});

describe('what is refused, and charges nothing', () => {
  test('/healthz, /readyz and /metrics answer a caller whose key is over its limit', async () => {
    const key = await createKey();
    for (let i = 0; i < 10; i++) await post('/v1/chat/completions', key.secret, chatBody());
    assert.equal((await post('/v1/chat/completions', key.secret, chatBody())).status, 429);
    for (let i = 0; i < 50; i++) {
      const health = await fetch(`${gateway.url}/healthz`, {
        headers: { authorization: `Bearer ${key.secret}` },
      });
      assert.equal(health.status, 200);
      assert.equal(health.headers.get('x-ratelimit-remaining-requests'), null);
    }
    assert.equal((await fetch(`${gateway.url}/readyz`)).status, 200);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    assert.match(metrics, /quotad_gateway_requests_total\{route="healthz",status="200"\} 5\d/);
  });

  test('a missing, malformed or unknown key is 401 and a revoked or rotated-out key 403, OpenAI-shaped', async () => {
    const cases: [string, string | undefined, number, string][] = [];
    cases.push(['missing', undefined, 401, 'missing_api_key']);
    cases.push(['malformed', 'qd_live_not-a-key', 401, 'invalid_api_key']);
    const revoked = await createKey();
    await authority.keys.revoke(revoked.id);
    const typo =
      revoked.secret.slice(0, -7) + (revoked.secret.at(-7) === 'a' ? 'b' : 'a') + revoked.secret.slice(-6);
    cases.push(['bad checksum', typo, 401, 'invalid_api_key']);
    cases.push(['revoked', revoked.secret, 403, 'api_key_revoked']);
    const rotated = await createKey();
    issuedSecrets.push((await authority.keys.rotate(rotated.id, 0)).secret);
    cases.push(['rotated out', rotated.secret, 403, 'api_key_expired']);
    for (const [name, secret, status, code] of cases) {
      const response = await post('/v1/chat/completions', secret, chatBody());
      assert.equal(response.status, status, name);
      assert.equal((await errorOf(response)).code, code, name);
    }
    const error = await sdk(revoked.secret)
      .models.list()
      .catch((e: unknown) => e);
    assert.ok(error instanceof OpenAI.PermissionDeniedError);
  });

  test('a never-issued key with a valid checksum is 401 from the authority', async () => {
    const error = await sdk(formatApiKey('live', randomBytes(KEY_RANDOM_BYTES)))
      .chat.completions.create(chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    assert.ok(error instanceof OpenAI.AuthenticationError);
    assert.equal(error.code, 'invalid_api_key');
  });

  test('a model outside the tier is 403 naming model; an unknown model is 400 naming model', async () => {
    const key = await createKey();
    const notAllowed = await post('/v1/chat/completions', key.secret, chatBody({ model: 'gpt-4o' }));
    assert.equal(notAllowed.status, 403);
    assert.deepEqual({ param: (await errorOf(notAllowed)).param }, { param: 'model' });
    const unknown = await post('/v1/chat/completions', key.secret, chatBody({ model: 'gpt-9' }));
    assert.equal(unknown.status, 400);
    const error = await errorOf(unknown);
    assert.equal(error.param, 'model');
    assert.equal(error.code, 'model_not_found');
  });

  test('oversized and invalid input gets 400 or 413 naming the parameter, and charges nothing', async () => {
    const key = await createKey();
    const calls = upstream.calls.length;
    const huge = 'word '.repeat(20_000);
    const tooBig = await post(
      '/v1/chat/completions',
      key.secret,
      chatBody({ messages: [{ role: 'user', content: huge }] }),
    );
    assert.equal(tooBig.status, 413);
    assert.equal((await errorOf(tooBig)).code, 'request_too_large');
    const longPrompt = 'word '.repeat(4_000);
    const tooLong = await post(
      '/v1/chat/completions',
      key.secret,
      chatBody({ messages: [{ role: 'user', content: longPrompt }] }),
    );
    assert.equal(tooLong.status, 400);
    assert.deepEqual(await errorOf(tooLong).then((e) => [e.param, e.code]), [
      'messages',
      'context_length_exceeded',
    ]);
    const overCap = await post('/v1/chat/completions', key.secret, chatBody({ max_tokens: 501 }));
    assert.equal(overCap.status, 400);
    assert.equal(
      overCap.headers.get('x-ratelimit-remaining-requests'),
      '10',
      'a refusal carries the headers',
    );
    const capError = await errorOf(overCap);
    assert.equal(capError.param, 'max_tokens');
    assert.match(capError.message, /cap of 500/);
    const overCapNew = await post(
      '/v1/chat/completions',
      key.secret,
      chatBody({ max_completion_tokens: 900 }),
    );
    assert.equal((await errorOf(overCapNew)).param, 'max_completion_tokens');
    const empty = await post('/v1/chat/completions', key.secret, chatBody({ messages: [] }));
    assert.equal(empty.status, 400);
    assert.equal(empty.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal((await errorOf(empty)).param, 'messages');
    const badJson = await post('/v1/chat/completions', key.secret, '{"model":');
    assert.equal(badJson.status, 400);
    await errorOf(badJson);
    assert.equal(upstream.calls.length, calls);
    assert.deepEqual(await usageOf(key.secret), { tokens: 0, requests: 0 });
  });
});

describe('answers no route opened', () => {
  test('every one names its request in x-request-id: invalid JSON, 413, 415 and 404', async () => {
    const key = await createKey();
    const answers = {
      invalidJson: await post('/v1/chat/completions', key.secret, '{"model":'),
      tooLarge: await post(
        '/v1/chat/completions',
        key.secret,
        chatBody({ messages: [{ role: 'user', content: 'word '.repeat(20_000) }] }),
      ),
      notJson: await post('/v1/chat/completions', key.secret, '<hello/>', {
        'content-type': 'application/xml',
      }),
      notFound: await fetch(`${gateway.url}/v1/no-such-route`),
    };
    assert.deepEqual(
      Object.fromEntries(
        Object.entries(answers).map(([name, r]) => [
          name,
          [r.status, /^[\x20-\x7e]{1,128}$/.test(r.headers.get('x-request-id') ?? '')],
        ]),
      ),
      { invalidJson: [400, true], tooLarge: [413, true], notJson: [415, true], notFound: [404, true] },
    );
    const echoed = await fetch(`${gateway.url}/v1/no-such-route`, {
      headers: { 'x-request-id': 'trace-404' },
    });
    assert.equal(echoed.headers.get('x-request-id'), 'trace-404');
  });

  test('a body announced over the limit with Expect: 100-continue gets 413 at once, never a 100 Continue', async () => {
    const { hostname, port } = new URL(gateway.url);
    const socket = connect(Number(port), hostname);
    await once(socket, 'connect');
    socket.write(
      'POST /v1/chat/completions HTTP/1.1\r\n' +
        `Host: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n` +
        'Expect: 100-continue\r\n\r\n',
    );
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    await once(socket, 'close');
    assert.match(received, /^HTTP\/1\.1 413 /);
    assert.match(received, /\r\nx-request-id: \S+\r\n/i);
    assert.match(received, /"code":"request_too_large"/);
  });
});

describe('what the estimate counts besides the messages', () => {
  test("a response_format schema over the tier's 3,000-token input cap is 400 context_length_exceeded, charging nothing", async () => {
    const key = await createKey();
    const calls = upstream.calls.length;
    const properties = Object.fromEntries(
      Array.from({ length: 400 }, (_, i) => [
        `field_${i}`,
        { type: 'string', description: `the ${i}th field` },
      ]),
    );
    const responseFormat = {
      type: 'json_schema',
      json_schema: { name: 'many', schema: { type: 'object', properties } },
    };
    assert.ok(countTextTokens(JSON.stringify(responseFormat), 'gpt-4o-mini') > 3_000);
    const response = await post(
      '/v1/chat/completions',
      key.secret,
      chatBody({ response_format: responseFormat }),
    );
    assert.equal(response.status, 400);
    assert.equal((await errorOf(response)).code, 'context_length_exceeded');
    assert.equal(upstream.calls.length, calls);
    assert.deepEqual(await usageOf(key.secret), { tokens: 0, requests: 0 });
  });

  test('a 1024×1024 image at high detail counts 25,501 tokens on gpt-4o-mini: over a 3,000-token cap, refused', async () => {
    const key = await createKey();
    const content = [
      { type: 'text', text: 'What is in this picture?' },
      { type: 'image_url', image_url: { url: pngDataUrl(1024, 1024), detail: 'high' } },
    ];
    const response = await post(
      '/v1/chat/completions',
      key.secret,
      chatBody({ messages: [{ role: 'user', content }] }),
    );
    assert.equal(response.status, 400);
    const error = await errorOf(response);
    assert.equal(error.code, 'context_length_exceeded');
    assert.match(error.message, /input_tokens 255\d\d is above/);
  });

  test('an input estimated above 10,000,000 tokens is 400 from the gateway, before any check', async () => {
    const key = await createKey('pool');
    const calls = upstream.calls.length;
    const image = { type: 'image_url', image_url: { url: 'https://example.com/x.png' } };
    const messages = [{ role: 'user', content: Array.from({ length: 250 }, () => image) }];
    const response = await post('/v1/chat/completions', key.secret, chatBody({ messages }));
    assert.equal(response.status, 400);
    const error = await errorOf(response);
    assert.deepEqual([error.param, error.code], ['messages', 'context_length_exceeded']);
    assert.match(error.message, /above the 10000000/);
    assert.equal(upstream.calls.length, calls);
    assert.deepEqual(await usageOf(key.secret), { tokens: 0, requests: 0 });
  });
});

describe('bodies nested past the bound', () => {
  test('10,000 levels in tools, tool_calls or an extra message field are 400 naming where, never 500', async () => {
    const key = await createKey('wide');
    const calls = upstream.calls.length;
    const deep = JSON.parse('['.repeat(10_000) + ']'.repeat(10_000)) as unknown;
    const bodies: [string, Record<string, unknown>][] = [
      [
        'tools[0].function',
        chatBody({ tools: [{ type: 'function', function: { name: 'f', parameters: deep } }] }),
      ],
      [
        'messages[1].tool_calls',
        chatBody({
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: null, tool_calls: deep },
          ],
        }),
      ],
      ['messages[0].x_vendor', chatBody({ messages: [{ role: 'user', content: 'hi', x_vendor: deep }] })],
    ];
    for (const [param, body] of bodies) {
      // JSON.stringify itself would overflow: write the text by hand.
      const text = JSON.stringify(body, (_key, value: unknown) =>
        value === deep ? '@deep@' : value,
      ).replace('"@deep@"', '['.repeat(10_000) + ']'.repeat(10_000));
      const response = await post('/v1/chat/completions', key.secret, text);
      assert.equal(response.status, 400, param);
      const error = await errorOf(response);
      assert.deepEqual([error.param, error.code], [param, 'nesting_too_deep']);
    }
    assert.equal(upstream.calls.length, calls);
    assert.deepEqual(await usageOf(key.secret), { tokens: 0, requests: 0 });
  });
});

describe('numbers past what the wire carries', () => {
  test('max_tokens of 2^32 + 1 is 400 naming max_tokens: nothing charged, the upstream not called', async () => {
    const key = await createKey('wide');
    const calls = upstream.calls.length;
    const response = await post('/v1/chat/completions', key.secret, chatBody({ max_tokens: 4_294_967_297 }));
    assert.equal(response.status, 400);
    const error = await errorOf(response);
    assert.deepEqual([error.param, error.code], ['max_tokens', 'integer_above_max_value']);
    assert.equal(upstream.calls.length, calls);
    await gateway.settler.drain();
    assert.deepEqual(await usageOf(key.secret), { tokens: 0, requests: 0 });
  });
});

/**
 * A POST that announces `announced` bytes of body but sends only its first kilobyte, and resolves with
 * the answer it gets meanwhile: a gateway that waited for the whole body would never answer.
 */
function answerBeforeBody(
  secret: string | undefined,
  announced = 60_000,
): Promise<{ status: number; error: ErrorBody['error'] }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-length': String(announced),
        ...(secret ? { authorization: `Bearer ${secret}` } : {}),
      },
    });
    request.on('error', reject);
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => {
        request.destroy();
        resolve({ status: response.statusCode ?? 0, error: (JSON.parse(text) as ErrorBody).error });
      });
    });
    request.write(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${'x'.repeat(1_000)}`);
  });
}

/** ListModels calls the authority has answered so far, whatever their status. */
async function listModelsCalls(): Promise<number> {
  const metric = authority.metrics.registry.getSingleMetric('quotad_grpc_requests_total');
  const values = (await metric?.get())?.values ?? [];
  return values.filter((v) => v.labels.method === 'ListModels').reduce((sum, v) => sum + v.value, 0);
}

describe('who calls is settled before the body is read', () => {
  test(
    'a missing, malformed or mistyped key gets its 401 before the body has been sent',
    { timeout: 10_000 },
    async () => {
      const key = await createKey();
      const typo = key.secret.slice(0, -7) + (key.secret.at(-7) === 'a' ? 'b' : 'a') + key.secret.slice(-6);
      const asked = await listModelsCalls();
      for (const [secret, code] of [
        [undefined, 'missing_api_key'],
        ['qd_live_not-a-key', 'invalid_api_key'],
        [typo, 'invalid_api_key'],
      ] as const) {
        const { status, error } = await answerBeforeBody(secret);
        assert.deepEqual([status, error.code], [401, code]);
      }
      assert.equal(await listModelsCalls(), asked, 'the authority was not asked');
    },
  );

  test(
    'a never-issued key with a valid checksum gets 401, a revoked key 403, before the body has been sent',
    { timeout: 10_000 },
    async () => {
      const stranger = await answerBeforeBody(formatApiKey('live', randomBytes(KEY_RANDOM_BYTES)));
      assert.deepEqual([stranger.status, stranger.error.code], [401, 'invalid_api_key']);
      const revoked = await createKey();
      await authority.keys.revoke(revoked.id);
      const refused = await answerBeforeBody(revoked.secret);
      assert.deepEqual([refused.status, refused.error.code], [403, 'api_key_revoked']);
    },
  );

  test('a new key costs one ListModels, shared by its concurrent requests; a confirmed key costs none', async () => {
    const key = await createKey('wide');
    const asked = await listModelsCalls();
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () =>
        post('/v1/chat/completions', key.secret, chatBody()).then(async (r) => (await r.text(), r.status)),
      ),
    );
    assert.deepEqual(new Set(statuses), new Set([200]));
    assert.equal(await listModelsCalls(), asked + 1);
    const again = await post('/v1/chat/completions', key.secret, chatBody());
    assert.equal(again.status, 200);
    assert.equal(await listModelsCalls(), asked + 1, 'no round trip more for a confirmed key');
  });
});

describe('callers and their reports', () => {
  test("GET /v1/models lists the models of the caller's tier", async () => {
    const key = await createKey();
    const models = await sdk(key.secret).models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['gpt-4o-mini', 'text-embedding-3-small'],
    );
  });

  test("GET /v1/usage reports the caller's own limits, tokens and spend", async () => {
    const key = await createKey();
    const data = await sdk(key.secret).chat.completions.create(
      chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming,
    );
    await gateway.settler.drain();
    const response = await fetch(`${gateway.url}/v1/usage`, { headers: { 'x-api-key': key.secret } });
    assert.equal(response.status, 200);
    const usage = (await response.json()) as {
      tier: string;
      key: { id: string };
      tokens_used: number;
      limits: { name: string; used: number; remaining: number }[];
    };
    assert.equal(usage.tier, 'free');
    assert.equal(usage.key.id, key.id);
    assert.equal(usage.tokens_used, data.usage?.total_tokens);
    assert.deepEqual(
      usage.limits.find((l) => l.name === 'requests_per_minute'),
      { ...usage.limits.find((l) => l.name === 'requests_per_minute'), used: 1, remaining: 9 },
    );
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '9');
  });

  test('an internal service with a signed JWT is charged as the subject, org and tier it names', async () => {
    const token = await new SignJWT({ org: 'internal', tier: 'wide' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('svc-reports')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JWT_SECRET));
    issuedSecrets.push(token);
    const data = await sdk(token).chat.completions.create(
      chatBody() as OpenAI.ChatCompletionCreateParamsNonStreaming,
    );
    await gateway.settler.drain();
    const usage = await quota.getUsage({
      principal: { subject: 'svc-reports', org: 'internal', tier: 'wide' },
    });
    assert.equal(usage.tokensUsed, data.usage?.total_tokens);
  });

  test('a JWT signed by a key in the JWKS file is accepted; an expired one is 401 token_expired', async (t) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwks = join(dir, 'jwks.json');
    await writeFile(
      jwks,
      JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }),
    );
    const withJwks = await startTestGateway(['--jwt-jwks-file', jwks]);
    t.after(() => withJwks.stop());
    const sign = (expires: string | number) =>
      new SignJWT({ org: 'internal', tier: 'wide' })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setSubject('svc-jwks')
        .setExpirationTime(expires)
        .sign(privateKey);
    const send = async (token: string) => {
      issuedSecrets.push(token);
      return fetch(`${withJwks.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(chatBody()),
      });
    };
    assert.equal((await send(await sign('5m'))).status, 200);
    const expired = await send(await sign(Math.floor(Date.now() / 1000) - 60));
    assert.equal(expired.status, 401);
    assert.equal((await errorOf(expired)).code, 'token_expired');
  });

  test('a JWT with a bad signature, or without an org claim, is 401', async () => {
    const forged = await new SignJWT({ org: 'internal', tier: 'wide' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('svc')
      .sign(new TextEncoder().encode('another-secret-another-secret-000'));
    const noOrg = await new SignJWT({ tier: 'wide' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('svc')
      .sign(new TextEncoder().encode(JWT_SECRET));
    for (const token of [forged, noOrg]) {
      const response = await post('/v1/chat/completions', token, chatBody());
      assert.equal(response.status, 401);
      assert.equal((await errorOf(response)).code, 'invalid_token');
    }
  });
});

describe('when the authority cannot answer', () => {
  test('fail mode closed answers 503 within the deadline, and sends nothing upstream', async (t) => {
    const dead = await freePort();
    const closed = await startTestGateway([
      '--authority',
      `127.0.0.1:${dead}`,
      '--authority-timeout',
      '100ms',
    ]);
    t.after(() => closed.stop());
    const key = await createKey();
    const calls = upstream.calls.length;
    const started = performance.now();
    const response = await fetch(`${closed.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
      body: JSON.stringify(chatBody()),
    });
    const elapsed = performance.now() - started;
    assert.equal(response.status, 503);
    assert.equal((await errorOf(response)).code, 'quota_unavailable');
    assert.equal(response.headers.get('retry-after'), '1');
    assert.ok(elapsed < 1_000, `answered in ${Math.round(elapsed)} ms`);
    assert.equal(upstream.calls.length, calls);
    assert.equal((await fetch(`${closed.url}/readyz`)).status, 503);
  });

  test('a check that outlives its deadline is cancelled, so it leaves nothing charged', async (t) => {
    const hasty = await startTestGateway(['--authority-timeout', '1ms']);
    t.after(() => hasty.stop());
    assert.equal((await fetch(`${hasty.url}/readyz`)).status, 200, 'connected before the clock starts');
    const key = await createKey('wide');
    // Decided, or refused undecided for having no time left: either way the authority saw them.
    const decided = async () => {
      let seen = 0;
      for (const name of ['quotad_decisions_total', 'quotad_checks_shed_total']) {
        const metric = authority.metrics.registry.getSingleMetric(name);
        seen += ((await metric?.get())?.values ?? []).reduce((sum, v) => sum + v.value, 0);
      }
      return seen;
    };
    const decisionsBefore = await decided();
    const callsBefore = upstream.calls.length;
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${hasty.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
          body: JSON.stringify(chatBody()),
        }).then((r) => r.status),
      ),
    );
    assert.ok(statuses.includes(503), 'some checks missed the deadline');
    await hasty.settler.drain();
    assert.ok((await decided()) > decisionsBefore, 'the checks reached the authority');
    const served = upstream.calls.slice(callsBefore);
    const reported = served.reduce(
      (sum, call) => sum + (upstream.reportedFor(call.id)?.total_tokens ?? 0),
      0,
    );
    assert.deepEqual(await usageOf(key.secret), { tokens: reported, requests: served.length });
    assert.equal(await inFlightOf(key.secret), 0, 'no concurrency slot is left held');
  });

  test('beyond --max-pending-checks a request is refused at once with 503 server_overloaded and Retry-After', async (t) => {
    // An authority that takes connections and never answers: every check waits out its deadline.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const { port } = silent.address() as AddressInfo;
    t.after(() => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
    const busy = await startTestGateway([
      '--authority',
      `127.0.0.1:${port}`,
      '--authority-timeout',
      '1s',
      '--max-pending-checks',
      '4',
    ]);
    t.after(() => busy.stop());
    const key = await createKey();
    const send = () =>
      fetch(`${busy.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
        body: JSON.stringify(chatBody()),
      });
    const waiting = Array.from({ length: 4 }, send);
    await eventually(
      async () => ((await gaugeOf(busy, 'quotad_gateway_checks_pending')) === 4 ? true : undefined),
      () => 'the first four requests never all waited for the authority',
    );
    const started = performance.now();
    const shed = await Promise.all(Array.from({ length: 6 }, send));
    const elapsed = performance.now() - started;
    for (const response of shed) {
      assert.equal(response.status, 503);
      assert.equal((await errorOf(response)).code, 'server_overloaded');
      assert.equal(response.headers.get('retry-after'), '1');
    }
    assert.ok(elapsed < 1_000, `shed in ${Math.round(elapsed)} ms, before the waiting checks' deadline`);
    const codes = await Promise.all(waiting.map(async (r) => (await errorOf(await r)).code));
    assert.deepEqual(new Set(codes), new Set(['quota_unavailable']));
    const metrics = await (await fetch(`${busy.url}/metrics`)).text();
    assert.match(metrics, /^quotad_gateway_requests_shed_total\{by="gateway"\} 6$/m);
  });

  test('fail mode open lets the request through and counts it as unmetered', async (t) => {
    const dead = await freePort();
    const open = await startTestGateway(['--authority', `127.0.0.1:${dead}`, '--fail-mode', 'open']);
    t.after(() => open.stop());
    const key = await createKey();
    const response = await fetch(`${open.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
      body: JSON.stringify(chatBody()),
    });
    assert.equal(response.status, 200);
    const metrics = await (await fetch(`${open.url}/metrics`)).text();
    assert.match(metrics, /^quotad_gateway_unmetered_requests_total 1$/m);
  });
});

describe('logs', () => {
  test('X-Forwarded-For names the client only when it comes from a trusted proxy', async (t) => {
    const trusting = await startTestGateway(['--trusted-proxies', '127.0.0.1']);
    t.after(() => trusting.stop());
    const headers = { 'x-forwarded-for': '203.0.113.7', 'x-request-id': `xff-${sequence}` };
    await fetch(`${gateway.url}/v1/models`, { headers: { ...headers, 'x-request-id': 'xff-untrusted' } });
    await fetch(`${trusting.url}/v1/models`, { headers: { ...headers, 'x-request-id': 'xff-trusted' } });
    const clientOf = (id: string) =>
      logLines
        .map((l) => JSON.parse(l) as { requestId?: string; client?: string })
        .find((l) => l.requestId === id)?.client;
    assert.equal(clientOf('xff-untrusted'), '127.0.0.1');
    assert.equal(clientOf('xff-trusted'), '203.0.113.7');
  });

  test('each request is one line with its id, key id, model, status, tokens and latency', async () => {
    const key = await createKey();
    await post('/v1/chat/completions', key.secret, chatBody(), { 'x-request-id': 'logged-1' });
    await gateway.settler.drain();
    const line = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.requestId === 'logged-1' && l.msg === 'request');
    assert.ok(line);
    assert.equal(line.keyId, key.id);
    assert.equal(line.model, 'gpt-4o-mini');
    assert.equal(line.status, 200);
    assert.equal(typeof line.inputTokens, 'number');
    assert.equal(typeof line.outputTokens, 'number');
    assert.equal(typeof line.ms, 'number');
  });

  test('no log line of the gateway or the authority holds a secret, a token or a prompt', async () => {
    // Traffic of its own, so the test holds when run alone: keys, a JWT, chats, streams and reports.
    const token = await new SignJWT({ org: 'internal', tier: 'wide' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('svc-logs')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JWT_SECRET));
    issuedSecrets.push(token);
    const keys = await Promise.all(Array.from({ length: 11 }, () => createKey()));
    for (const secret of [token, ...keys.map((key) => key.secret)]) {
      for (const body of [chatBody(), chatBody({ stream: true })]) {
        const response = await post('/v1/chat/completions', secret, body);
        assert.equal(response.status, 200);
        await response.text();
      }
      for (const path of ['/v1/models', '/v1/usage']) {
        const response = await fetch(`${gateway.url}${path}`, {
          headers: { authorization: `Bearer ${secret}` },
        });
        assert.equal(response.status, 200);
        await response.text();
      }
    }
    await gateway.settler.drain();
    assert.ok(issuedSecrets.length > 10);
    assert.ok(logLines.length > 100);
    const secrets = [...issuedSecrets, UPSTREAM_KEY, JWT_SECRET, CANARY_PROMPT];
    for (const line of logLines) {
      for (const secret of secrets) assert.ok(!line.includes(secret), `a log line holds a secret: ${line}`);
    }
  });
});
