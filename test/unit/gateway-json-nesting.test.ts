import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_JSON_DEPTH, nestingBeyond } from '../../src/gateway/json-nesting.js';

/** `levels` arrays nested inside one another. */
const nested = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
const bodyWith = (param: string, value: string) => `{"model":"gpt-4o","${param}":${value}}`;

describe('the nesting bound of a request body', () => {
  test('a body exactly at the bound passes; one level more is refused', () => {
    // The body object is the first level.
    assert.equal(nestingBeyond(bodyWith('tools', nested(MAX_JSON_DEPTH - 1)), MAX_JSON_DEPTH), undefined);
    assert.deepEqual(nestingBeyond(bodyWith('tools', nested(MAX_JSON_DEPTH)), MAX_JSON_DEPTH), {
      param: 'tools[0][0]',
    });
  });

  test('the refusal names the parameter by its first three levels', () => {
    const deep = `{"tools":[{"type":"function"},{"type":"function","function":{"parameters":${nested(100)}}}]}`;
    assert.deepEqual(nestingBeyond(deep, MAX_JSON_DEPTH), { param: 'tools[1].function' });
  });

  test('brackets inside strings, escaped quotes included, do not count', () => {
    const text = JSON.stringify({ messages: [{ role: 'user', content: `"[{\\"${'['.repeat(500)}` }] });
    assert.equal(nestingBeyond(text, MAX_JSON_DEPTH), undefined);
  });

  test('a key with escapes is named as the client spelled it, decoded', () => {
    assert.deepEqual(nestingBeyond(`{"x\\u0041":${nested(10)}}`, 5), { param: 'xA[0][0]' });
  });

  test('a key longer than 64 characters is named by its first 64', () => {
    const key = 'k'.repeat(10_000);
    assert.deepEqual(nestingBeyond(`{"${key}":${nested(10)}}`, 5), { param: `${'k'.repeat(64)}[0][0]` });
  });

  test('a body that is not an object has no parameter to name', () => {
    assert.deepEqual(nestingBeyond(nested(100), MAX_JSON_DEPTH), { param: null });
  });

  test('a million levels are refused at the first one too many, without parsing the rest', () => {
    assert.deepEqual(nestingBeyond(bodyWith('input', nested(1_000_000)), MAX_JSON_DEPTH), {
      param: 'input[0][0]',
    });
  });

  test('invalid JSON is left to the parser', () => {
    assert.equal(nestingBeyond('{"model":"unterminated', MAX_JSON_DEPTH), undefined);
  });
});
