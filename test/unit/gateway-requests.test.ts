import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HttpError } from '../../src/gateway/errors.js';
import { type ModelRoute, parseModelCall } from '../../src/gateway/requests.js';

const user = (content: unknown) => ({ role: 'user', content });
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [user('hi')],
  ...extra,
});

/** Asserts a 400 whose param is `param` and whose message names it. */
function assertRejected(route: ModelRoute, body: unknown, param: string | null, code?: string | null): void {
  assert.throws(
    () => parseModelCall(route, body),
    (error: unknown) => {
      assert.ok(error instanceof HttpError);
      assert.equal(error.status, 400);
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.param, param);
      if (param !== null) assert.ok(error.message.includes(`'${param}'`), error.message);
      if (code !== undefined) assert.equal(error.code, code);
      return true;
    },
  );
}

describe('chat bodies', () => {
  test('a minimal chat call parses with OpenAI defaults', () => {
    const body = chat();
    assert.deepEqual(parseModelCall('chat', body), {
      route: 'chat',
      model: 'gpt-4o-mini',
      stream: false,
      clientWantsUsage: false,
      maxOutput: undefined,
      choices: 1,
      inputParam: 'messages',
      body,
    });
  });

  test('the body is returned untouched, unknown fields included', () => {
    const body = chat({ temperature: 0.2, user: 'u-1', x_vendor: { a: [1] } });
    const snapshot = structuredClone(body);
    const call = parseModelCall('chat', body);
    assert.equal(call.body, body);
    assert.deepEqual(body, snapshot);
  });

  test('max_completion_tokens wins over max_tokens', () => {
    const call = parseModelCall('chat', chat({ max_tokens: 100, max_completion_tokens: 50 }));
    assert.deepEqual(call.maxOutput, { param: 'max_completion_tokens', value: 50 });
  });

  test('max_tokens alone is the output cap', () => {
    assert.deepEqual(parseModelCall('chat', chat({ max_tokens: 100 })).maxOutput, {
      param: 'max_tokens',
      value: 100,
    });
  });

  test('a null max_tokens counts as unset', () => {
    assert.equal(parseModelCall('chat', chat({ max_tokens: null })).maxOutput, undefined);
  });

  test('n sets the number of choices', () => {
    assert.equal(parseModelCall('chat', chat({ n: 3 })).choices, 3);
  });

  test('stream with stream_options.include_usage means the client wants usage', () => {
    const call = parseModelCall('chat', chat({ stream: true, stream_options: { include_usage: true } }));
    assert.equal(call.stream, true);
    assert.equal(call.clientWantsUsage, true);
  });

  test('stream without stream_options does not ask for usage', () => {
    assert.equal(parseModelCall('chat', chat({ stream: true })).clientWantsUsage, false);
  });

  test('an assistant message with tool_calls may have null content', () => {
    const toolCalls = [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }];
    const messages = [user('hi'), { role: 'assistant', content: null, tool_calls: toolCalls }];
    assert.equal(parseModelCall('chat', chat({ messages })).inputParam, 'messages');
  });

  test('an image-only message is content enough', () => {
    const messages = [user([{ type: 'image_url', image_url: { url: 'https://x/y.png' } }])];
    assert.equal(parseModelCall('chat', chat({ messages })).model, 'gpt-4o-mini');
  });

  test('a body that is not a JSON object is rejected with no param', () => {
    assertRejected('chat', [chat()], null, 'invalid_type');
  });

  test('a missing model names model', () => {
    assertRejected('chat', { messages: [user('hi')] }, 'model', 'missing_required_parameter');
  });

  test('an empty model names model', () => {
    assertRejected('chat', chat({ model: '' }), 'model', 'empty_string');
  });

  test('a model that is not a string names model', () => {
    assertRejected('chat', chat({ model: 4 }), 'model', 'invalid_type');
  });

  test('missing messages names messages', () => {
    assertRejected('chat', { model: 'gpt-4o' }, 'messages', 'missing_required_parameter');
  });

  test('messages that are not an array name messages', () => {
    assertRejected('chat', chat({ messages: 'hi' }), 'messages', 'invalid_type');
  });

  test('an empty messages array names messages', () => {
    assertRejected('chat', chat({ messages: [] }), 'messages', 'empty_array');
  });

  test('a message that is not an object names its index', () => {
    assertRejected('chat', chat({ messages: [user('hi'), 'hello'] }), 'messages[1]', 'invalid_type');
  });

  test('an unknown role names messages[i].role', () => {
    const messages = [user('a'), user('b'), { role: 'wizard', content: 'c' }];
    assertRejected('chat', chat({ messages }), 'messages[2].role', 'invalid_value');
  });

  test('a missing role names messages[i].role', () => {
    assertRejected(
      'chat',
      chat({ messages: [{ content: 'hi' }] }),
      'messages[0].role',
      'missing_required_parameter',
    );
  });

  test('content of the wrong type names messages[i].content', () => {
    assertRejected('chat', chat({ messages: [user(42)] }), 'messages[0].content', 'invalid_type');
  });

  test('null content without tool_calls names messages[i].content', () => {
    const messages = [user('hi'), { role: 'assistant', content: null }];
    assertRejected('chat', chat({ messages }), 'messages[1].content', 'missing_required_parameter');
  });

  test('an empty content-part array names messages[i].content', () => {
    assertRejected('chat', chat({ messages: [user([])] }), 'messages[0].content', 'empty_array');
  });

  test('an unknown content-part type names messages[i].content[j].type', () => {
    const messages = [
      user([
        { type: 'text', text: 'hi' },
        { type: 'video', video: {} },
      ]),
    ];
    assertRejected('chat', chat({ messages }), 'messages[0].content[1].type', 'invalid_value');
  });

  test('a text part without text names messages[i].content[j].text', () => {
    assertRejected('chat', chat({ messages: [user([{ type: 'text' }])] }), 'messages[0].content[0].text');
  });

  test('an image part without a url names messages[i].content[j].image_url.url', () => {
    const messages = [user([{ type: 'image_url', image_url: {} }])];
    assertRejected('chat', chat({ messages }), 'messages[0].content[0].image_url.url');
  });

  test('a name that is not a string names messages[i].name', () => {
    assertRejected(
      'chat',
      chat({ messages: [{ role: 'user', content: 'hi', name: 7 }] }),
      'messages[0].name',
    );
  });

  test('messages that all lack content are an empty prompt', () => {
    const messages = [{ role: 'system', content: '' }, user([{ type: 'text', text: '' }])];
    assert.throws(
      () => parseModelCall('chat', chat({ messages })),
      (error: unknown) =>
        error instanceof HttpError && error.param === 'messages' && /empty prompt/.test(error.message),
    );
  });

  test('max_tokens below 1 names max_tokens', () => {
    assertRejected('chat', chat({ max_tokens: 0 }), 'max_tokens', 'integer_below_min_value');
  });

  test('a fractional max_completion_tokens names max_completion_tokens', () => {
    assertRejected('chat', chat({ max_completion_tokens: 1.5 }), 'max_completion_tokens', 'invalid_type');
  });

  test('a string max_tokens names max_tokens', () => {
    assertRejected('chat', chat({ max_tokens: '100' }), 'max_tokens', 'invalid_type');
  });

  test('a max_tokens of 2^32 + 1 names max_tokens, whatever the tier', () => {
    assertRejected('chat', chat({ max_tokens: 4_294_967_297 }), 'max_tokens', 'integer_above_max_value');
  });

  test('a max_completion_tokens above 10,000,000 names max_completion_tokens', () => {
    const body = chat({ max_completion_tokens: 10_000_001 });
    assertRejected('chat', body, 'max_completion_tokens', 'integer_above_max_value');
  });

  test('max_tokens times n above 10,000,000 names max_tokens', () => {
    const body = chat({ max_tokens: 100_000, n: 101 });
    assertRejected('chat', body, 'max_tokens', 'integer_above_max_value');
  });

  test('n below 1 names n', () => {
    assertRejected('chat', chat({ n: 0 }), 'n', 'integer_below_min_value');
  });

  test('n above 128 names n', () => {
    assertRejected('chat', chat({ n: 129 }), 'n', 'integer_above_max_value');
  });

  test('a stream that is not a boolean names stream', () => {
    assertRejected('chat', chat({ stream: 'yes' }), 'stream', 'invalid_type');
  });

  test('stream_options on a non-streaming call names stream_options', () => {
    assertRejected('chat', chat({ stream_options: { include_usage: true } }), 'stream_options', null);
  });

  test('stream_options with stream false names stream_options', () => {
    assertRejected(
      'chat',
      chat({ stream: false, stream_options: { include_usage: true } }),
      'stream_options',
    );
  });

  test('stream_options that is not an object names stream_options', () => {
    assertRejected('chat', chat({ stream: true, stream_options: true }), 'stream_options', 'invalid_type');
  });

  test('an include_usage that is not a boolean names stream_options.include_usage', () => {
    const body = chat({ stream: true, stream_options: { include_usage: 'yes' } });
    assertRejected('chat', body, 'stream_options.include_usage', 'invalid_type');
  });
});

describe('completions bodies', () => {
  const completion = (extra: Record<string, unknown> = {}) => ({
    model: 'gpt-3.5-turbo-instruct',
    prompt: 'Hi',
    ...extra,
  });

  test('a string prompt is one prompt', () => {
    const call = parseModelCall('completions', completion({ max_tokens: 20 }));
    assert.equal(call.inputParam, 'prompt');
    assert.equal(call.choices, 1);
    assert.deepEqual(call.maxOutput, { param: 'max_tokens', value: 20 });
  });

  test('choices are n times the number of prompts', () => {
    assert.equal(parseModelCall('completions', completion({ prompt: ['a', 'b', 'c'], n: 2 })).choices, 6);
  });

  test('an array of token ids is one prompt', () => {
    assert.equal(parseModelCall('completions', completion({ prompt: [1, 2, 3] })).choices, 1);
  });

  test('an array of token-id arrays is one prompt each', () => {
    assert.equal(parseModelCall('completions', completion({ prompt: [[1, 2], [3]] })).choices, 2);
  });

  test('best_of above n sets the choices, since every candidate is generated', () => {
    assert.equal(parseModelCall('completions', completion({ n: 2, best_of: 5 })).choices, 5);
  });

  test('best_of below n names best_of', () => {
    assertRejected('completions', completion({ n: 3, best_of: 2 }), 'best_of', 'invalid_value');
  });

  test('max_tokens times every best_of candidate of every prompt above 10,000,000 names max_tokens', () => {
    const body = completion({ prompt: ['a', 'b'], best_of: 20, max_tokens: 250_001 });
    assertRejected('completions', body, 'max_tokens', 'integer_above_max_value');
  });

  test('a missing prompt names prompt', () => {
    assertRejected('completions', { model: 'm' }, 'prompt', 'missing_required_parameter');
  });

  test('an empty prompt string names prompt', () => {
    assertRejected('completions', completion({ prompt: '' }), 'prompt', 'empty_string');
  });

  test('an empty prompt array names prompt', () => {
    assertRejected('completions', completion({ prompt: [] }), 'prompt', 'empty_array');
  });

  test('an empty string among prompts names its index', () => {
    assertRejected('completions', completion({ prompt: ['a', ''] }), 'prompt[1]', 'empty_string');
  });

  test('a mixed prompt array names the first item that does not fit', () => {
    assertRejected('completions', completion({ prompt: ['a', 2] }), 'prompt[1]', 'invalid_type');
  });

  test('a fractional token id names its position', () => {
    assertRejected('completions', completion({ prompt: [[1, 2.5]] }), 'prompt[0][1]', 'invalid_type');
  });

  test('a token id above 2^31 - 1 names its position', () => {
    const body = completion({ prompt: [1, 4_294_967_297] });
    assertRejected('completions', body, 'prompt[1]', 'integer_above_max_value');
  });

  test('a prompt of the wrong type names prompt', () => {
    assertRejected('completions', completion({ prompt: { text: 'hi' } }), 'prompt', 'invalid_type');
  });
});

describe('embeddings bodies', () => {
  const embedding = (input: unknown) => ({ model: 'text-embedding-3-small', input });

  test('an embeddings call has no output cap, one choice and no stream', () => {
    const call = parseModelCall('embeddings', { ...embedding('hello'), max_tokens: 5, stream: true });
    assert.equal(call.maxOutput, undefined);
    assert.equal(call.choices, 1);
    assert.equal(call.stream, false);
    assert.equal(call.inputParam, 'input');
  });

  test('strings, token ids and token-id arrays are accepted', () => {
    for (const input of ['a', ['a', 'b'], [1, 2], [[1], [2, 3]]]) {
      assert.equal(parseModelCall('embeddings', embedding(input)).route, 'embeddings');
    }
  });

  test('a missing input names input', () => {
    assertRejected('embeddings', { model: 'text-embedding-3-small' }, 'input', 'missing_required_parameter');
  });

  test('an empty input string names input', () => {
    assertRejected('embeddings', embedding(''), 'input', 'empty_string');
  });

  test('an empty token-id array among inputs names its index', () => {
    assertRejected('embeddings', embedding([[1], []]), 'input[1]', 'empty_array');
  });

  test('a negative token id names its position', () => {
    assertRejected('embeddings', embedding([5, -1]), 'input[1]', 'integer_below_min_value');
  });
});
