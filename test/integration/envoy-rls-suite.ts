import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { ManualClock } from '../../src/core/clock.js';
import { startAuthority, type RunningAuthority } from '../../src/main/serve.js';
import { eventually } from '../../harness/eventually.js';
import { healthClient, reflectionClient } from '../../harness/grpc-clients.js';
import {
  descriptor,
  rlsClient,
  type RlsClient,
  type RlsRequest,
  type RlsResponse,
} from '../../harness/rls-client.js';
import { inProcessServeConfig } from '../../harness/serve-config.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/envoy/', import.meta.url));
const DOMAIN = 'rls-test';
const MINUTE = 60_000;
// A day boundary, so every window (second to day) starts at START.
const START = Date.UTC(2026, 0, 5);

export interface RlsSuiteStore {
  name: 'memory' | 'redis';
  /** The serve environment (REDIS_URL for redis). */
  env(): Record<string, string>;
  setUp?(): Promise<void>;
  tearDown?(): Promise<void>;
}

let sequence = 0;
/** A value no other test of the file uses, so tests share one authority without resetting it. */
export function fresh(prefix = 'v'): string {
  sequence += 1;
  return `${prefix}-${process.pid}-${sequence}`;
}

export interface RlsAuthority {
  running: RunningAuthority;
  client: RlsClient;
  address: string;
  logLines: string[];
}

/** Starts `quotad serve` in this process with --envoy-config `dir`, and an RLS client to it. */
export async function startRlsAuthority(
  dir: string,
  env: Record<string, string>,
  clock: ManualClock,
): Promise<RlsAuthority> {
  const logLines: string[] = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const config = inProcessServeConfig(['--envoy-config', dir], { QUOTAD_REDIS_TIMEOUT: '2s', ...env });
  const running = await startAuthority(config, { clock, logDestination });
  const address = `127.0.0.1:${running.grpcPort}`;
  return { running, client: rlsClient(address), address, logLines };
}

/** A config directory of the README examples and the RLS tests' domain, in a temp dir the test may edit. */
export async function configDirectory(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'quotad-envoy-'));
  await cp(join(FIXTURES, 'readme'), dir, { recursive: true });
  await cp(join(FIXTURES, 'quotad', 'rls-test.yaml'), join(dir, 'rls-test.yaml'));
  return dir;
}

function codes(response: RlsResponse): string {
  return [response.overall_code, ...response.statuses.map((s) => s.code)].join(' ');
}

/** Every behaviour of the RLS front over a real socket, on one store. */
export function rlsSuite(store: RlsSuiteStore): void {
  describe(`Envoy's RateLimitService on the ${store.name} store`, () => {
    const clock = new ManualClock(START);
    let dir: string;
    let quotad: RlsAuthority;
    const ask = (request: RlsRequest) => quotad.client.shouldRateLimit(request);
    const one = (entries: [string, string][], hits?: number, domain = DOMAIN) =>
      ask({ domain, descriptors: [descriptor(entries, hits)] });
    /** Answers of `count` calls one after another. */
    const repeat = async (count: number, request: () => Promise<RlsResponse>) => {
      const answers: RlsResponse[] = [];
      for (let i = 0; i < count; i++) answers.push(await request());
      return answers;
    };
    const metric = async (name: string) =>
      (await quotad.running.metrics.registry.getSingleMetricAsString(name)).split('\n');

    before(async () => {
      await store.setUp?.();
      dir = await configDirectory();
      quotad = await startRlsAuthority(dir, store.env(), clock);
    });

    after(async () => {
      quotad.client.close();
      await quotad.running.stop();
      await rm(dir, { recursive: true, force: true });
      await store.tearDown?.();
    });

    test('health reports RateLimitService SERVING and reflection lists it', async () => {
      const health = healthClient(quotad.address);
      const status = await new Promise<string>((resolve, reject) =>
        health.check({ service: 'envoy.service.ratelimit.v3.RateLimitService' }, (error, answer) =>
          error ? reject(error) : resolve((answer as { status: string }).status),
        ),
      );
      health.close();
      assert.equal(status, 'SERVING');
      const reflection = reflectionClient(quotad.address);
      const stream = reflection.ServerReflectionInfo();
      const answers: { list_services_response?: { service: { name: string }[] } }[] = [];
      stream.on('data', (answer) => answers.push(answer));
      const ended = new Promise((resolve) => stream.on('end', resolve));
      stream.write({ list_services: '' });
      stream.end();
      await ended;
      reflection.close();
      const names = answers[0]?.list_services_response?.service.map((s) => s.name) ?? [];
      assert.ok(names.includes('envoy.service.ratelimit.v3.RateLimitService'), names.join(', '));
    });

    test('a key-only descriptor gives each value its own counter: the 4th call of 3/minute is over', async () => {
      const alice = fresh('alice');
      const answers = await repeat(4, () => one([['user', alice]]));
      assert.deepEqual(answers.map(codes), ['OK OK', 'OK OK', 'OK OK', 'OVER_LIMIT OVER_LIMIT']);
      assert.equal((await one([['user', fresh('bob')]])).overall_code, 'OK');
    });

    test('an answer names the limit, the remaining count and when the window empties', async () => {
      const answer = await one([['user', fresh()]]);
      assert.deepEqual(answer.statuses[0], {
        code: 'OK',
        current_limit: { requests_per_unit: 3, unit: 'MINUTE' },
        limit_remaining: 2,
        duration_until_reset: {
          seconds: String(2 * 60 - Math.floor((clock.now() % MINUTE) / 1000)),
          nanos: (clock.now() % 1000) * 0,
        },
      });
    });

    test('match order: an exact value, then a wildcard, then the key alone', async () => {
      const limitOf = async (value: string) =>
        (await one([['user', value]])).statuses[0]?.current_limit?.requests_per_unit;
      assert.deepEqual(
        [await limitOf('vip'), await limitOf(fresh('team')), await limitOf(fresh('someone'))],
        [5, 4, 3],
      );
    });

    test('a wildcard without share_threshold counts each value apart; with it, every value in one counter', async () => {
      const [a, b] = [fresh('team'), fresh('team')];
      await repeat(4, () => one([['user', a]]));
      assert.equal((await one([['user', b]])).overall_code, 'OK');
      const shared = (await one([['user', 'shared-x']])).statuses[0]?.limit_remaining as number;
      const afterOther = (await one([['user', `shared-${fresh()}`]])).statuses[0]?.limit_remaining;
      assert.equal(afterOther, shared - 1);
    });

    test('requests_per_unit 0 is always over, even a call that adds no hits', async () => {
      assert.equal(codes(await one([['blocked', fresh()]])), 'OVER_LIMIT OVER_LIMIT');
      assert.equal(codes(await one([['blocked', fresh()]], 0)), 'OVER_LIMIT OVER_LIMIT');
    });

    test('README example 3: an address gets 10 a second, and the blacklisted one none', async () => {
      const address = fresh('10.0.0');
      const answers = await repeat(11, () =>
        one([['remote_address', address]], undefined, 'edge_proxy_per_ip'),
      );
      assert.deepEqual(
        answers.map((a) => a.overall_code),
        [...Array<string>(10).fill('OK'), 'OVER_LIMIT'],
      );
      const blocked = await one([['remote_address', '50.0.0.5']], undefined, 'edge_proxy_per_ip');
      assert.equal(blocked.overall_code, 'OVER_LIMIT');
    });

    test('README examples 5, 6, 7 and 11 over the wire: unlimited, shadow, replaces, a shared wildcard', async () => {
      const ldap = await repeat(3, () => one([['ldap', 'x']], undefined, 'internal'));
      assert.ok(ldap.every((a) => a.overall_code === 'OK' && a.statuses[0]?.current_limit === undefined));
      assert.equal(
        (await one([['azure', 'x']], undefined, 'internal')).statuses[0]?.current_limit?.requests_per_unit,
        100,
      );

      const service = fresh('svc');
      const shadowed = await repeat(11, () =>
        one(
          [
            ['service', service],
            ['user', 'user-a'],
          ],
          undefined,
          'example6',
        ),
      );
      assert.deepEqual([shadowed[10]?.overall_code, shadowed[10]?.statuses[0]?.code], ['OK', 'OVER_LIMIT']);

      const both = await ask({
        domain: 'example7',
        descriptors: [
          descriptor([
            ['key_1', 'value_1'],
            ['user', 'bkthomps'],
          ]),
          descriptor([
            ['key_2', 'value_2'],
            ['user', 'bkthomps'],
          ]),
        ],
      });
      assert.deepEqual(
        both.statuses.map((s) => s.current_limit?.requests_per_unit),
        [undefined, 10],
      );

      const first = (await one([['files', 'files/a.txt']], undefined, 'example11')).statuses[0]
        ?.limit_remaining;
      const second = (await one([['files', 'files/b.txt']], undefined, 'example11')).statuses[0]
        ?.limit_remaining;
      assert.equal(second, (first as number) - 1, 'every files/* value counts in one counter');
    });

    test('unlimited is always OK, never counted, with the largest remaining', async () => {
      const answers = await repeat(5, () => one([['free', 'x']]));
      assert.ok(
        answers.every((a) => a.overall_code === 'OK' && a.statuses[0]?.limit_remaining === 4_294_967_295),
      );
      assert.equal(answers[0]?.statuses[0]?.current_limit, undefined);
    });

    test('shadow_mode: the descriptor is OVER_LIMIT but the request OK, and the hits are counted', async () => {
      const value = fresh();
      const answers = await repeat(4, () => one([['shadow', value]]));
      assert.deepEqual(answers.map(codes), ['OK OK', 'OK OK', 'OK OVER_LIMIT', 'OK OVER_LIMIT']);
      const lines = await metric('quotad_envoy_descriptors_total');
      assert.ok(
        lines.some((l) => l.includes('rule="rls-test.shadow"') && l.includes('result="shadow_over_limit"')),
      );
    });

    test('a shadow descriptor over its limit does not stop the others from being charged', async () => {
      const [value, user] = [fresh(), fresh()];
      await repeat(2, () => one([['shadow', value]]));
      const answer = await ask({
        domain: DOMAIN,
        descriptors: [descriptor([['shadow', value]]), descriptor([['user', user]])],
      });
      assert.equal(codes(answer), 'OK OVER_LIMIT OK');
      assert.equal(answer.statuses[1]?.limit_remaining, 2);
    });

    test('replaces: the replacing rule applies and the replaced one is not checked or counted', async () => {
      const answers = await repeat(4, () =>
        ask({
          domain: DOMAIN,
          descriptors: [descriptor([['plan', 'basic']]), descriptor([['plan', 'upgrade']])],
        }),
      );
      assert.ok(answers.every((a) => a.overall_code === 'OK'));
      assert.equal(answers[3]?.statuses[0]?.current_limit, undefined);
      assert.equal(answers[3]?.statuses[1]?.current_limit?.requests_per_unit, 10);
    });

    test('metrics name the rule, with the value only where detailed_metric says', async () => {
      const caller = fresh('caller');
      await one([
        ['route', 'r1'],
        ['caller', caller],
      ]);
      await one([['user', fresh('private')]]);
      const lines = await metric('quotad_envoy_descriptors_total');
      assert.ok(lines.some((l) => l.includes(`rule="rls-test.route_r1.caller_${caller}"`)));
      assert.ok(!lines.some((l) => l.includes('private-')), 'a key-only value never reaches a label');
    });

    test("Envoy's limit override replaces the configuration's limit", async () => {
      const value = fresh();
      const request = () =>
        ask({
          domain: DOMAIN,
          descriptors: [{ ...descriptor([['user', value]]), limit: { requests_per_unit: 1, unit: 'HOUR' } }],
        });
      const [first, second] = await repeat(2, request);
      assert.deepEqual(first?.statuses[0]?.current_limit, { requests_per_unit: 1, unit: 'HOUR' });
      assert.equal(second?.overall_code, 'OVER_LIMIT');
    });

    test('an unknown domain, or a descriptor no rule matches, is OK with no limit', async () => {
      const unknown = await one([['user', 'x']], undefined, 'no-such-domain');
      const unmatched = await one([['nothing', 'here']]);
      for (const answer of [unknown, unmatched]) {
        assert.deepEqual(answer, {
          overall_code: 'OK',
          statuses: [{ code: 'OK' }],
        });
      }
    });

    test('bad requests are INVALID_ARGUMENT naming the field, and charge nothing', async () => {
      const value = fresh();
      const refusals: [RlsRequest, string][] = [
        [{ domain: '', descriptors: [descriptor([['user', value]])] }, 'domain: must not be empty'],
        [{ domain: DOMAIN, descriptors: [] }, 'descriptors: must not be empty'],
        [{ domain: DOMAIN, descriptors: [{ entries: [] }] }, 'descriptors[0].entries: must not be empty'],
        [
          { domain: DOMAIN, descriptors: [descriptor([['user', value]], 1_000_000_001)] },
          'descriptors[0].hits_addend',
        ],
        [
          { domain: DOMAIN, hits_addend: 2_000_000_000, descriptors: [descriptor([['user', value]])] },
          'hits_addend',
        ],
        [
          {
            domain: DOMAIN,
            descriptors: [
              { ...descriptor([['user', value]]), limit: { requests_per_unit: 5, unit: 'UNKNOWN' } },
            ],
          },
          'descriptors[0].limit.unit',
        ],
      ];
      for (const [request, field] of refusals) {
        await assert.rejects(ask(request), (error: grpc.ServiceError) => {
          assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
          assert.ok(error.details.startsWith(field), error.details);
          return true;
        });
      }
      assert.equal((await one([['user', value]])).statuses[0]?.limit_remaining, 2);
    });

    test('all or nothing: when one descriptor is over, no descriptor of the request is charged', async () => {
      const [user, tokens] = [fresh(), fresh()];
      await repeat(3, () => one([['user', user]]));
      const refused = await ask({
        domain: DOMAIN,
        descriptors: [descriptor([['tokens', tokens]], 400), descriptor([['user', user]])],
      });
      assert.equal(codes(refused), 'OVER_LIMIT OK OVER_LIMIT');
      assert.equal((await one([['tokens', tokens]], 0)).statuses[0]?.limit_remaining, 1000);
    });

    test('hits_addend charges that many; a refused request charges nothing', async () => {
      const value = fresh();
      const request = (hits: number) =>
        ask({ domain: DOMAIN, hits_addend: hits, descriptors: [descriptor([['tokens', value]])] });
      assert.equal((await request(600)).statuses[0]?.limit_remaining, 400);
      assert.equal((await request(600)).overall_code, 'OVER_LIMIT');
      const last = await request(400);
      assert.deepEqual([last.overall_code, last.statuses[0]?.limit_remaining], ['OK', 0]);
    });

    test("a descriptor's own hits_addend wins over the request's, and 0 only reads", async () => {
      const value = fresh();
      const answer = await ask({
        domain: DOMAIN,
        hits_addend: 7,
        descriptors: [descriptor([['tokens', value]], 300)],
      });
      assert.equal(answer.statuses[0]?.limit_remaining, 700);
      assert.equal((await one([['tokens', value]], 0)).statuses[0]?.limit_remaining, 700);
    });

    test('a day-long limit of four billion tokens counts exactly', async () => {
      const value = fresh();
      await ask({
        domain: DOMAIN,
        hits_addend: 999_999_999,
        descriptors: [descriptor([['daily_tokens', value]])],
      });
      const answer = await ask({
        domain: DOMAIN,
        hits_addend: 1,
        descriptors: [descriptor([['daily_tokens', value]])],
      });
      assert.equal(answer.statuses[0]?.limit_remaining, 3_000_000_000);
    });

    test('response_headers_to_add carries RateLimit-Limit/Remaining/Reset of the descriptor with least left', async () => {
      const [user, tokens] = [fresh(), fresh()];
      const answer = await ask({
        domain: DOMAIN,
        descriptors: [descriptor([['tokens', tokens]]), descriptor([['user', user]])],
      });
      assert.deepEqual(answer.response_headers_to_add, [
        { key: 'RateLimit-Limit', value: '3' },
        { key: 'RateLimit-Remaining', value: '2' },
        { key: 'RateLimit-Reset', value: answer.statuses[1]?.duration_until_reset?.seconds },
      ]);
    });

    test('200 concurrent calls on a 20/minute rule admit exactly 20', async () => {
      const value = fresh();
      const answers = await Promise.all(Array.from({ length: 200 }, () => one([['burst', value]])));
      assert.equal(answers.filter((a) => a.overall_code === 'OK').length, 20);
    });

    test('the window slides: a minute after filling it nothing fits, half a minute later half of it does', async () => {
      clock.set(Math.ceil(clock.now() / MINUTE) * MINUTE);
      const value = fresh();
      const request = () => one([['burst', value]]);
      await repeat(20, request);
      clock.advance(MINUTE);
      const full = await request();
      assert.equal(full.overall_code, 'OVER_LIMIT');
      // The previous window's 20 hits weigh in full: one more fits once 1/20 of it (3 s) has slid out.
      assert.deepEqual(full.statuses[0]?.duration_until_reset, { seconds: '3', nanos: 0 });
      clock.advance(MINUTE / 2);
      const half = await repeat(11, request);
      assert.equal(half.filter((a) => a.overall_code === 'OK').length, 10);
    });

    test('reserve and settle: the estimate is reserved, settling charges the actual usage once', async () => {
      const [tokens, id, other] = [fresh(), fresh('req'), fresh('req')];
      const reserve = (requestId: string, estimate: number) =>
        ask({
          domain: DOMAIN,
          descriptors: [
            descriptor(
              [
                ['tokens', tokens],
                ['quotad.reserve', requestId],
              ],
              estimate,
            ),
          ],
        });
      const settle = (requestId: string, usage: number) =>
        ask({
          domain: DOMAIN,
          descriptors: [
            descriptor(
              [
                ['tokens', tokens],
                ['quotad.settle', requestId],
              ],
              usage,
            ),
          ],
        });
      assert.equal((await reserve(id, 800)).statuses[0]?.limit_remaining, 200);
      // A second request's estimate does not fit beside the first one's: no overshoot.
      assert.equal((await reserve(other, 300)).overall_code, 'OVER_LIMIT');
      assert.equal(
        (await reserve(id, 800)).statuses[0]?.limit_remaining,
        200,
        'a repeated reserve charges nothing',
      );
      assert.equal((await settle(id, 120)).statuses[0]?.limit_remaining, 880);
      assert.equal(
        (await settle(id, 120)).statuses[0]?.limit_remaining,
        880,
        'a repeated settle moves nothing',
      );
      assert.equal((await reserve(other, 300)).overall_code, 'OK');
    });

    test('only descriptors carrying the request id are reserved: the others stay charged after the settle', async () => {
      const [user, tokens, id] = [fresh(), fresh(), fresh('req')];
      await ask({
        domain: DOMAIN,
        descriptors: [
          descriptor([['user', user]]),
          descriptor(
            [
              ['tokens', tokens],
              ['quotad.reserve', id],
            ],
            500,
          ),
        ],
      });
      await ask({
        domain: DOMAIN,
        descriptors: [
          descriptor(
            [
              ['tokens', tokens],
              ['quotad.settle', id],
            ],
            50,
          ),
        ],
      });
      const after = await ask({
        domain: DOMAIN,
        descriptors: [descriptor([['user', user]], 0), descriptor([['tokens', tokens]], 0)],
      });
      assert.deepEqual(
        after.statuses.map((s) => s.limit_remaining),
        [2, 950],
      );
    });

    test('a settle with no reservation charges the usage it reports', async () => {
      const settled = await ask({
        domain: DOMAIN,
        descriptors: [
          descriptor(
            [
              ['tokens', fresh()],
              ['quotad.settle', fresh('req')],
            ],
            250,
          ),
        ],
      });
      assert.deepEqual([settled.overall_code, settled.statuses[0]?.limit_remaining], ['OK', 750]);
    });

    test('a reservation never settled keeps its estimate charged; after it expires a late settle only adds', async () => {
      const [tokens, id] = [fresh(), fresh('req')];
      const daily = (entry: [string, string], hits: number) =>
        ask({ domain: DOMAIN, descriptors: [descriptor([['daily_tokens', tokens], entry], hits)] });
      clock.set(Math.ceil(clock.now() / 86_400_000) * 86_400_000);
      await daily(['quotad.reserve', id], 1_000);
      clock.advance(61 * MINUTE);
      const late = await daily(['quotad.settle', id], 10);
      assert.equal(late.statuses[0]?.limit_remaining, 4_000_000_000 - 1_010);
    });

    test('reserve and settle entries of one request must agree', async () => {
      await assert.rejects(
        ask({
          domain: DOMAIN,
          descriptors: [
            descriptor([
              ['tokens', 'x'],
              ['quotad.reserve', 'a'],
            ]),
            descriptor([
              ['user', 'x'],
              ['quotad.settle', 'a'],
            ]),
          ],
        }),
        (error: grpc.ServiceError) => error.code === grpc.status.INVALID_ARGUMENT,
      );
    });

    test('a changed file and a new file apply; an invalid edit is kept out and counted', async () => {
      const file = join(dir, 'reload.yaml');
      const config = (limit: number) =>
        `domain: reload-${store.name}\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: minute\n      requests_per_unit: ${limit}\n`;
      const limitOf = async (domain: string) =>
        (await one([['k', fresh()]], undefined, domain)).statuses[0]?.current_limit?.requests_per_unit;
      await writeFile(file, config(7));
      await eventually(
        async () => ((await limitOf(`reload-${store.name}`)) === 7 ? true : undefined),
        () => 'new file never applied',
      );
      await writeFile(file, config(9));
      await eventually(
        async () => ((await limitOf(`reload-${store.name}`)) === 9 ? true : undefined),
        () => 'edit never applied',
      );
      await writeFile(
        file,
        'domain: reload\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: fortnight\n',
      );
      await eventually(
        async () =>
          (await metric('quotad_envoy_config_valid')).some((l) => l === 'quotad_envoy_config_valid 0')
            ? true
            : undefined,
        () => 'the invalid edit was never rejected',
      );
      assert.equal(await limitOf(`reload-${store.name}`), 9);
      assert.ok(
        quotad.logLines.some((l) => l.includes('envoy config edit rejected') && l.includes('reload.yaml:')),
      );
      await rm(file);
    });
  });
}
