import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { GATEWAY_ERRORS, gatewayError, wireCode, type GatewayErrorName } from '../../src/gateway/errors.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

/** The README's table of answers: each status with the codes listed for it. */
function readmeAnswers(): Map<number, string[]> {
  const start = README.indexOf('**Answers.**');
  assert.ok(start >= 0, 'README has the **Answers.** paragraph');
  const table = /\n(\|[^\n]*\n)+/.exec(README.slice(start))?.[0] ?? '';
  const rows = table.trim().split('\n').slice(2);
  return new Map(
    rows.map((row) => {
      const cells = row.split('|').map((cell) => cell.trim());
      const codes = [...(cells[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((m) => m[1] as string);
      return [Number(cells[1]), codes.filter((code) => code !== 'null')];
    }),
  );
}

function catalogueAnswers(): Map<number, string[]> {
  const byStatus = new Map<number, string[]>();
  for (const name of Object.keys(GATEWAY_ERRORS) as GatewayErrorName[]) {
    const { status } = GATEWAY_ERRORS[name];
    const codes = byStatus.get(status) ?? [];
    const code = wireCode(name);
    if (code !== null) codes.push(code);
    byStatus.set(status, codes);
  }
  return byStatus;
}

test("the README's table of answers lists every status and code of the gateway's error catalogue, and no other", () => {
  const sorted = (answers: Map<number, string[]>) =>
    [...answers]
      .map(([status, codes]) => [status, [...codes].sort()])
      .sort((a, b) => Number(a[0]) - Number(b[0]));
  assert.deepEqual(sorted(readmeAnswers()), sorted(catalogueAnswers()));
});

test('an error from the catalogue carries its status, type and code, and the message given', () => {
  const error = gatewayError('model_not_allowed', "Your tier may not use the model 'x'.", { param: 'model' });
  assert.deepEqual(
    { status: error.status, body: error.body() },
    {
      status: 403,
      body: {
        error: {
          message: "Your tier may not use the model 'x'.",
          type: 'permission_error',
          param: 'model',
          code: 'model_not_allowed',
        },
      },
    },
  );
});
