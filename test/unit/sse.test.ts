import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SseSplitter } from '../../src/gateway/sse.js';

const encode = (text: string) => new TextEncoder().encode(text);
const STREAM = 'data: {"a":1}\n\ndata: {"b":"ü"}\n\n: keep-alive\n\ndata: [DONE]\n\n';

test('events split across any chunking come out whole and byte for byte', () => {
  const bytes = encode(STREAM);
  for (let size = 1; size <= bytes.length; size++) {
    const splitter = new SseSplitter();
    const raws: string[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      raws.push(...splitter.push(bytes.subarray(at, at + size)).map((e) => e.raw));
    }
    assert.equal(splitter.end(), undefined);
    assert.equal(raws.join(''), STREAM, `chunks of ${size} bytes`);
    assert.equal(raws.length, 4);
  }
});

test("an event's data lines are joined; a comment has no data", () => {
  const events = new SseSplitter().push(encode('data: one\ndata: two\n\n: ping\n\n'));
  assert.deepEqual(
    events.map((e) => e.data),
    ['one\ntwo', undefined],
  );
});

test('CRLF line endings end events too', () => {
  const events = new SseSplitter().push(encode('data: x\r\n\r\ndata: y\r\n\r\n'));
  assert.deepEqual(
    events.map((e) => e.data),
    ['x', 'y'],
  );
});

test('an unterminated last event is returned by end()', () => {
  const splitter = new SseSplitter();
  assert.deepEqual(splitter.push(encode('data: [DONE]')), []);
  assert.equal(splitter.end()?.data, '[DONE]');
});
