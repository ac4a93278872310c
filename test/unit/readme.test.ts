import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SERVE_SETTINGS, type Setting } from '../../src/main/config.js';
import { GATEWAY_SETTINGS } from '../../src/main/gateway-config.js';
import { parsePolicy } from '../../src/policy/load.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

test("the README's example policy is a valid policy", () => {
  const example = /```yaml\n([\s\S]*?)```/.exec(README)?.[1];
  assert.ok(example, 'README has a yaml example');
  const policy = parsePolicy(example, 'README.md');
  assert.deepEqual(
    policy.tiers.get('free')?.limits.map((l) => l.name),
    ['requests_per_minute', 'tokens_per_minute', 'tokens_per_day', 'spend_per_day', 'concurrent_requests'],
  );
});

/** The rows of the Markdown table that follows `heading` in the README: flag, variable, default. */
function settingsTable(heading: string): { flag: string; env: string; default: string }[] {
  const start = README.indexOf(heading);
  assert.ok(start >= 0, `README has "${heading}"`);
  const table = /\n(\|[^\n]*\n)+/.exec(README.slice(start))?.[0] ?? '';
  return table
    .trim()
    .split('\n')
    .slice(2)
    .map((row) => row.split('|').map((cell) => cell.trim()))
    .map(([, flag, env, text]) => ({
      flag: (flag ?? '').replaceAll('`', ''),
      env: (env ?? '').replaceAll('`', ''),
      default: (text ?? '').replaceAll('`', ''),
    }));
}

for (const [command, heading, settings] of [
  ['serve', '`quotad serve` takes each setting', SERVE_SETTINGS],
  ['gateway', '`quotad gateway` takes its settings', GATEWAY_SETTINGS],
] as const) {
  test(`the README's table of quotad ${command} settings is --help's: every flag, its variable and default`, () => {
    const rows = settingsTable(heading).filter((row) => row.flag !== '');
    const expected = Object.values(settings as Record<string, Setting>).map((setting) => ({
      flag: `--${setting.flag}`,
      env: setting.env,
      default: setting.default || 'unset',
    }));
    assert.deepEqual(
      rows.map((row) => ({ ...row, default: row.default === 'none' ? 'unset' : row.default })),
      expected,
    );
  });
}

test("the README's table of contents lists every section, and each link leads to its heading", () => {
  const start = README.indexOf('## Contents\n');
  assert.ok(start >= 0, 'README has a table of contents');
  const toc = README.slice(start, README.indexOf('\n## ', start + 1));
  const links = [...toc.matchAll(/^ *- \[([^\]]+)\]\(#([^)]+)\)$/gm)].map((m) => ({
    title: m[1],
    anchor: m[2],
  }));
  const headings = [...README.matchAll(/^#{2,3} (.+)$/gm)]
    .map((m) => m[1] as string)
    .filter((title) => title !== 'Contents');
  const anchorOf = (title: string) =>
    title
      .toLowerCase()
      .replace(/[^\w\- ]/g, '')
      .replaceAll(' ', '-');
  assert.deepEqual(
    links,
    headings.map((title) => ({ title, anchor: anchorOf(title) })),
  );
});
