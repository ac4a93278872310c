import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { EnvoyConfig } from '../../src/envoy/config.js';
import { buildEnvoyConfig, loadEnvoyConfigDirectory } from '../../src/envoy/load-config.js';
import type { DescriptorMatch, RequestDescriptor } from '../../src/envoy/match.js';
import { matchDescriptors } from '../../src/envoy/match.js';

// The examples of envoyproxy/ratelimit's README, each file unchanged but for a first comment line naming it.
// Examples 4 and 9 show more than one configuration of one domain; the others are in readme-alternates/.
const FIXTURES = new URL('../../../test/fixtures/envoy/', import.meta.url);
const README_DIR = fileURLToPath(new URL('readme/', FIXTURES));

async function alternate(fileName: string): Promise<EnvoyConfig> {
  const url = new URL(`readme-alternates/${fileName}`, FIXTURES);
  return buildEnvoyConfig([{ name: fileName, text: await readFile(url, 'utf8') }]);
}

function descriptor(...entries: [string, string][]): RequestDescriptor {
  return { entries: entries.map(([key, value]) => ({ key, value })) };
}

/** `requests_per_unit/unit` (with ` shadow` when so), `unlimited`, `replaced` or `no limit`. */
function summary(match: DescriptorMatch | undefined): string {
  switch (match?.kind) {
    case 'limited':
      return `${match.requestsPerUnit}/${match.unit}${match.shadow ? ' shadow' : ''}`;
    case 'unlimited':
    case 'replaced':
      return match.kind;
    default:
      return 'no limit';
  }
}

function metricName(match: DescriptorMatch | undefined): string | undefined {
  return match && match.kind !== 'no_limit' ? match.metricName : undefined;
}

function counterKey(match: DescriptorMatch | undefined): string | undefined {
  return match?.kind === 'limited' ? match.counterKey : undefined;
}

describe('the configuration examples of envoyproxy/ratelimit’s README', () => {
  let config: EnvoyConfig;
  const ask = (domain: string, ...descriptors: RequestDescriptor[]) =>
    matchDescriptors(config, { domain, descriptors });
  const one = (domain: string, ...entries: [string, string][]) => ask(domain, descriptor(...entries))[0];

  before(async () => {
    config = await loadEnvoyConfigDirectory(README_DIR);
  });

  test('all load together from one directory, one domain each', () => {
    assert.deepEqual([...config.domains.keys()].sort(), [
      'edge_proxy_per_ip',
      'example10',
      'example10_wildcard',
      'example11',
      'example11_metrics',
      'example4',
      'example6',
      'example7',
      'example8',
      'example9',
      'internal',
      'messaging',
      'mongo_cps',
    ]);
  });

  test('1: database users and default each get 500 requests per second; other databases none', () => {
    assert.deepEqual(
      ['users', 'default', 'orders'].map((value) => summary(one('mongo_cps', ['database', value]))),
      ['500/second', '500/second', 'no limit'],
    );
  });

  test('2: marketing messages get 5 a day per number, each number its own counter', () => {
    const first = one('messaging', ['message_type', 'marketing'], ['to_number', '2061111111']);
    const second = one('messaging', ['message_type', 'marketing'], ['to_number', '2062222222']);
    assert.deepEqual(
      [summary(first), summary(second), counterKey(first) === counterKey(second)],
      ['5/day', '5/day', false],
    );
  });

  test('2: any number gets 100 messages a day', () => {
    assert.equal(summary(one('messaging', ['to_number', '2061111111'])), '100/day');
  });

  test('2: one request with both descriptors is limited by both rules', () => {
    const matches = ask(
      'messaging',
      descriptor(['message_type', 'marketing'], ['to_number', '2061111111']),
      descriptor(['to_number', '2061111111']),
    );
    assert.deepEqual(matches.map(summary), ['5/day', '100/day']);
  });

  test('3: every address gets 10 requests per second, and the blacklisted one 0', () => {
    assert.deepEqual(
      ['50.0.0.1', '50.0.0.5'].map((address) =>
        summary(one('edge_proxy_per_ip', ['remote_address', address])),
      ),
      ['10/second', '0/second'],
    );
  });

  test('4: a two-entry descriptor matches the nested configuration', () => {
    assert.equal(summary(one('example4', ['key', 'value'], ['subkey', 'subvalue'])), '300/second');
  });

  test('4: a two-entry descriptor does not match the configuration with one level', async () => {
    const flat = await alternate('example4-not-nested.yaml');
    const [match] = matchDescriptors(flat, {
      domain: 'example4',
      descriptors: [descriptor(['key', 'value'], ['subkey', 'subvalue'])],
    });
    assert.equal(summary(match), 'no limit');
  });

  test('5: ldap is unlimited and azure gets 100 requests per minute', () => {
    assert.deepEqual(
      [summary(one('internal', ['ldap', 'x'])), summary(one('internal', ['azure', 'x']))],
      ['unlimited', '100/minute'],
    );
  });

  test('6: user-a of a service is limited in shadow mode only; user-b is limited', () => {
    assert.deepEqual(
      ['user-a', 'user-b'].map((user) =>
        summary(one('example6', ['service', 'auth-service'], ['user', user])),
      ),
      ['10/second shadow', '20/second'],
    );
  });

  test('7: each rule applies alone; together the replacing rule applies and the replaced one does not', () => {
    const first = descriptor(['key_1', 'value_1'], ['user', 'bkthomps']);
    const second = descriptor(['key_2', 'value_2'], ['user', 'bkthomps']);
    assert.deepEqual(
      [
        ask('example7', first).map(summary),
        ask('example7', second).map(summary),
        ask('example7', first, second).map(summary),
      ],
      [['5/second'], ['10/second'], ['replaced', '10/second']],
    );
  });

  test('8: unspecified values get 10 per minute and value1 20, with the value in each metric name', () => {
    const matches = ['unspecified_value', 'unspecified_value2', 'value1'].map((value) =>
      one('example8', ['key1', value]),
    );
    assert.deepEqual(
      matches.map((match) => [summary(match), metricName(match)]),
      [
        ['10/minute', 'example8.key1_unspecified_value'],
        ['10/minute', 'example8.key1_unspecified_value2'],
        ['20/minute', 'example8.key1_value1'],
      ],
    );
  });

  test('9: a trailing wildcard matches value1, value2 and valueXYZ', () => {
    assert.deepEqual(
      ['value1', 'value2', 'valueXYZ', 'other'].map((value) => summary(one('example9', ['key1', value]))),
      ['20/minute', '20/minute', '20/minute', 'no limit'],
    );
  });

  test('9: a middle wildcard matches /api/123/action and /api/user-id/action, not /api/123/other', async () => {
    const middle = await alternate('example9-middle.yaml');
    const matches = ['/api/123/action', '/api/user-id/action', '/api/123/other'].map(
      (value) =>
        matchDescriptors(middle, { domain: 'example9', descriptors: [descriptor(['path', value])] })[0],
    );
    assert.deepEqual(matches.map(summary), ['20/minute', '20/minute', 'no limit']);
  });

  test('9: several wildcards match each segment in order', async () => {
    const multiple = await alternate('example9-multiple.yaml');
    const matches = [
      '/api/v1/resource/123/action',
      '/api/v2/resource/456/action',
      '/api/v1/other/123/action',
    ].map(
      (value) =>
        matchDescriptors(multiple, { domain: 'example9', descriptors: [descriptor(['route', value])] })[0],
    );
    assert.deepEqual(matches.map(summary), ['20/minute', '20/minute', 'no limit']);
  });

  test('10: value_to_metric puts route and method values in the metric name, not the subject', () => {
    assert.deepEqual(
      [
        metricName(one('example10', ['route', 'api'], ['http_method', 'GET'], ['subject_id', '123'])),
        metricName(one('example10', ['route', 'web'], ['http_method', 'POST'], ['subject_id', '456'])),
      ],
      ['example10.route_api.http_method_GET.subject_id', 'example10.route_web.http_method_POST.subject_id'],
    );
  });

  test('10: with a wildcard, value_to_metric puts the full value in the metric name', () => {
    assert.equal(
      metricName(
        one('example10_wildcard', ['user', 'alice'], ['action', 'readfile'], ['resource', 'documents']),
      ),
      'example10_wildcard.user_alice.action_readfile.resource',
    );
  });

  test('11: files/* values share one threshold of 10 an hour; files_no_share/* values have one each', () => {
    // The README's scenario: 5 requests for a.pdf and 5 for b.csv, then c.txt; counted per counter key.
    const counts = new Map<string, number>();
    const admit = (key: string, value: string): boolean => {
      const match = one('example11', [key, value]);
      assert.equal(match?.kind, 'limited');
      if (match?.kind !== 'limited') return false;
      const count = (counts.get(match.counterKey) ?? 0) + match.hits;
      if (count > match.requestsPerUnit) return false;
      counts.set(match.counterKey, count);
      return true;
    };
    const shared = [...Array(5).fill('files/a.pdf'), ...Array(5).fill('files/b.csv'), 'files/c.txt'];
    const isolated = [...Array(10).fill('files_no_share/a.pdf'), 'files_no_share/b.csv'];
    assert.deepEqual(
      [
        shared.map((value) => admit('files', value)).at(-1),
        isolated.map((value) => admit('files_no_share', value)).at(-1),
      ],
      [false, true],
    );
  });

  test('11: share_threshold with value_to_metric names the route by its wildcard', () => {
    // The README writes `route_api.method_GET`; envoyproxy/ratelimit's code and tests give the pattern,
    // star included, and no value for a key-only method without value_to_metric. quotad follows the code.
    assert.equal(
      metricName(one('example11_metrics', ['route', 'api/v1'], ['method', 'GET'])),
      'example11_metrics.route_api/*.method',
    );
  });
});
