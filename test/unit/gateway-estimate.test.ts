import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { encode as encodeO200k } from 'gpt-tokenizer/encoding/o200k_base';
import {
  countStreamedTokens,
  countTextTokens,
  encodingFor,
  estimateInputTokens,
} from '../../src/gateway/estimate.js';
import { type ModelRoute, parseModelCall } from '../../src/gateway/requests.js';
import { pdfDataUrl, pngDataUrl, wavBase64 } from '../helpers/media.js';

const o200k = (text: string) => encodeO200k(text).length;
const cl100k = (text: string) => encodeCl100k(text).length;
const estimate = (route: ModelRoute, body: Record<string, unknown>) =>
  estimateInputTokens(parseModelCall(route, body));
const chatOf = (messages: unknown[], extra: Record<string, unknown> = {}) =>
  estimate('chat', { model: 'gpt-4o', messages, ...extra });

describe('encodings', () => {
  test('current OpenAI models use o200k_base', () => {
    for (const model of [
      'gpt-4o',
      'gpt-4o-mini',
      'gpt-4.1-nano',
      'gpt-4.5-preview',
      'gpt-5',
      'o1',
      'o3-mini',
      'o4-mini',
      'chatgpt-4o-latest',
    ]) {
      assert.equal(encodingFor(model), 'o200k_base', model);
    }
  });

  test('gpt-4, gpt-3.5 and the embedding models use cl100k_base', () => {
    for (const model of [
      'gpt-4',
      'gpt-4-turbo',
      'gpt-4-0613',
      'gpt-3.5-turbo',
      'text-embedding-3-small',
      'text-embedding-ada-002',
    ]) {
      assert.equal(encodingFor(model), 'cl100k_base', model);
    }
  });

  test('a fine-tune counts with its base model encoding', () => {
    assert.equal(encodingFor('ft:gpt-3.5-turbo-0125:acme::abc123'), 'cl100k_base');
    assert.equal(encodingFor('ft:gpt-4o-mini-2024-07-18:acme::abc123'), 'o200k_base');
  });

  test('an unknown model counts as o200k_base', () => {
    assert.equal(encodingFor('llama-3.1-70b'), 'o200k_base');
  });
});

describe('text tokens', () => {
  const text = 'Tokenizers disagree: こんにちは世界, naïve café déjà vu.';

  test('text counts with the model encoding', () => {
    assert.notEqual(o200k(text), cl100k(text));
    assert.equal(countTextTokens(text, 'gpt-4o'), o200k(text));
    assert.equal(countTextTokens(text, 'gpt-3.5-turbo'), cl100k(text));
  });

  test('special-token spellings in client text count as plain text', () => {
    assert.ok(countTextTokens('a <|endoftext|> b', 'gpt-4o') > 3);
  });

  test('streamed text counts once over the concatenation, not per chunk', () => {
    const chunks = ['Hel', 'lo wor', 'ld, how are', ' you?'];
    assert.equal(countStreamedTokens(chunks, 'gpt-4o'), o200k(chunks.join('')));
  });
});

describe('chat estimates', () => {
  test('a known chat matches the cookbook arithmetic', () => {
    const messages = [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', name: 'ada', content: 'What is the capital of France?' },
      { role: 'assistant', content: 'Paris.' },
    ];
    const perMessage = [
      3 + o200k('system') + o200k('You are a helpful assistant.'),
      3 + o200k('user') + o200k('ada') + 1 + o200k('What is the capital of France?'),
      3 + o200k('assistant') + o200k('Paris.'),
    ];
    const expected = perMessage.reduce((sum, tokens) => sum + tokens, 0) + 3;
    assert.equal(chatOf(messages), expected);
  });

  test('a cl100k model counts the chat with cl100k', () => {
    const content = 'こんにちは、元気ですか？';
    const call = parseModelCall('chat', { model: 'gpt-4', messages: [{ role: 'user', content }] });
    assert.equal(estimateInputTokens(call), 3 + cl100k('user') + cl100k(content) + 3);
  });

  test('text parts count their text', () => {
    const parts = [
      { type: 'text', text: 'first part' },
      { type: 'text', text: 'second part' },
    ];
    assert.equal(
      chatOf([{ role: 'user', content: parts }]),
      3 + o200k('user') + o200k('first part') + o200k('second part') + 3,
    );
  });

  test('an image counts by its size, its detail and the model: 1024×1024 is 765 on gpt-4o, 25,501 on gpt-4o-mini', () => {
    const image = (url: string, detail?: string) => ({
      role: 'user',
      content: [{ type: 'image_url', image_url: { url, detail } }],
    });
    const square = pngDataUrl(1024, 1024);
    const frame = 3 + o200k('user') + 3;
    assert.equal(chatOf([image(square)]), frame + 765);
    assert.equal(chatOf([image(square, 'low')]), frame + 85);
    assert.equal(
      estimate('chat', { model: 'gpt-4o-mini', messages: [image(square, 'high')] }),
      frame + 25_501,
    );
  });

  test('a remote image counts the most its detail allows', () => {
    const remote = (detail?: string) => [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png', detail } }] },
    ];
    const frame = 3 + o200k('user') + 3;
    assert.equal(chatOf(remote()), frame + 85 + 8 * 170);
    assert.equal(chatOf(remote('low')), frame + 85);
  });

  test('a WAV counts 10 tokens a second of its length; other audio is timed at 8 kbit/s', () => {
    const audio = (data: string, format: string) => [
      { role: 'user', content: [{ type: 'input_audio', input_audio: { data, format } }] },
    ];
    const frame = 3 + o200k('user') + 3;
    assert.equal(chatOf(audio(wavBase64(30, 32_000), 'wav')), frame + 300);
    assert.equal(chatOf(audio(Buffer.alloc(60_000).toString('base64'), 'mp3')), frame + 600);
  });

  test("a PDF counts each page as the model's largest image plus 1,000 tokens of text; a file_id as one page", () => {
    const file = (file: Record<string, unknown>) => [{ role: 'user', content: [{ type: 'file', file }] }];
    const frame = 3 + o200k('user') + 3;
    const page = 85 + 8 * 170 + 1_000;
    assert.equal(chatOf(file({ filename: 'a.pdf', file_data: pdfDataUrl(3) })), frame + 3 * page);
    assert.equal(chatOf(file({ file_id: 'file-abc' })), frame + page);
  });

  test('a JSON schema in response_format counts as its JSON text', () => {
    const messages = [{ role: 'user', content: 'Extract the fields.' }];
    const schema = {
      type: 'object',
      properties: Object.fromEntries(
        Array.from({ length: 200 }, (_, i) => [`field_${i}`, { type: 'string', description: `field ${i}` }]),
      ),
    };
    const responseFormat = { type: 'json_schema', json_schema: { name: 'fields', schema } };
    assert.equal(
      chatOf(messages, { response_format: responseFormat }) - chatOf(messages),
      o200k(JSON.stringify(responseFormat)),
    );
  });

  test('tool_choice, legacy functions and function_call count as their text', () => {
    const messages = [{ role: 'user', content: 'weather?' }];
    const toolChoice = { type: 'function', function: { name: 'get_weather' } };
    const functions = [{ name: 'get_weather', parameters: { type: 'object', properties: {} } }];
    assert.equal(
      chatOf(messages, { tool_choice: toolChoice }) - chatOf(messages),
      o200k(JSON.stringify(toolChoice)),
    );
    assert.equal(chatOf(messages, { tool_choice: 'required' }) - chatOf(messages), o200k('required'));
    assert.equal(
      chatOf(messages, { functions, function_call: 'auto' }) - chatOf(messages),
      o200k(JSON.stringify(functions)) + o200k('auto'),
    );
  });

  test("a predicted output counts its content's text", () => {
    const messages = [{ role: 'user', content: 'Rename x to y.' }];
    const code = 'const x = 1;\nconsole.log(x);\n';
    assert.equal(
      chatOf(messages, { prediction: { type: 'content', content: code } }) - chatOf(messages),
      o200k(code),
    );
    const parts = [{ type: 'text', text: code }];
    assert.equal(
      chatOf(messages, { prediction: { type: 'content', content: parts } }) - chatOf(messages),
      o200k(code),
    );
  });

  test('tool definitions count as their JSON text', () => {
    const messages = [{ role: 'user', content: 'weather?' }];
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    assert.equal(chatOf(messages, { tools }) - chatOf(messages), o200k(JSON.stringify(tools)));
  });

  test('tool calls in an assistant message count as their JSON text', () => {
    const toolCalls = [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ];
    const messages = [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: null, tool_calls: toolCalls },
    ];
    const expected =
      3 + o200k('user') + o200k('weather?') + 3 + o200k('assistant') + o200k(JSON.stringify(toolCalls)) + 3;
    assert.equal(chatOf(messages), expected);
  });
});

describe('completions and embeddings estimates', () => {
  test('completion prompts count each string', () => {
    const body = { model: 'gpt-3.5-turbo-instruct', prompt: ['Say hi', 'Say bye twice'] };
    assert.equal(estimate('completions', body), cl100k('Say hi') + cl100k('Say bye twice'));
  });

  test('token-id prompts count their length', () => {
    assert.equal(
      estimate('completions', {
        model: 'davinci-002',
        prompt: [
          [1, 2, 3],
          [4, 5],
        ],
      }),
      5,
    );
    assert.equal(estimate('completions', { model: 'davinci-002', prompt: [7, 8, 9] }), 3);
  });

  test('embedding inputs count each string', () => {
    const body = { model: 'text-embedding-3-small', input: ['alpha beta', 'gamma'] };
    assert.equal(estimate('embeddings', body), cl100k('alpha beta') + cl100k('gamma'));
  });

  test('token-id embedding inputs count their length', () => {
    assert.equal(
      estimate('embeddings', {
        model: 'text-embedding-3-small',
        input: [
          [1, 2],
          [3, 4, 5, 6],
        ],
      }),
      6,
    );
  });
});
