import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, REDACTED, secretScrubber } from '../../src/telemetry/logger.js';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const REDIS_PASSWORD = 'p@ss "word" 42';

function logTo(lines: string[], secrets: string[]) {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return createLogger({ level: 'info', name: 'redaction-test', destination, secrets });
}

test("the process's own secrets are scrubbed from every line, whatever field or message carries them", () => {
  const lines: string[] = [];
  const logger = logTo(lines, [ADMIN_TOKEN, REDIS_PASSWORD]);
  logger.warn({ err: `upstream said: bad token ${ADMIN_TOKEN}` }, 'upstream failed');
  logger.error({ nested: { detail: [`redis://u:${REDIS_PASSWORD}@host`] } }, `again ${ADMIN_TOKEN}`);
  const url = new URL('redis://host:6379');
  [url.username, url.password] = ['u', REDIS_PASSWORD];
  logger.info({ url: url.href }, 'connecting');
  assert.equal(lines.length, 3);
  for (const line of lines) {
    assert.ok(!line.includes(ADMIN_TOKEN), line);
    assert.ok(!line.includes('p@ss'), line);
    assert.ok(!line.includes(encodeURIComponent(REDIS_PASSWORD)), line);
    assert.ok(line.includes(REDACTED), line);
    JSON.parse(line);
  }
});

test('keys and tokens recognisable by their shape are scrubbed even when nobody configured them', () => {
  const scrub = secretScrubber([]);
  const quotadKey = `qd_live_${'A1b2C3d4E5'.repeat(3)}Zz9Yy8Xx`;
  const openAiKey = 'sk-proj-abcdefghijklmnopqrstuvwxyz012345';
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
  const text = `keys ${quotadKey}, ${openAiKey} and ${jwt}; hint qd_live_A1b2… stays; task-manager stays`;
  assert.equal(
    scrub(text),
    `keys ${REDACTED}, ${REDACTED} and ${REDACTED}; hint qd_live_A1b2… stays; task-manager stays`,
  );
});

test('values shorter than 8 characters are not treated as secrets', () => {
  assert.equal(secretScrubber(['ollama'])('model served by ollama'), 'model served by ollama');
});
