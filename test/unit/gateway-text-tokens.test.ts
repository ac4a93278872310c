import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { encode as encodeO200k } from 'gpt-tokenizer/encoding/o200k_base';
import { estimateInputTokensInSlices } from '../../src/gateway/estimate.js';
import { parseModelCall } from '../../src/gateway/requests.js';
import { countTextTokens, MAX_RUN_CHARS } from '../../src/gateway/text-tokens.js';

const SPECIALS_AS_TEXT = { disallowedSpecial: new Set<string>() };
const exact = {
  o200k: (text: string) => encodeO200k(text, SPECIALS_AS_TEXT).length,
  cl100k: (text: string) => encodeCl100k(text, SPECIALS_AS_TEXT).length,
};

/** A deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

const PIECES = [
  'the',
  ' quick',
  ' brown',
  ' fox',
  ' jumps',
  '  ',
  '\n',
  '\n\n',
  '\r\n',
  '\t',
  ' ',
  '. ',
  ', ',
  '!\n',
  "don't",
  " it's",
  ' 12345',
  ' 3.14159',
  ' (x) => x * 2;',
  ' {"a": [1, 2]}',
  ' https://example.com/a/b?c=d',
  ' naïve',
  ' café',
  ' こんにちは世界。',
  ' 你好，世界！',
  ' สวัสดีครับ',
  ' Привет',
  ' 😀😃',
  ' <|endoftext|>',
  '    indented',
  ' CamelCaseWord',
  ' ALLCAPS',
  ' snake_case_name',
  ' --flag=value',
  '\n    ',
  ' ///',
  ' ...',
];

function mixedText(seed: number, length: number): string {
  const next = random(seed);
  const pieces: string[] = [];
  for (let size = 0; size < length;) {
    const piece = PIECES[Math.floor(next() * PIECES.length)] as string;
    pieces.push(piece);
    size += piece.length;
  }
  return pieces.join('');
}

describe('counting text in bounded pieces', () => {
  test('ordinary text of any length counts exactly as the tokenizer counts it whole', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const text = mixedText(seed, 1_000 + seed * 900);
      assert.equal(countTextTokens(text, 'gpt-4o'), exact.o200k(text), `o200k, seed ${seed}`);
      assert.equal(countTextTokens(text, 'gpt-4'), exact.cl100k(text), `cl100k, seed ${seed}`);
    }
  });

  test(`a run longer than ${MAX_RUN_CHARS} characters never counts below the tokenizer, nor above its bytes`, () => {
    const next = random(7);
    const pick = (alphabet: string) => () => alphabet[Math.floor(next() * alphabet.length)] as string;
    const cjk = () => String.fromCodePoint(0x4e00 + Math.floor(next() * 3_000));
    const thai = () => String.fromCodePoint(0x0e01 + Math.floor(next() * 46));
    const emoji = () => String.fromCodePoint(0x1f600 + Math.floor(next() * 80));
    const kinds: Record<string, () => string> = {
      letters: pick('abcdefghijklmnopqrstuvwxyz'),
      capitals: pick('ABCDEFGHIJKLMNOPQRSTUVWXYZ'),
      twoLetters: pick('ab'),
      repeated: () => 'a',
      punctuation: pick('!#$%&()*+,-.:;<=>?@[]^_`{|}~'),
      spaces: pick(' \t'),
      cjk,
      thai,
      emoji,
    };
    for (const [kind, char] of Object.entries(kinds)) {
      // Up to 3,100 characters, and one of 9,000: longer than the window the split runs on.
      for (const length of [600, 1_100, 1_600, 2_100, 2_600, 3_100, 9_000]) {
        if (length > 10_000 && !['letters', 'cjk', 'spaces'].includes(kind)) continue;
        const run = Array.from({ length }, char).join('');
        for (const [model, whole] of [
          ['gpt-4o', exact.o200k],
          ['gpt-4', exact.cl100k],
        ] as const) {
          const counted = countTextTokens(`Look: ${run} done`, model);
          const truth = whole(`Look: ${run} done`);
          assert.ok(counted >= truth, `${kind} on ${model}: ${counted} < ${truth}`);
          assert.ok(
            counted <= Buffer.byteLength(`Look: ${run} done`),
            `${kind} on ${model}: above its bytes`,
          );
        }
      }
    }
  });

  test('estimating a 4 MB body never holds the event loop for 50 ms of CPU', async () => {
    // What froze the gateway: one 160 KB run without a space (11.6 s), in the largest body the gateway
    // reads, with high-entropy text that misses every cache and ordinary text around it.
    const run = 'x'.repeat(160_000);
    const noise = randomBytes(192_000).toString('base64');
    const prose = mixedText(3, 4_000_000 - run.length - noise.length);
    const call = parseModelCall('chat', {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: [run, noise, prose].join(' ') }],
    });
    // CPU time between two turns of the loop is the loop's own blocking: a busy machine that preempts this
    // process stretches wall time, not CPU time.
    let worstMs = 0;
    let last = process.cpuUsage();
    let turning = true;
    const turn = () => {
      const now = process.cpuUsage(last);
      worstMs = Math.max(worstMs, (now.user + now.system) / 1_000);
      last = process.cpuUsage();
      if (turning) setImmediate(turn);
    };
    setImmediate(turn);
    const tokens = await estimateInputTokensInSlices(call);
    turning = false;
    assert.ok(tokens > 500_000, `${tokens} tokens`);
    assert.ok(worstMs < 50, `the event loop was held for ${worstMs.toFixed(1)} ms of CPU`);
  });
});
