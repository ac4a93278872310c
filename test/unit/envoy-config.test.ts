import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DescriptorNode, EnvoyConfig, EnvoyDomain } from '../../src/envoy/config.js';
import { EnvoyConfigError } from '../../src/envoy/config-error.js';
import { buildEnvoyConfig, loadEnvoyConfigDirectory } from '../../src/envoy/load-config.js';

/** The lines of a file, joined: tests count lines by the array's index + 1. */
function lines(...text: string[]): string {
  return `${text.join('\n')}\n`;
}

function load(text: string, name = 'rules.yaml'): EnvoyConfig {
  return buildEnvoyConfig([{ name, text }]);
}

function domainOf(text: string): EnvoyDomain {
  const [domain] = load(text).domains.values();
  assert.ok(domain, 'the file defines a domain');
  return domain;
}

/** Each problem as `file:line:column path: reason`, as the error message shows it. */
function problemsOf(files: { name: string; text: string }[]): string[] {
  try {
    buildEnvoyConfig(files);
  } catch (error) {
    assert.ok(error instanceof EnvoyConfigError, `an EnvoyConfigError, not ${String(error)}`);
    return error.message.split('\n');
  }
  return assert.fail('the configuration was accepted');
}

function problemsOfText(text: string): string[] {
  return problemsOf([{ name: 'rules.yaml', text }]);
}

/** The node of a key (and value) at the top level of a domain. */
function topNode(domain: EnvoyDomain, key: string, value?: string): DescriptorNode {
  const node =
    value === undefined
      ? domain.descriptors.keyOnly.get(key)
      : domain.descriptors.byValue.get(key)?.get(value);
  assert.ok(node, `a descriptor ${key}${value === undefined ? '' : `=${value}`}`);
  return node;
}

const BASIC = lines(
  'domain: shop',
  'descriptors:',
  '  - key: path',
  '    value: /checkout',
  '    rate_limit:',
  '      unit: minute',
  '      requests_per_unit: 30',
);

describe('Envoy config: the format of envoyproxy/ratelimit', () => {
  test('a file defines one domain with its rules under the domain name', () => {
    const config = load(BASIC);
    assert.deepEqual([...config.domains.keys()], ['shop']);
  });

  test('a rate_limit block gives a rule its unit, requests per unit, path and place', () => {
    const rule = topNode(domainOf(BASIC), 'path', '/checkout').rule;
    assert.deepEqual(
      {
        path: rule?.path,
        unit: rule?.unit,
        requestsPerUnit: rule?.requestsPerUnit,
        unlimited: rule?.unlimited,
        place: rule?.place,
      },
      {
        path: 'shop.path_/checkout',
        unit: 'minute',
        requestsPerUnit: 30,
        unlimited: false,
        place: { source: 'rules.yaml', line: 5, column: 5 },
      },
    );
  });

  test('nested descriptors build a tree whose rule paths join each level with a dot', () => {
    const domain = domainOf(
      lines(
        'domain: messaging',
        'descriptors:',
        '  - key: message_type',
        '    value: marketing',
        '    descriptors:',
        '      - key: to_number',
        '        rate_limit: {unit: day, requests_per_unit: 5}',
      ),
    );
    const parent = topNode(domain, 'message_type', 'marketing');
    assert.deepEqual(
      { parentRule: parent.rule, childPath: parent.children.keyOnly.get('to_number')?.rule?.path },
      { parentRule: undefined, childPath: 'messaging.message_type_marketing.to_number' },
    );
  });

  test('a descriptor without value, with an empty value or a null value is key-only', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: a',
        '  - key: b',
        '    value: ""',
        '  - key: c',
        '    value: null',
        '  - key: e',
        '    value:',
      ),
    );
    assert.deepEqual([...domain.descriptors.keyOnly.keys()], ['a', 'b', 'c', 'e']);
  });

  test('values keep the text written: numbers, dotted addresses and YAML 1.1 words stay strings', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: version',
        '    value: 1.0',
        '  - key: remote_address',
        '    value: 50.0.0.5',
        '  - key: flag',
        '    value: yes',
        '  - key: mode',
        '    value: 0755',
      ),
    );
    assert.deepEqual(
      [...domain.descriptors.byValue].map(([key, values]) => [key, [...values.keys()]]),
      [
        ['version', ['1.0']],
        ['remote_address', ['50.0.0.5']],
        ['flag', ['yes']],
        ['mode', ['0755']],
      ],
    );
  });

  test('a value holding * is a wildcard, split into its literal parts and listed in file order', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: path',
        '    value: /api/*/action',
        '  - key: path',
        '    value: /api/*',
        '  - key: path',
        '    value: /exact',
      ),
    );
    assert.deepEqual(
      domain.descriptors.wildcards.get('path')?.map((node) => node.wildcardParts),
      [
        ['/api/', '/action'],
        ['/api/', ''],
      ],
    );
  });

  test('unit is read case-insensitively and every unit of Envoy’s enum loads', () => {
    const units = ['second', 'MINUTE', 'Hour', 'day', 'week', 'month', 'year'];
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        ...units.map(
          (unit) => `  - {key: k, value: ${unit}, rate_limit: {unit: ${unit}, requests_per_unit: 1}}`,
        ),
      ),
    );
    assert.deepEqual(
      units.map((unit) => topNode(domain, 'k', unit).rule?.unit),
      ['second', 'minute', 'hour', 'day', 'week', 'month', 'year'],
    );
  });

  test('requests_per_unit 0 and 4294967295 are both valid', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - {key: blocked, rate_limit: {unit: second, requests_per_unit: 0}}',
        '  - {key: huge, rate_limit: {unit: second, requests_per_unit: 4294967295}}',
      ),
    );
    assert.deepEqual(
      [topNode(domain, 'blocked').rule?.requestsPerUnit, topNode(domain, 'huge').rule?.requestsPerUnit],
      [0, 4_294_967_295],
    );
  });

  test('unlimited: true makes a rule with no unit', () => {
    const rule = topNode(
      domainOf(lines('domain: d', 'descriptors:', '  - {key: ldap, rate_limit: {unlimited: true}}')),
      'ldap',
    ).rule;
    assert.deepEqual({ unlimited: rule?.unlimited, unit: rule?.unit }, { unlimited: true, unit: undefined });
  });

  test('name and replaces are kept on the rule', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: a',
        '    rate_limit:',
        '      name: specific',
        '      unit: second',
        '      requests_per_unit: 5',
        '  - key: b',
        '    rate_limit:',
        '      replaces:',
        '        - name: specific',
        '        - name: other',
        '      unit: second',
        '      requests_per_unit: 10',
      ),
    );
    assert.deepEqual(
      [topNode(domain, 'a').rule, topNode(domain, 'b').rule].map((rule) => ({
        name: rule?.name,
        replaces: rule?.replaces,
      })),
      [
        { name: 'specific', replaces: [] },
        { name: undefined, replaces: ['specific', 'other'] },
      ],
    );
  });

  test('shadow_mode, quota_mode and detailed_metric (beside rate_limit) are kept on the rule', () => {
    const rule = topNode(
      domainOf(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    shadow_mode: true',
          '    quota_mode: true',
          '    detailed_metric: true',
          '    rate_limit: {unit: second, requests_per_unit: 1}',
        ),
      ),
      'k',
    ).rule;
    assert.deepEqual(
      { shadow: rule?.shadowMode, quota: rule?.quotaMode, detailed: rule?.detailedMetric },
      { shadow: true, quota: true, detailed: true },
    );
  });

  test('value_to_metric and share_threshold are kept on the descriptor', () => {
    const node = topNode(
      domainOf(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: files',
          '    value: files/*',
          '    share_threshold: true',
          '    value_to_metric: true',
          '    rate_limit: {unit: hour, requests_per_unit: 10}',
        ),
      ),
      'files',
      'files/*',
    );
    assert.deepEqual(
      { share: node.shareThreshold, valueToMetric: node.valueToMetric },
      { share: true, valueToMetric: true },
    );
  });

  test('booleans accept the YAML 1.1 words envoyproxy/ratelimit’s parser accepts', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - {key: a, shadow_mode: yes, rate_limit: {unit: second, requests_per_unit: 1}}',
        '  - {key: b, shadow_mode: On, rate_limit: {unit: second, requests_per_unit: 1}}',
        '  - {key: c, shadow_mode: False, rate_limit: {unit: second, requests_per_unit: 1}}',
      ),
    );
    assert.deepEqual(
      ['a', 'b', 'c'].map((key) => topNode(domain, key).rule?.shadowMode),
      [true, true, false],
    );
  });

  test('metadata is kept as JSON with YAML’s scalar types', () => {
    const rule = topNode(
      domainOf(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    rate_limit: {unit: second, requests_per_unit: 1}',
          '    metadata:',
          '      service_with_quota:',
          '        name: service_2',
          '        weight: 3',
          '        share: 0.5',
          '        enabled: true',
          '        quoted: "7"',
          '        tags: [a, b]',
          '        none: null',
        ),
      ),
      'k',
    ).rule;
    assert.deepEqual(rule?.metadata, {
      service_with_quota: {
        name: 'service_2',
        weight: 3,
        share: 0.5,
        enabled: true,
        quoted: '7',
        tags: ['a', 'b'],
        none: null,
      },
    });
  });

  test('anchors, aliases and << merge keys work as in envoyproxy/ratelimit’s YAML parser', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: a',
        '    rate_limit: &per_minute',
        '      unit: minute',
        '      requests_per_unit: 10',
        '  - key: b',
        '    rate_limit: *per_minute',
        '  - key: c',
        '    rate_limit:',
        '      <<: *per_minute',
        '      requests_per_unit: 20',
      ),
    );
    assert.deepEqual(
      ['a', 'b', 'c'].map((key) => [
        topNode(domain, key).rule?.unit,
        topNode(domain, key).rule?.requestsPerUnit,
      ]),
      [
        ['minute', 10],
        ['minute', 10],
        ['minute', 20],
      ],
    );
  });

  test('a domain with no descriptors loads and has none', () => {
    assert.equal(domainOf(lines('domain: empty', 'descriptors:')).descriptors.size, 0);
  });

  test('the same key and value may appear in different lists', () => {
    const domain = domainOf(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: a',
        '    descriptors:',
        '      - {key: a, rate_limit: {unit: second, requests_per_unit: 1}}',
        '  - {key: b, value: x, descriptors: [{key: a}]}',
      ),
    );
    assert.equal(topNode(domain, 'a').children.keyOnly.get('a')?.rule?.path, 'd.a.a');
  });

  test('files of different domains load side by side', () => {
    const config = buildEnvoyConfig([
      { name: 'a.yaml', text: BASIC },
      { name: 'b.yaml', text: BASIC.replace('domain: shop', 'domain: other') },
    ]);
    assert.deepEqual([...config.domains.keys()].sort(), ['other', 'shop']);
  });
});

describe('Envoy config: rejected with file, line and reason', () => {
  test('a YAML syntax error', () => {
    const [problem] = problemsOfText(lines('domain: d', 'descriptors:', '  - key: a: b'));
    assert.match(problem ?? '', /^rules\.yaml:3:\d+ YAML syntax: /);
  });

  test('a mapping with the same key twice', () => {
    const [problem] = problemsOfText(lines('domain: d', 'domain: e'));
    assert.match(problem ?? '', /^rules\.yaml:2:1 YAML syntax: .*unique/);
  });

  test('an empty file', () => {
    assert.deepEqual(problemsOfText(''), [
      'rules.yaml:1:1 the file is empty; it needs a domain and its descriptors',
    ]);
  });

  test('a file that is not a mapping', () => {
    assert.deepEqual(problemsOfText(lines('- domain: d')), [
      'rules.yaml:1:1 must be a mapping with a domain and its descriptors',
    ]);
  });

  test('a missing domain', () => {
    assert.deepEqual(problemsOfText(lines('descriptors:', '  - key: a')), [
      'rules.yaml:1:1 domain: is required and cannot be empty',
    ]);
  });

  test('an empty domain', () => {
    assert.deepEqual(problemsOfText(lines('domain: ""', 'descriptors: []')), [
      'rules.yaml:1:1 domain: is required and cannot be empty',
    ]);
  });

  test('a domain defined by two files, at the second, naming the first', () => {
    assert.deepEqual(
      problemsOf([
        { name: 'b.yaml', text: lines('# the second', 'domain: shop') },
        { name: 'a.yaml', text: BASIC },
      ]),
      ['b.yaml:2:9 domain: duplicate domain "shop": a.yaml:1 defines it already'],
    );
  });

  test('an unknown key at the top', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptor: []')), [
      'rules.yaml:2:1 descriptor: unknown key; expected one of: domain, descriptors',
    ]);
  });

  test('an unknown key in a descriptor (ratelimit for rate_limit)', () => {
    const [problem] = problemsOfText(
      lines(
        'domain: d',
        'descriptors:',
        '  - key: k',
        '    ratelimit:',
        '      unit: day',
        '      requests_per_unit: 5',
      ),
    );
    assert.match(
      problem ?? '',
      /^rules\.yaml:4:5 descriptors\[0\]\.ratelimit: unknown key; expected one of: key, value, rate_limit/,
    );
  });

  test('an unknown key in a rate_limit (requestsperunit), which also leaves requests_per_unit missing', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    rate_limit:',
          '      unit: day',
          '      requestsperunit: 5',
        ),
      ),
      [
        'rules.yaml:5:7 descriptors[0].rate_limit.requests_per_unit: is required (0 refuses every request)',
        'rules.yaml:6:7 descriptors[0].rate_limit.requestsperunit: unknown key; expected one of: unit, requests_per_unit, unlimited, name, replaces',
      ],
    );
  });

  test('a key that rate_limit knows but a descriptor does not (requests_per_unit outside rate_limit)', () => {
    const [problem] = problemsOfText(
      lines('domain: d', 'descriptors:', '  - key: k', '    requests_per_unit: 5'),
    );
    assert.match(problem ?? '', /^rules\.yaml:4:5 descriptors\[0\]\.requests_per_unit: unknown key/);
  });

  test('descriptors that are not a list', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptors:', '  key: k')), [
      'rules.yaml:3:3 descriptors: must be a list of descriptors',
    ]);
  });

  test('a list item that is not a mapping', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptors:', '  - a')), [
      'rules.yaml:3:5 descriptors[0]: must be a mapping with a key',
    ]);
  });

  test('a descriptor without a key', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptors:', '  - value: value1')), [
      'rules.yaml:3:5 descriptors[0].key: every descriptor needs a non-empty key',
    ]);
  });

  test('a descriptor with an empty key', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptors:', '  - key: ""')), [
      'rules.yaml:3:5 descriptors[0].key: every descriptor needs a non-empty key',
    ]);
  });

  test('a key that is a mapping', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptors:', '  - key: {a: b}')), [
      'rules.yaml:3:10 descriptors[0].key: must be a string, not a mapping',
    ]);
  });

  test('the same key and value twice in one list, naming the first line', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: key1',
          '    value: value1',
          '',
          '  - key: key1',
          '    value: value1',
        ),
      ),
      [
        'rules.yaml:6:5 descriptors[1].key: duplicate descriptor: key "key1" with value "value1" is already at line 3 of this list',
      ],
    );
  });

  test('the same key twice without a value in one list (an empty value counts as none)', () => {
    assert.deepEqual(
      problemsOfText(lines('domain: d', 'descriptors:', '  - key: k', '  - key: k', '    value: ""')),
      [
        'rules.yaml:4:5 descriptors[1].key: duplicate descriptor: key "k" without a value is already at line 3 of this list',
      ],
    );
  });

  test('an invalid unit', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    rate_limit:',
          '      unit: foo',
          '      requests_per_unit: 5',
        ),
      ),
      [
        'rules.yaml:5:13 descriptors[0].rate_limit.unit: invalid unit "foo"; expected one of second, minute, hour, day, week, month, year',
      ],
    );
  });

  test('a missing unit', () => {
    assert.deepEqual(
      problemsOfText(
        lines('domain: d', 'descriptors:', '  - key: k', '    rate_limit:', '      requests_per_unit: 5'),
      ),
      [
        'rules.yaml:5:7 descriptors[0].rate_limit.unit: is required: one of second, minute, hour, day, week, month, year',
      ],
    );
  });

  test('a missing requests_per_unit', () => {
    assert.deepEqual(
      problemsOfText(
        lines('domain: d', 'descriptors:', '  - key: k', '    rate_limit:', '      unit: second'),
      ),
      ['rules.yaml:5:7 descriptors[0].rate_limit.requests_per_unit: is required (0 refuses every request)'],
    );
  });

  for (const [written, why] of [
    ['-1', 'negative'],
    ['1.5', 'a fraction'],
    ['4294967296', 'over 2^32 - 1'],
    ['"5"', 'quoted'],
    ['05', 'octal-looking'],
    ['five', 'a word'],
  ] as const) {
    test(`requests_per_unit that is ${why} (${written})`, () => {
      const [problem] = problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    rate_limit:',
          '      unit: second',
          `      requests_per_unit: ${written}`,
        ),
      );
      assert.match(
        problem ?? '',
        /^rules\.yaml:6:26 descriptors\[0\]\.rate_limit\.requests_per_unit: must be a whole number from 0 to 4294967295/,
      );
    });
  }

  test('an unlimited rate_limit with a unit', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: foo',
          '    rate_limit:',
          '      unlimited: true',
          '      unit: day',
        ),
      ),
      ['rules.yaml:6:7 descriptors[0].rate_limit.unit: an unlimited rate_limit takes no unit'],
    );
  });

  test('an unlimited rate_limit with requests_per_unit', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: foo',
          '    rate_limit:',
          '      unlimited: true',
          '      requests_per_unit: 25',
        ),
      ),
      [
        'rules.yaml:6:7 descriptors[0].rate_limit.requests_per_unit: an unlimited rate_limit takes no requests_per_unit',
      ],
    );
  });

  test('an empty rate_limit', () => {
    const [problem] = problemsOfText(lines('domain: d', 'descriptors:', '  - key: k', '    rate_limit:'));
    assert.match(
      problem ?? '',
      /^rules\.yaml:4:5 descriptors\[0\]\.rate_limit: is empty: give unit and requests_per_unit, or unlimited: true/,
    );
  });

  test('a replaces entry without a name', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    rate_limit:',
          '      name: self',
          '      replaces:',
          '        - name:',
          '      unit: second',
          '      requests_per_unit: 5',
        ),
      ),
      ['rules.yaml:7:11 descriptors[0].rate_limit.replaces[0].name: every replaces entry needs a name'],
    );
  });

  test('a rule that replaces itself', () => {
    assert.deepEqual(
      problemsOfText(
        lines(
          'domain: d',
          'descriptors:',
          '  - key: k',
          '    rate_limit:',
          '      name: self',
          '      replaces:',
          '        - name: self',
          '      unit: second',
          '      requests_per_unit: 5',
        ),
      ),
      ['rules.yaml:7:17 descriptors[0].rate_limit.replaces[0].name: a rule cannot replace itself'],
    );
  });

  test('share_threshold on a value without a wildcard', () => {
    assert.deepEqual(
      problemsOfText(
        lines('domain: d', 'descriptors:', '  - key: files', '    value: files', '    share_threshold: true'),
      ),
      [
        'rules.yaml:5:5 descriptors[0].share_threshold: applies only to a descriptor whose value is a wildcard (holds a *)',
      ],
    );
  });

  test('a boolean that is neither true nor false', () => {
    assert.deepEqual(
      problemsOfText(lines('domain: d', 'descriptors:', '  - key: k', '    shadow_mode: maybe')),
      ['rules.yaml:4:18 descriptors[0].shadow_mode: must be true or false, not "maybe"'],
    );
  });

  test('metadata that is not a mapping', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', 'descriptors:', '  - key: k', '    metadata: [a]')), [
      'rules.yaml:4:15 descriptors[0].metadata: must be a mapping',
    ]);
  });

  test('a key that is not a string', () => {
    assert.deepEqual(problemsOfText(lines('domain: d', '? [a]', ': b')), [
      'rules.yaml:2:3 keys must be plain strings',
    ]);
  });

  test('every problem of every file is listed, in file and line order', () => {
    assert.deepEqual(
      problemsOf([
        {
          name: 'b.yaml',
          text: lines(
            'domain: b',
            'descriptors:',
            '  - key: k',
            '    rate_limit: {unit: fortnight, requests_per_unit: 1}',
          ),
        },
        {
          name: 'a.yaml',
          text: lines('domain: a', 'descriptors:', '  - key: k', '    shadow_mode: maybe', '  - value: v'),
        },
      ]),
      [
        'a.yaml:4:18 descriptors[0].shadow_mode: must be true or false, not "maybe"',
        'a.yaml:5:5 descriptors[1].key: every descriptor needs a non-empty key',
        'b.yaml:4:24 descriptors[0].rate_limit.unit: invalid unit "fortnight"; expected one of second, minute, hour, day, week, month, year',
      ],
    );
  });

  test('aliases that would expand without bound', () => {
    const bomb = lines(
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]',
      'domain: d',
    );
    const [problem] = problemsOfText(bomb);
    assert.match(problem ?? '', /^rules\.yaml:1:1 YAML: /);
  });
});

describe('Envoy config: a directory of files', () => {
  async function withDirectory(run: (dir: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-envoy-config-'));
    try {
      await run(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  test('loads every *.yaml and *.yml file, and follows symbolic links', async () => {
    await withDirectory(async (dir) => {
      await writeFile(join(dir, 'a.yaml'), BASIC.replace('shop', 'a'));
      await writeFile(join(dir, 'b.yml'), BASIC.replace('shop', 'b'));
      await mkdir(join(dir, '..data'));
      await writeFile(join(dir, '..data', 'c.yaml'), BASIC.replace('shop', 'c'));
      await symlink(join('..data', 'c.yaml'), join(dir, 'c.yaml'));
      const config = await loadEnvoyConfigDirectory(dir);
      assert.deepEqual([...config.domains.keys()].sort(), ['a', 'b', 'c']);
    });
  });

  test('ignores hidden files, other extensions and subdirectories', async () => {
    await withDirectory(async (dir) => {
      await writeFile(join(dir, '.a.yaml.swp'), 'not yaml: [');
      await writeFile(join(dir, '.hidden.yaml'), 'not yaml: [');
      await writeFile(join(dir, 'notes.txt'), 'not yaml: [');
      await mkdir(join(dir, 'nested.yaml'));
      await writeFile(join(dir, 'shop.yaml'), BASIC);
      const config = await loadEnvoyConfigDirectory(dir);
      assert.deepEqual([...config.domains.keys()], ['shop']);
    });
  });

  test('an empty directory is a configuration without domains', async () => {
    await withDirectory(async (dir) => {
      assert.equal((await loadEnvoyConfigDirectory(dir)).domains.size, 0);
    });
  });

  test('names the file in its errors by the directory it was given', async () => {
    await withDirectory(async (dir) => {
      await writeFile(join(dir, 'bad.yaml'), lines('domain: d', 'descriptors:', '  - value: v'));
      await assert.rejects(loadEnvoyConfigDirectory(dir), {
        name: 'EnvoyConfigError',
        message: `${join(dir, 'bad.yaml')}:3:5 descriptors[0].key: every descriptor needs a non-empty key`,
      });
    });
  });

  test('a missing directory is an EnvoyConfigError naming it', async () => {
    const dir = join(tmpdir(), 'quotad-no-such-envoy-config');
    await assert.rejects(loadEnvoyConfigDirectory(dir), (error: unknown) => {
      assert.ok(error instanceof EnvoyConfigError);
      assert.match(
        error.message,
        new RegExp(`^${dir} cannot read the Envoy configuration directory: ENOENT`),
      );
      return true;
    });
  });
});
