import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import {
  DEFAULT_DEMO_MODELS,
  DEFAULT_MAX_OUTPUT_TOKENS,
  DEMO_TEXT_PREFIX,
  MAX_BODY_BYTES,
  startDemoUpstream,
} from '../../src/demo/upstream.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';

const MODEL = 'gpt-4o-mini';
const HELLO = [{ role: 'user' as const, content: 'Hello there, how many tokens is this?' }];

/** A fake upstream closed when the test ends, and an SDK client for it that never retries. */
async function upstreamFor(t: TestContext, options: { apiKey?: string } = {}) {
  const upstream = await FakeUpstream.start(options);
  t.after(() => upstream.close());
  const client = new OpenAI({ baseURL: upstream.url, apiKey: options.apiKey ?? 'x', maxRetries: 0 });
  return { upstream, client };
}

/** POSTs a JSON body and returns the status and the `data:` payloads of the SSE answer. */
async function rawEvents(url: string, body: unknown): Promise<{ status: number; events: string[] }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const events = text
    .split('\n\n')
    .filter(Boolean)
    .map((event) => event.replace(/^data: /, ''));
  return { status: response.status, events };
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

function streamedText(chunks: ChatCompletionChunk[]): string {
  return chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
}

test('a chat completion is labelled demo text for the requested model, with usage o200k_base counts', async (t) => {
  const { client } = await upstreamFor(t);
  const completion = await client.chat.completions.create({ model: 'gpt-4.1-nano', messages: HELLO });

  const content = completion.choices[0]!.message.content!;
  assert.ok(content.startsWith(DEMO_TEXT_PREFIX), content);
  assert.match(content, /Hello there, how many tokens is this\?/);
  assert.equal(completion.model, 'gpt-4.1-nano');
  assert.equal(completion.object, 'chat.completion');
  assert.match(completion.id, /^chatcmpl-/);
  assert.equal(completion.system_fingerprint, 'quotad-demo');
  assert.equal(completion.choices[0]!.finish_reason, 'stop');
  assert.equal(completion.usage!.completion_tokens, countTokens(content));
  assert.equal(
    completion.usage!.total_tokens,
    completion.usage!.prompt_tokens + completion.usage!.completion_tokens,
  );
});

test('the same request gets the same text and the same usage', async (t) => {
  const { client } = await upstreamFor(t);
  const first = await client.chat.completions.create({ model: MODEL, messages: HELLO });
  const second = await client.chat.completions.create({ model: MODEL, messages: HELLO });

  assert.equal(second.choices[0]!.message.content, first.choices[0]!.message.content);
  assert.deepEqual(second.usage, first.usage);
});

test('max_tokens bounds the output and ends it with finish_reason "length"', async (t) => {
  const { client } = await upstreamFor(t);
  const completion = await client.chat.completions.create({ model: MODEL, messages: HELLO, max_tokens: 5 });

  const content = completion.choices[0]!.message.content!;
  assert.equal(completion.choices[0]!.finish_reason, 'length');
  assert.equal(completion.usage!.completion_tokens, 5);
  assert.equal(countTokens(content), 5);
  assert.ok(DEMO_TEXT_PREFIX.startsWith(content), content);
});

test('max_completion_tokens bounds the output like max_tokens', async (t) => {
  const { client } = await upstreamFor(t);
  const completion = await client.chat.completions.create({
    model: MODEL,
    messages: HELLO,
    max_completion_tokens: 3,
  });

  assert.equal(completion.choices[0]!.finish_reason, 'length');
  assert.equal(completion.usage!.completion_tokens, 3);
});

test('without a limit a reply stops at the default number of output tokens', async (t) => {
  const { client } = await upstreamFor(t);
  const longWords = Array.from({ length: 20 }, () => 'antidisestablishmentarianism').join(' ');
  const completion = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: longWords }],
  });

  assert.equal(completion.choices[0]!.finish_reason, 'length');
  assert.equal(completion.usage!.completion_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
});

test('n choices are numbered, differ, and all count in usage', async (t) => {
  const { client } = await upstreamFor(t);
  const completion = await client.chat.completions.create({ model: MODEL, messages: HELLO, n: 3 });

  const texts = completion.choices.map((choice) => choice.message.content!);
  assert.deepEqual(
    completion.choices.map((choice) => choice.index),
    [0, 1, 2],
  );
  assert.equal(new Set(texts).size, 3);
  assert.equal(
    completion.usage!.completion_tokens,
    texts.reduce((sum, text) => sum + countTokens(text), 0),
  );
});

test('a stream with include_usage ends with a usage chunk without choices, after chunks with usage null', async (t) => {
  const { client } = await upstreamFor(t);
  const chunks = await collect(
    await client.chat.completions.create({
      model: MODEL,
      messages: HELLO,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );

  const last = chunks.at(-1)!;
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage && last.usage.completion_tokens > 0);
  assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '', refusal: null });
  assert.deepEqual(chunks.at(-2)!.choices[0], { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' });
  for (const chunk of chunks.slice(0, -1)) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.usage, null);
  }
});

test('the streamed deltas count to the completion_tokens reported and match the whole answer', async (t) => {
  const { client } = await upstreamFor(t);
  const whole = await client.chat.completions.create({ model: MODEL, messages: HELLO });
  const chunks = await collect(
    await client.chat.completions.create({
      model: MODEL,
      messages: HELLO,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );

  const text = streamedText(chunks);
  assert.equal(text, whole.choices[0]!.message.content);
  assert.equal(countTokens(text), chunks.at(-1)!.usage!.completion_tokens);
  // One token per content chunk: the role chunk, the finish chunk and the usage chunk come on top.
  assert.equal(chunks.length - 3, countTokens(text));
});

test('a stream without include_usage carries no usage anywhere and ends with [DONE]', async (t) => {
  const { upstream } = await upstreamFor(t);
  const { status, events } = await rawEvents(`${upstream.url}/chat/completions`, {
    model: MODEL,
    messages: HELLO,
    stream: true,
  });

  assert.equal(status, 200);
  assert.equal(events.at(-1), '[DONE]');
  for (const event of events.slice(0, -1)) assert.ok(!('usage' in JSON.parse(event)), event);
  assert.equal(upstream.reported().calls, 0);
});

test('a legacy completion answers one choice per prompt with usage over all prompts', async (t) => {
  const { client } = await upstreamFor(t);
  const completion = await client.completions.create({
    model: MODEL,
    prompt: ['Say this is a test', 'And this one too'],
    max_tokens: 30,
  });

  assert.equal(completion.object, 'text_completion');
  assert.deepEqual(
    completion.choices.map((choice) => choice.index),
    [0, 1],
  );
  assert.match(completion.choices[1]!.text, /And this one too/);
  assert.equal(
    completion.usage!.prompt_tokens,
    countTokens('Say this is a test') + countTokens('And this one too'),
  );
  assert.equal(
    completion.usage!.completion_tokens,
    completion.choices.reduce((sum, choice) => sum + countTokens(choice.text), 0),
  );
});

test('a legacy completion streams text chunks and a final usage chunk', async (t) => {
  const { client } = await upstreamFor(t);
  const stream = await client.completions.create({
    model: MODEL,
    prompt: 'Say this is a test',
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);

  const text = chunks.map((chunk) => chunk.choices[0]?.text ?? '').join('');
  assert.ok(chunks.every((chunk) => chunk.object === 'text_completion'));
  assert.ok(text.startsWith(DEMO_TEXT_PREFIX));
  assert.deepEqual(chunks.at(-1)!.choices, []);
  assert.equal(chunks.at(-1)!.usage!.completion_tokens, countTokens(text));
});

test('embeddings are deterministic unit vectors, one per input, with prompt token usage', async (t) => {
  const { client } = await upstreamFor(t);
  const input = ['first text', 'second text', 'first text'];
  const result = await client.embeddings.create({
    model: 'text-embedding-3-small',
    input,
    encoding_format: 'float',
  });

  const [first, second, again] = result.data.map((item) => item.embedding);
  assert.equal(result.model, 'text-embedding-3-small');
  assert.equal(first!.length, 16);
  assert.deepEqual(again, first);
  assert.notDeepEqual(second, first);
  assert.ok(Math.abs(Math.hypot(...first!) - 1) < 1e-6);
  assert.equal(
    result.usage.prompt_tokens,
    input.reduce((sum, text) => sum + countTokens(text), 0),
  );
  assert.equal(result.usage.total_tokens, result.usage.prompt_tokens);
});

test('base64 embeddings (the SDK default) decode to the float ones', async (t) => {
  const { client } = await upstreamFor(t);
  const request = { model: 'text-embedding-3-small', input: 'some text', dimensions: 32 };
  const floats = await client.embeddings.create({ ...request, encoding_format: 'float' });
  const decoded = await client.embeddings.create(request);

  assert.equal(decoded.data[0]!.embedding.length, 32);
  assert.deepEqual(decoded.data[0]!.embedding, floats.data[0]!.embedding);
});

test('the model list names the default models, owned by quotad-demo', async (t) => {
  const { client } = await upstreamFor(t);
  const models = [];
  for await (const model of client.models.list()) models.push(model);

  assert.deepEqual(
    models.map((model) => model.id),
    DEFAULT_DEMO_MODELS,
  );
  assert.ok(models.every((model) => model.owned_by === 'quotad-demo' && model.object === 'model'));
});

test('an empty messages array is refused with a BadRequestError naming the param', async (t) => {
  const { client } = await upstreamFor(t);
  const error = await client.chat.completions
    .create({ model: MODEL, messages: [] })
    .catch((err: unknown) => err);

  assert.ok(error instanceof OpenAI.BadRequestError, String(error));
  assert.equal(error.param, 'messages');
  assert.equal(error.type, 'invalid_request_error');
});

test('a request without a model is refused naming the model param', async (t) => {
  const { upstream } = await upstreamFor(t);
  const response = await fetch(`${upstream.url}/embeddings`, { method: 'POST', body: '{"input":"x"}' });

  assert.equal(response.status, 400);
  assert.deepEqual(await response.json(), {
    error: {
      message: 'you must provide a model parameter',
      type: 'invalid_request_error',
      param: 'model',
      code: null,
    },
  });
});

test('invalid JSON is refused with 400 in the OpenAI error shape', async (t) => {
  const { upstream } = await upstreamFor(t);
  const response = await fetch(`${upstream.url}/chat/completions`, { method: 'POST', body: '{"model":' });
  const body = (await response.json()) as { error: Record<string, unknown> };

  assert.equal(response.status, 400);
  assert.deepEqual(Object.keys(body.error), ['message', 'type', 'param', 'code']);
  assert.equal(body.error.type, 'invalid_request_error');
});

test('an unknown route is a 404 NotFoundError', async (t) => {
  const { client } = await upstreamFor(t);
  const error = await client.post('/assistants', { body: {} }).catch((err: unknown) => err);

  assert.ok(error instanceof OpenAI.NotFoundError, String(error));
});

test('a body over the size limit is refused with 413', async (t) => {
  const { upstream } = await upstreamFor(t);
  // Only the declared length matters: the upstream answers before reading the body.
  const status = await new Promise<number | undefined>((resolve, reject) => {
    const req = request(`${upstream.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': MAX_BODY_BYTES + 1 },
    });
    req.on('response', (response) => {
      response.resume();
      resolve(response.statusCode);
      req.destroy();
    });
    req.on('error', reject);
    req.flushHeaders();
  });

  assert.equal(status, 413);
});

test('with an apiKey configured, another key gets a 401 invalid_api_key', async (t) => {
  const { upstream } = await upstreamFor(t, { apiKey: 'sk-right' });
  const client = new OpenAI({ baseURL: upstream.url, apiKey: 'sk-wrong', maxRetries: 0 });
  const error = await client.chat.completions
    .create({ model: MODEL, messages: HELLO })
    .catch((err: unknown) => err);

  assert.ok(error instanceof OpenAI.AuthenticationError, String(error));
  assert.equal(error.code, 'invalid_api_key');
});

test('with an apiKey configured, that key is accepted', async (t) => {
  const { client } = await upstreamFor(t, { apiKey: 'sk-right' });
  const completion = await client.chat.completions.create({ model: MODEL, messages: HELLO });

  assert.equal(completion.choices.length, 1);
});

test('failNext(500) makes the SDK raise InternalServerError, once', async (t) => {
  const { upstream, client } = await upstreamFor(t);
  upstream.failNext(500);
  const error = await client.chat.completions
    .create({ model: MODEL, messages: HELLO })
    .catch((err: unknown) => err);
  const next = await client.chat.completions.create({ model: MODEL, messages: HELLO });

  assert.ok(error instanceof OpenAI.InternalServerError, String(error));
  assert.equal(error.type, 'server_error');
  assert.equal(next.choices.length, 1);
  assert.equal(upstream.reported().calls, 1);
});

test('failNext(429) with a body makes the SDK raise RateLimitError carrying it', async (t) => {
  const { upstream, client } = await upstreamFor(t);
  upstream.failNext(429, 1, { message: 'slow down', type: 'tokens' });
  const error = await client.chat.completions
    .create({ model: MODEL, messages: HELLO })
    .catch((err: unknown) => err);

  assert.ok(error instanceof OpenAI.RateLimitError, String(error));
  assert.match(error.message, /slow down/);
  assert.equal(error.type, 'tokens');
  assert.equal(error.code, 'rate_limit_exceeded');
});

test(
  'a client aborting a stalled stream is reported gone with the chunks it was sent',
  { timeout: 10_000 },
  async (t) => {
    const { upstream, client } = await upstreamFor(t);
    upstream.stallNext(2);
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: MODEL, messages: HELLO, stream: true },
      { signal: controller.signal },
    );
    const received: ChatCompletionChunk[] = [];
    // Aborting ends the SDK's iteration quietly; the upstream sees the connection go.
    for await (const chunk of stream) {
      received.push(chunk);
      if (received.length === 3) controller.abort(); // the role chunk and the two content chunks
    }
    const { call, streamed } = await upstream.waitForClientGone();

    assert.equal(call, upstream.calls[0]);
    assert.equal(streamed.chunks, 2);
    assert.equal(streamed.text, streamedText(received));
    assert.equal(upstream.reportedFor(call.id), undefined);
  },
);

test('with latency set, the answer comes no sooner than the latency', async (t) => {
  const { upstream, client } = await upstreamFor(t);
  upstream.setLatency(50);
  const started = performance.now();
  await client.chat.completions.create({ model: MODEL, messages: HELLO });

  assert.ok(performance.now() - started >= 45);
});

test('reported() sums every usage object sent, and only those', async (t) => {
  const { upstream, client } = await upstreamFor(t);
  const whole = await client.chat.completions.create({ model: MODEL, messages: HELLO });
  const streamed = await collect(
    await client.chat.completions.create({
      model: MODEL,
      messages: HELLO,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  await collect(await client.chat.completions.create({ model: MODEL, messages: HELLO, stream: true }));

  const usages = [whole.usage!, streamed.at(-1)!.usage!];
  assert.deepEqual(upstream.reported(), {
    prompt_tokens: usages[0]!.prompt_tokens + usages[1]!.prompt_tokens,
    completion_tokens: usages[0]!.completion_tokens + usages[1]!.completion_tokens,
    total_tokens: usages[0]!.total_tokens + usages[1]!.total_tokens,
    calls: 2,
  });
  assert.equal(upstream.reportedFor(whole.id)!.total_tokens, whole.usage!.total_tokens);
});

test('close() drops a stalled stream instead of waiting for it', async () => {
  const upstream = await startDemoUpstream({ script: () => ({ kind: 'stall', afterChunks: 0 }) });
  const client = new OpenAI({ baseURL: upstream.url, apiKey: 'x', maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: MODEL, messages: HELLO, stream: true });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next(); // the role chunk: the stream is open and stalled

  await upstream.close();
  await assert.rejects(iterator.next());
});
