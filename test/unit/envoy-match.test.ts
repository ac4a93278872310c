import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EnvoyConfig } from '../../src/envoy/config.js';
import { buildEnvoyConfig } from '../../src/envoy/load-config.js';
import type { DescriptorMatch, LimitOverride, RequestDescriptor } from '../../src/envoy/match.js';
import { matchDescriptors } from '../../src/envoy/match.js';

function configOf(...files: string[]): EnvoyConfig {
  return buildEnvoyConfig(files.map((text, index) => ({ name: `file${index}.yaml`, text })));
}

function descriptor(...entries: [string, string][]): RequestDescriptor {
  return { entries: entries.map(([key, value]) => ({ key, value })) };
}

function matchAll(
  config: EnvoyConfig,
  descriptors: RequestDescriptor[],
  domain = 'd',
  hitsAddend?: number,
): DescriptorMatch[] {
  return matchDescriptors(config, { domain, descriptors, hitsAddend });
}

function matchOne(config: EnvoyConfig, ...entries: [string, string][]): DescriptorMatch {
  const [match] = matchAll(config, [descriptor(...entries)]);
  assert.ok(match);
  return match;
}

/** requests_per_unit of the rule a descriptor resolves to, or the kind when no limit applies. */
function limitOf(match: DescriptorMatch): number | string {
  return match.kind === 'limited' ? match.requestsPerUnit : match.kind;
}

function counterKeyOf(match: DescriptorMatch): string {
  if (match.kind !== 'limited') return assert.fail(`a limit applies, not ${match.kind}`);
  return match.counterKey;
}

function metricNameOf(match: DescriptorMatch): string {
  if (match.kind === 'no_limit') return assert.fail('a rule matched');
  return match.metricName;
}

function rule(requestsPerUnit: number, unit = 'minute'): string {
  return `{unit: ${unit}, requests_per_unit: ${requestsPerUnit}}`;
}

const ORDER = configOf(`
domain: d
descriptors:
  - {key: k, rate_limit: ${rule(3)}}
  - {key: k, value: fo*, rate_limit: ${rule(2)}}
  - {key: k, value: foo, rate_limit: ${rule(1)}}
`);

describe('Envoy match: which rule a descriptor resolves to', () => {
  test('an unknown domain applies no limit to any descriptor', () => {
    assert.deepEqual(
      matchAll(ORDER, [descriptor(['k', 'foo']), descriptor(['k', 'bar'])], 'other').map(
        (match) => match.kind === 'no_limit' && match.reason,
      ),
      ['unknown_domain', 'unknown_domain'],
    );
  });

  test('a descriptor that matches no rule applies no limit', () => {
    const match = matchOne(ORDER, ['other', 'foo']);
    assert.deepEqual(match, { kind: 'no_limit', reason: 'no_rule', hits: 1 });
  });

  test('an exact value wins over a wildcard, wherever it stands in the file', () => {
    assert.equal(limitOf(matchOne(ORDER, ['k', 'foo'])), 1);
  });

  test('a wildcard wins over the key alone', () => {
    assert.equal(limitOf(matchOne(ORDER, ['k', 'fox'])), 2);
  });

  test('the key alone matches any other value', () => {
    assert.equal(limitOf(matchOne(ORDER, ['k', 'bar'])), 3);
  });

  test('keys are case-sensitive', () => {
    assert.equal(limitOf(matchOne(ORDER, ['K', 'foo'])), 'no_limit');
  });

  test('among wildcards of one key, the first in the file that matches wins', () => {
    const config = configOf(`
domain: d
descriptors:
  - {key: k, value: a*, rate_limit: ${rule(1)}}
  - {key: k, value: ab*, rate_limit: ${rule(2)}}
`);
    assert.equal(limitOf(matchOne(config, ['k', 'abc'])), 1);
  });

  test('a trailing wildcard matches any value with its prefix, and the prefix itself', () => {
    const config = configOf(`domain: d\ndescriptors:\n  - {key: k, value: foo*, rate_limit: ${rule(1)}}\n`);
    assert.deepEqual(
      ['foo', 'foo1', 'fooXYZ', 'fo', 'bar'].map((value) => limitOf(matchOne(config, ['k', value]))),
      [1, 1, 1, 'no_limit', 'no_limit'],
    );
  });

  test('a middle wildcard needs the prefix and the suffix, without overlap', () => {
    const config = configOf(
      `domain: d\ndescriptors:\n  - {key: k, value: "/api/*/action", rate_limit: ${rule(1)}}\n  - {key: o, value: "ab*ba", rate_limit: ${rule(1)}}\n`,
    );
    assert.deepEqual(
      [
        ['k', '/api/123/action'],
        ['k', '/api//action'],
        ['k', '/api/123/other'],
        ['k', 'x/api/1/action'],
        ['o', 'abba'],
        ['o', 'aba'],
      ].map(([key, value]) => limitOf(matchOne(config, [key as string, value as string]))),
      [1, 1, 'no_limit', 'no_limit', 1, 'no_limit'],
    );
  });

  test('several wildcards match their parts in order', () => {
    const config = configOf(
      `domain: d\ndescriptors:\n  - {key: k, value: "foo*bar*baz", rate_limit: ${rule(1)}}\n`,
    );
    assert.deepEqual(
      ['foo123bar456baz', 'foobarbaz', 'foo123baz', 'bar456baz', 'foobazbar'].map((value) =>
        limitOf(matchOne(config, ['k', value])),
      ),
      [1, 1, 'no_limit', 'no_limit', 'no_limit'],
    );
  });

  test('a value without * matches only itself', () => {
    const config = configOf(`domain: d\ndescriptors:\n  - {key: k, value: foo, rate_limit: ${rule(1)}}\n`);
    assert.equal(limitOf(matchOne(config, ['k', 'foo1'])), 'no_limit');
  });

  test('an empty request value matches the key alone, or a wildcard that allows nothing before and after', () => {
    const keyOnly = configOf(`domain: d\ndescriptors:\n  - {key: k, rate_limit: ${rule(1)}}\n`);
    const star = configOf(
      `domain: d\ndescriptors:\n  - {key: k, value: "*", rate_limit: ${rule(2)}}\n  - {key: k, rate_limit: ${rule(1)}}\n`,
    );
    assert.deepEqual([limitOf(matchOne(keyOnly, ['k', ''])), limitOf(matchOne(star, ['k', '']))], [1, 2]);
  });

  test('a descriptor without rate_limit and without children applies no limit (it is allowed)', () => {
    const config = configOf(
      `domain: d\ndescriptors:\n  - {key: k, rate_limit: ${rule(1)}}\n  - {key: k, value: vip}\n`,
    );
    assert.deepEqual(
      [limitOf(matchOne(config, ['k', 'vip'])), limitOf(matchOne(config, ['k', 'other']))],
      ['no_limit', 1],
    );
  });

  const NESTED = configOf(`
domain: d
descriptors:
  - key: a
    value: x
    descriptors:
      - {key: b, rate_limit: ${rule(5)}}
  - key: a
    rate_limit: ${rule(9)}
    descriptors:
      - {key: c, rate_limit: ${rule(7)}}
`);

  test('nested descriptors match one level per entry', () => {
    assert.deepEqual(
      [limitOf(matchOne(NESTED, ['a', 'x'], ['b', '1'])), limitOf(matchOne(NESTED, ['a', 'y'], ['c', '1']))],
      [5, 7],
    );
  });

  test('a request with fewer entries than the configuration nests uses the rule at its last entry’s level', () => {
    assert.deepEqual(
      [limitOf(matchOne(NESTED, ['a', 'x'])), limitOf(matchOne(NESTED, ['a', 'y']))],
      ['no_limit', 9],
    );
  });

  test('a request with more entries than the configuration nests matches nothing', () => {
    assert.equal(limitOf(matchOne(NESTED, ['a', 'x'], ['b', '1'], ['z', '1'])), 'no_limit');
  });

  test('matching never backtracks: an exact value whose children do not match does not fall back to the key alone', () => {
    assert.equal(limitOf(matchOne(NESTED, ['a', 'x'], ['c', '1'])), 'no_limit');
  });

  test('a descriptor with no entries matches nothing', () => {
    assert.equal(limitOf(matchAll(NESTED, [{ entries: [] }])[0]!), 'no_limit');
  });

  test('each descriptor of a request is resolved on its own, in request order', () => {
    assert.deepEqual(
      matchAll(NESTED, [
        descriptor(['a', 'y']),
        descriptor(['nothing', '1']),
        descriptor(['a', 'x'], ['b', '2']),
      ]).map(limitOf),
      [9, 'no_limit', 5],
    );
  });
});

describe('Envoy match: what applies once a rule is found', () => {
  const RULES = configOf(`
domain: d
descriptors:
  - {key: per_second, rate_limit: ${rule(10, 'second')}}
  - {key: per_day, rate_limit: {unit: DAY, requests_per_unit: 100, name: daily}}
  - {key: blocked, rate_limit: ${rule(0)}}
  - {key: ldap, rate_limit: {unlimited: true}}
  - {key: soft, shadow_mode: true, rate_limit: ${rule(1)}}
  - {key: quota, quota_mode: true, rate_limit: ${rule(1)}}
`);

  test('a rule applies its requests per unit over a window of one unit', () => {
    const [second, day] = [matchOne(RULES, ['per_second', 'a']), matchOne(RULES, ['per_day', 'a'])];
    assert.deepEqual(
      [second, day].map(
        (match) =>
          match.kind === 'limited' && [match.requestsPerUnit, match.unit, match.windowMs, match.name],
      ),
      [
        [10, 'second', 1_000, undefined],
        [100, 'day', 86_400_000, 'daily'],
      ],
    );
  });

  test('requests_per_unit 0 is a limit of 0 (every request over)', () => {
    const match = matchOne(RULES, ['blocked', 'a']);
    assert.deepEqual(match.kind === 'limited' && match.requestsPerUnit, 0);
  });

  test('an unlimited rule is unlimited: never counted', () => {
    const match = matchOne(RULES, ['ldap', 'a']);
    assert.deepEqual([match.kind, match.kind === 'unlimited' && match.metricName], ['unlimited', 'd.ldap']);
  });

  test('shadow_mode marks the descriptor shadow; other rules are not', () => {
    const [soft, hard] = [matchOne(RULES, ['soft', 'a']), matchOne(RULES, ['per_second', 'a'])];
    assert.deepEqual(
      [soft, hard].map((match) => match.kind === 'limited' && match.shadow),
      [true, false],
    );
  });

  test('quota_mode passes through to the match', () => {
    const match = matchOne(RULES, ['quota', 'a']);
    assert.equal(match.kind === 'limited' && match.quotaMode, true);
  });

  test('each descriptor charges 1 hit when the request gives no hits_addend, or 0', () => {
    assert.deepEqual(
      [undefined, 0].map(
        (hitsAddend) => matchAll(RULES, [descriptor(['per_second', 'a'])], 'd', hitsAddend)[0]?.hits,
      ),
      [1, 1],
    );
  });

  test('the request’s hits_addend charges every descriptor that many hits, matched or not', () => {
    assert.deepEqual(
      matchAll(RULES, [descriptor(['per_second', 'a']), descriptor(['none', 'a'])], 'd', 7).map(
        (match) => match.hits,
      ),
      [7, 7],
    );
  });

  test('a descriptor’s own hits_addend wins over the request’s, and 0 charges nothing', () => {
    const matches = matchAll(
      RULES,
      [
        { ...descriptor(['per_second', 'a']), hitsAddend: 0 },
        { ...descriptor(['per_second', 'b']), hitsAddend: 1200 },
        descriptor(['per_second', 'c']),
      ],
      'd',
      3,
    );
    assert.deepEqual(
      matches.map((match) => match.hits),
      [0, 1200, 3],
    );
  });
});

describe('Envoy match: the limit override a descriptor may carry', () => {
  const OVERRIDE: LimitOverride = { requestsPerUnit: 42, unit: 'hour' };
  const CONFIG = configOf(`
domain: d
descriptors:
  - key: k
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 5, name: named}
  - {key: free, rate_limit: {unlimited: true}}
  - {key: replacer, rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: named}]}}
`);

  test('replaces the configured rule: its limit and unit, not shadow, no name', () => {
    const [match] = matchAll(CONFIG, [{ ...descriptor(['k', 'v']), limit: OVERRIDE }]);
    assert.deepEqual(
      match?.kind === 'limited' && {
        override: match.override,
        requestsPerUnit: match.requestsPerUnit,
        windowMs: match.windowMs,
        shadow: match.shadow,
        name: match.name,
        rule: match.rule,
      },
      {
        override: true,
        requestsPerUnit: 42,
        windowMs: 3_600_000,
        shadow: false,
        name: undefined,
        rule: undefined,
      },
    );
  });

  test('applies where no rule matches, and where the rule is unlimited', () => {
    const matches = matchAll(CONFIG, [
      { ...descriptor(['unknown', 'v']), limit: OVERRIDE },
      { ...descriptor(['free', 'v']), limit: OVERRIDE },
    ]);
    assert.deepEqual(matches.map(limitOf), [42, 42]);
  });

  test('does not apply in an unknown domain', () => {
    const [match] = matchAll(CONFIG, [{ ...descriptor(['k', 'v']), limit: OVERRIDE }], 'unknown');
    assert.equal(limitOf(match!), 'no_limit');
  });

  test('is never replaced', () => {
    const matches = matchAll(CONFIG, [
      { ...descriptor(['k', 'v']), limit: OVERRIDE },
      descriptor(['replacer', 'v']),
    ]);
    assert.deepEqual(matches.map(limitOf), [42, 1]);
  });

  test('counts per value of every entry, and names its metric by keys only', () => {
    const [a, b] = matchAll(CONFIG, [
      { ...descriptor(['k', 'v'], ['user', 'alice']), limit: OVERRIDE },
      { ...descriptor(['k', 'v'], ['user', 'bob']), limit: OVERRIDE },
    ]);
    assert.deepEqual(
      [a, b].map((match) => [counterKeyOf(match!), metricNameOf(match!)]),
      [
        ['[["k","v"],["user","alice"]]', 'd.k.user'],
        ['[["k","v"],["user","bob"]]', 'd.k.user'],
      ],
    );
  });
});

describe('Envoy match: replaces', () => {
  const CONFIG = configOf(`
domain: d
descriptors:
  - {key: read, rate_limit: {name: reads, unit: second, requests_per_unit: 100}}
  - {key: endpoint, rate_limit: {replaces: [{name: reads}], unit: second, requests_per_unit: 500}}
  - {key: ldap, rate_limit: {unlimited: true, replaces: [{name: reads}]}}
  - {key: unlimited_named, rate_limit: {unlimited: true, name: open}}
  - {key: opener, rate_limit: {replaces: [{name: open}], unit: second, requests_per_unit: 1}}
  - {key: x, rate_limit: {name: x, replaces: [{name: y}], unit: second, requests_per_unit: 1}}
  - {key: y, rate_limit: {name: y, replaces: [{name: x}], unit: second, requests_per_unit: 1}}
`);

  test('a rule whose name another matched rule replaces is dropped, and the replacer applies', () => {
    const matches = matchAll(CONFIG, [descriptor(['read', 'a']), descriptor(['endpoint', 'a'])]);
    assert.deepEqual(
      matches.map((match) => match.kind),
      ['replaced', 'limited'],
    );
  });

  test('a named rule applies when nothing in the request replaces it', () => {
    const matches = matchAll(CONFIG, [descriptor(['read', 'a']), descriptor(['other', 'a'])]);
    assert.deepEqual(matches.map(limitOf), [100, 'no_limit']);
  });

  test('an unlimited rule replaces too', () => {
    const matches = matchAll(CONFIG, [descriptor(['ldap', 'a']), descriptor(['read', 'a'])]);
    assert.deepEqual(
      matches.map((match) => match.kind),
      ['unlimited', 'replaced'],
    );
  });

  test('an unlimited rule is never replaced', () => {
    const matches = matchAll(CONFIG, [descriptor(['unlimited_named', 'a']), descriptor(['opener', 'a'])]);
    assert.deepEqual(
      matches.map((match) => match.kind),
      ['unlimited', 'limited'],
    );
  });

  test('two rules that replace each other both drop', () => {
    const matches = matchAll(CONFIG, [descriptor(['x', 'a']), descriptor(['y', 'a'])]);
    assert.deepEqual(
      matches.map((match) => match.kind),
      ['replaced', 'replaced'],
    );
  });

  test('a replaced rule keeps its rule and metric name for reporting, and charges its hits nowhere', () => {
    const [match] = matchAll(CONFIG, [descriptor(['read', 'a']), descriptor(['endpoint', 'a'])]);
    assert.deepEqual(match?.kind === 'replaced' && [match.rule.name, match.metricName], ['reads', 'd.read']);
  });
});

describe('Envoy match: counters', () => {
  const CONFIG = configOf(`
domain: d
descriptors:
  - {key: user, rate_limit: ${rule(10)}}
  - {key: files, value: files/*, share_threshold: true, rate_limit: ${rule(10, 'hour')}}
  - {key: isolated, value: files/*, rate_limit: ${rule(10, 'hour')}}
  - key: path
    value: path/*
    share_threshold: true
    descriptors:
      - key: file
        value: file/*
        descriptors:
          - {key: type, rate_limit: ${rule(120)}}
`);

  test('a key-only rule counts each value apart', () => {
    assert.notEqual(
      counterKeyOf(matchOne(CONFIG, ['user', 'alice'])),
      counterKeyOf(matchOne(CONFIG, ['user', 'bob'])),
    );
  });

  test('the counter is the descriptor’s entries with the request’s values', () => {
    assert.equal(counterKeyOf(matchOne(CONFIG, ['user', 'alice'])), '[["user","alice"]]');
  });

  test('a share_threshold wildcard counts every value it matches in one counter', () => {
    assert.deepEqual(
      ['files/a.pdf', 'files/b.csv'].map((value) => counterKeyOf(matchOne(CONFIG, ['files', value]))),
      ['[["files","files/*"]]', '[["files","files/*"]]'],
    );
  });

  test('a wildcard without share_threshold counts each value apart', () => {
    assert.deepEqual(
      ['files/a.pdf', 'files/b.csv'].map((value) => counterKeyOf(matchOne(CONFIG, ['isolated', value]))),
      ['[["isolated","files/a.pdf"]]', '[["isolated","files/b.csv"]]'],
    );
  });

  test('share_threshold shares only its own level: other entries keep their values', () => {
    const match = matchOne(CONFIG, ['path', 'path/foo'], ['file', 'file/doc1'], ['type', 'pdf']);
    assert.equal(counterKeyOf(match), '[["path","path/*"],["file","file/doc1"],["type","pdf"]]');
  });

  test('entries whose keys or values hold separators cannot collide', () => {
    const config = configOf(
      `domain: d\ndescriptors:\n  - {key: a, descriptors: [{key: b, rate_limit: ${rule(1)}}]}\n  - {key: a_b, rate_limit: ${rule(1)}}\n`,
    );
    assert.notEqual(
      counterKeyOf(matchOne(config, ['a', 'x_b'], ['b', 'y'])),
      counterKeyOf(matchOne(config, ['a', 'x'], ['b', 'b_y'])),
    );
  });
});

describe('Envoy match: metric names (bounded by the configuration unless it asks for values)', () => {
  test('a key-only rule is named by its key, whatever the value', () => {
    const config = configOf(`domain: d\ndescriptors:\n  - {key: user, rate_limit: ${rule(1)}}\n`);
    assert.deepEqual(
      ['alice', 'bob'].map((value) => metricNameOf(matchOne(config, ['user', value]))),
      ['d.user', 'd.user'],
    );
  });

  test('a rule with a value is named by its key and value', () => {
    const config = configOf(
      `domain: d\ndescriptors:\n  - {key: database, value: users, rate_limit: ${rule(1)}}\n`,
    );
    assert.equal(metricNameOf(matchOne(config, ['database', 'users'])), 'd.database_users');
  });

  test('a wildcard is named by its pattern, with value_to_metric by the value', () => {
    const config = configOf(`
domain: d
descriptors:
  - {key: plain, value: foo*, rate_limit: ${rule(1)}}
  - {key: valued, value: foo*, value_to_metric: true, rate_limit: ${rule(1)}}
`);
    assert.deepEqual(
      [metricNameOf(matchOne(config, ['plain', 'foo1'])), metricNameOf(matchOne(config, ['valued', 'foo1']))],
      ['d.plain_foo*', 'd.valued_foo1'],
    );
  });

  test('value_to_metric names a key-only level by the value, and by the key alone when the value is empty', () => {
    const config = configOf(`
domain: d
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        descriptors:
          - {key: subject, rate_limit: ${rule(1)}}
`);
    assert.deepEqual(
      [
        metricNameOf(matchOne(config, ['route', 'api'], ['method', 'GET'], ['subject', '123'])),
        metricNameOf(matchOne(config, ['route', ''], ['method', 'GET'], ['subject', '123'])),
      ],
      ['d.route_api.method.subject', 'd.route.method.subject'],
    );
  });

  test('share_threshold names its level by the pattern, even with value_to_metric', () => {
    const config = configOf(`
domain: d
descriptors:
  - key: route
    value: api/*
    share_threshold: true
    value_to_metric: true
    descriptors:
      - {key: method, rate_limit: ${rule(60)}}
`);
    assert.equal(
      metricNameOf(matchOne(config, ['route', 'api/v1'], ['method', 'GET'])),
      'd.route_api/*.method',
    );
  });

  test('detailed_metric names every level by the request’s values, over value_to_metric', () => {
    const config = configOf(`
domain: d
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - {key: subject, detailed_metric: true, rate_limit: ${rule(60)}}
`);
    assert.equal(
      metricNameOf(matchOne(config, ['route', 'draw'], ['subject', '123'])),
      'd.route_draw.subject_123',
    );
  });

  test('detailed_metric keeps a shared level’s pattern', () => {
    const config = configOf(`
domain: d
descriptors:
  - key: service
    value: svc/*
    share_threshold: true
    descriptors:
      - {key: endpoint, detailed_metric: true, rate_limit: ${rule(80)}}
`);
    assert.equal(
      metricNameOf(matchOne(config, ['service', 'svc/user'], ['endpoint', 'get'])),
      'd.service_svc/*.endpoint_get',
    );
  });

  test('detailed_metric is the matched rule’s: a parent’s flag does not name a child rule by values', () => {
    const config = configOf(`
domain: d
descriptors:
  - key: k1
    detailed_metric: true
    rate_limit: ${rule(100)}
    descriptors:
      - {key: k2, rate_limit: ${rule(5)}}
`);
    assert.deepEqual(
      [
        metricNameOf(matchOne(config, ['k1', 'v1'])),
        metricNameOf(matchOne(config, ['k1', 'v1'], ['k2', 'v2'])),
      ],
      ['d.k1_v1', 'd.k1.k2'],
    );
  });
});
