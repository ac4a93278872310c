import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

/**
 * `npm ci` warns EBADENGINE when an installed package refuses the Node the project says it runs on: the
 * first thing a newcomer would see. Every locked package's `engines.node` must admit the lowest Node our
 * own `engines.node` admits.
 */
const root = new URL('../../../', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  engines: { node: string };
};
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as {
  packages: Record<string, { engines?: { node?: string } | string[] }>;
};

type Version = [number, number, number];

function parseVersion(text: string): { version: Version; wild: number } {
  const parts = text.replace(/^v/, '').split('.');
  const numbers: number[] = [];
  for (const part of parts) {
    if (part === 'x' || part === '*' || part === '') break;
    numbers.push(Number(part));
  }
  assert.ok(numbers.every(Number.isInteger), `cannot read the version ${text}`);
  const wild = 3 - numbers.length;
  while (numbers.length < 3) numbers.push(0);
  return { version: numbers as Version, wild };
}

function compare(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return 0;
}

/** Whether one comparator set of an npm range (`>=20`, `^18.18.0`, `20`, `10.*`, `*`) admits `v`. */
function admits(comparator: string, v: Version): boolean {
  const text = comparator.trim();
  if (text === '*' || text === '') return true;
  const match = /^(>=|>|<=|<|\^|~|=)?\s*(.+)$/.exec(text);
  assert.ok(match, `cannot read the range ${text}`);
  const [, op = '', rest = ''] = match;
  const { version, wild } = parseVersion(rest);
  switch (op) {
    case '>=':
      return compare(v, version) >= 0;
    case '>':
      return compare(v, version) > 0;
    case '<':
      return compare(v, version) < 0;
    case '<=':
      return compare(v, version) <= 0;
    case '^':
      return compare(v, version) >= 0 && v[0] === version[0];
    case '~':
      return compare(v, version) >= 0 && v[0] === version[0] && v[1] === version[1];
    default:
      // `20`, `20.x`, `10.*`: every version sharing the given parts.
      return version.slice(0, 3 - wild).every((part, i) => v[i] === part);
  }
}

const satisfies = (range: string, v: Version) =>
  range.split('||').some((set) =>
    set
      .trim()
      .split(/\s+(?=[<>=^~])/)
      .every((c) => admits(c, v)),
  );

test('every locked package runs on the lowest Node our engines.node admits, so npm ci prints no EBADENGINE', () => {
  const lowest = /^>=\s*(\S+)$/.exec(manifest.engines.node);
  assert.ok(lowest, `engines.node should be a lower bound, not ${manifest.engines.node}`);
  const minimum = parseVersion(lowest[1] as string).version;
  const refusing = Object.entries(lock.packages)
    .filter(([, entry]) => !Array.isArray(entry.engines) && typeof entry.engines?.node === 'string')
    .filter(([, entry]) => !satisfies((entry.engines as { node: string }).node, minimum))
    .map(([path, entry]) => `${path} (${(entry.engines as { node: string }).node})`);
  assert.deepEqual(refusing, []);
});
