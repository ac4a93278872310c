import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { parseAllDocuments } from 'yaml';
import { buildEnvoyConfig } from '../../src/envoy/load-config.js';
import { envoyProtoIncludeDirs } from '../../src/envoy/rls-proto.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const ENVOY_SECTION = README.slice(README.indexOf('\n## Envoy\n'), README.indexOf('\n## Deploy\n'));

/** The README's Envoy examples: every yaml block of the section whose first line is `# envoy: <what>`. */
function examples(what: string): string[] {
  return [...ENVOY_SECTION.matchAll(/```yaml\n# envoy: ([^\n]+)\n([\s\S]*?)```/g)]
    .filter((match) => match[1] === what)
    .map((match) => match[2] as string);
}

const PROTOS = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
];

/**
 * Envoy's types from the protos @grpc/grpc-js-xds ships, with the route `rate_limits` fields of Envoy 1.33+
 * (`hits_addend` 5, `apply_on_stream_done` 6, as envoyproxy/data-plane-api numbers them) when the shipped
 * API predates them, as src/envoy/rls-proto.ts does for the RLS messages.
 */
function loadEnvoyRoot(): protobuf.Root {
  const dirs = envoyProtoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    dirs.map((dir) => join(dir, target)).find((candidate) => existsSync(candidate)) ?? target;
  root.loadSync(PROTOS, { keepCase: true });
  const rateLimit = root.lookupType('envoy.config.route.v3.RateLimit');
  if (!rateLimit.fieldsById[5]) {
    const hitsAddend = new protobuf.Type('HitsAddend')
      .add(new protobuf.Field('number', 1, 'google.protobuf.UInt64Value'))
      .add(new protobuf.Field('format', 2, 'string'));
    rateLimit.add(hitsAddend);
    rateLimit.add(new protobuf.Field('hits_addend', 5, 'HitsAddend'));
    rateLimit.add(new protobuf.Field('apply_on_stream_done', 6, 'bool'));
  }
  root.resolveAll();
  return root;
}

const WRAPPERS = new Set([
  'DoubleValue',
  'FloatValue',
  'Int64Value',
  'UInt64Value',
  'Int32Value',
  'UInt32Value',
  'BoolValue',
  'StringValue',
]);

/**
 * Turns Envoy's YAML (proto3 JSON: field names or their JSON names, durations as "0.05s", wrappers as bare
 * values, Any with '@type') into protobufjs's object form, and throws on anything Envoy would refuse to
 * parse: an unknown field, a value of the wrong kind, an unknown enum name, two fields of one oneof.
 */
function toObject(
  root: protobuf.Root,
  type: protobuf.Type,
  json: unknown,
  at: string,
): Record<string, unknown> {
  if (type.fullName === '.google.protobuf.Any') {
    const { '@type': url, ...rest } = json as Record<string, unknown>;
    assert.equal(typeof url, 'string', `${at}: an Any needs '@type'`);
    const inner = root.lookupType((url as string).replace(/^type\.googleapis\.com\//, ''));
    const value = inner.encode(inner.fromObject(toObject(root, inner, rest, at))).finish();
    return { type_url: url, value };
  }
  assert.ok(json !== null && typeof json === 'object' && !Array.isArray(json), `${at}: expected an object`);
  const out: Record<string, unknown> = {};
  const oneofsSet = new Map<string, string>();
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    const field =
      type.fields[key] ??
      Object.values(type.fields).find((f) => f.options?.json_name === key || camel(f.name) === key);
    assert.ok(field, `${at}.${key}: no such field in ${type.fullName}`);
    if (field.partOf) {
      const other = oneofsSet.get(field.partOf.name);
      assert.equal(other, undefined, `${at}: ${key} and ${other} are one oneof`);
      oneofsSet.set(field.partOf.name, key);
    }
    const convert = (item: unknown, where: string) => fieldValue(root, field, item, where);
    if (field.map) {
      const entries = Object.entries(value as Record<string, unknown>).map(([k, v]) => [
        k,
        convert(v, `${at}.${key}.${k}`),
      ]);
      out[field.name] = Object.fromEntries(entries);
    } else if (field.repeated) {
      assert.ok(Array.isArray(value), `${at}.${key}: expected a list`);
      out[field.name] = value.map((item, i) => convert(item, `${at}.${key}[${i}]`));
    } else {
      out[field.name] = convert(value, `${at}.${key}`);
    }
  }
  return out;
}

function camel(name: string): string {
  return name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function fieldValue(root: protobuf.Root, field: protobuf.Field, value: unknown, at: string): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) {
    assert.ok(
      typeof value === 'string' && value in resolved.values,
      `${at}: ${String(value)} is no ${resolved.name}`,
    );
    return resolved.values[value as string];
  }
  if (resolved instanceof protobuf.Type) {
    if (resolved.fullName === '.google.protobuf.Duration') {
      const match = /^(\d+)(?:\.(\d{1,9}))?s$/.exec(String(value));
      assert.ok(match, `${at}: ${String(value)} is no duration`);
      return { seconds: Number(match[1]), nanos: Number((match[2] ?? '').padEnd(9, '0')) };
    }
    if (resolved.parent?.fullName === '.google.protobuf' && WRAPPERS.has(resolved.name)) {
      return { value: fieldValue(root, resolved.fields.value as protobuf.Field, value, at) };
    }
    return toObject(root, resolved, value, at);
  }
  switch (field.type) {
    case 'string':
      assert.equal(typeof value, 'string', `${at}: expected a string`);
      return value;
    case 'bool':
      assert.equal(typeof value, 'boolean', `${at}: expected true or false`);
      return value;
    case 'bytes':
      return value;
    default:
      assert.ok(Number.isInteger(Number(value)) && Number(value) >= 0, `${at}: expected a number`);
      return Number(value);
  }
}

/** Checks `json` as an Envoy `typeName`, and returns the message it decodes to. */
function asEnvoy(root: protobuf.Root, typeName: string, json: unknown, at: string): protobuf.Message {
  const type = root.lookupType(typeName);
  const object = toObject(root, type, json, at);
  assert.equal(type.verify(object), null, at);
  const message = type.fromObject(object);
  return type.decode(type.encode(message).finish());
}

describe("the README's Envoy examples, checked against Envoy's protos", () => {
  let root: protobuf.Root;

  before(() => {
    root = loadEnvoyRoot();
  });

  test('the bootstrap parses, and its rate limit filter and route rate_limits are what quotad expects', () => {
    const [text] = examples('envoy.config.bootstrap.v3.Bootstrap');
    assert.ok(text, 'the README has the Envoy bootstrap example');
    const bootstrap = asEnvoy(
      root,
      'envoy.config.bootstrap.v3.Bootstrap',
      parseAllDocuments(text)[0]?.toJS(),
      'bootstrap',
    );
    const plain = root
      .lookupType('envoy.config.bootstrap.v3.Bootstrap')
      .toObject(bootstrap, { enums: String }) as {
      static_resources: {
        listeners: {
          filter_chains: { filters: { typed_config: { type_url: string; value: Uint8Array } }[] }[];
        }[];
        clusters: { name: string }[];
      };
    };
    const manager = root.lookupType(
      'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    );
    const hcmAny = plain.static_resources.listeners[0]?.filter_chains[0]?.filters[0]?.typed_config;
    const hcm = manager.toObject(manager.decode(hcmAny?.value as Uint8Array), {
      enums: String,
      longs: String,
    }) as {
      http_filters: { name: string; typed_config: { value: Uint8Array } }[];
      route_config: {
        virtual_hosts: {
          routes: {
            route: {
              rate_limits: {
                actions: Record<string, { descriptor_key?: string }>[];
                hits_addend?: unknown;
                apply_on_stream_done?: boolean;
              }[];
            };
          }[];
        }[];
      };
    };
    const filterType = root.lookupType('envoy.extensions.filters.http.ratelimit.v3.RateLimit');
    const filter = filterType.toObject(
      filterType.decode(hcm.http_filters[0]?.typed_config.value as Uint8Array),
      { enums: String },
    ) as {
      domain: string;
      rate_limit_service: {
        grpc_service: { envoy_grpc: { cluster_name: string } };
        transport_api_version: string;
      };
    };
    assert.equal(filter.domain, 'llm-gateway');
    assert.equal(filter.rate_limit_service.transport_api_version, 'V3');
    const cluster = filter.rate_limit_service.grpc_service.envoy_grpc.cluster_name;
    assert.ok(
      plain.static_resources.clusters.some((c) => c.name === cluster),
      `a cluster named ${cluster}`,
    );
    const limits = hcm.route_config.virtual_hosts[0]?.routes[0]?.route.rate_limits ?? [];
    const keys = limits.map((limit) =>
      limit.actions.map((action) => Object.values(action)[0]?.descriptor_key ?? Object.keys(action)[0]),
    );
    assert.deepEqual(keys, [['remote_address'], ['user', 'quotad.reserve'], ['user', 'quotad.settle']]);
    assert.deepEqual(
      limits.map((limit) => limit.apply_on_stream_done ?? false),
      [false, false, true],
    );
  });

  test("the domain file beside it loads, and names every descriptor key the bootstrap's actions send", () => {
    const block = /and the domain file it asks about[^\n]*\n\n```yaml\n([\s\S]*?)```/.exec(
      ENVOY_SECTION,
    )?.[1];
    assert.ok(block, 'the README shows the domain file');
    const config = buildEnvoyConfig([{ name: 'README.md', text: block }]);
    const domain = config.domains.get('llm-gateway');
    assert.deepEqual([...(domain?.descriptors.keyOnly.keys() ?? [])].sort(), ['remote_address', 'user']);
    const shipped = readFileSync(
      new URL('../../../deploy/kubernetes/base/envoy-ratelimit.yaml', import.meta.url),
      'utf8',
    );
    assert.equal(
      buildEnvoyConfig([{ name: 'envoy-ratelimit.yaml', text: shipped }]).domains.get('llm-gateway')
        ?.descriptors.size,
      domain?.descriptors.size,
    );
  });

  test("Istio's EnvoyFilter patches are an Envoy HttpFilter and VirtualHost", () => {
    const [text] = examples('istio');
    assert.ok(text, 'the README has the Istio example');
    const patches = parseAllDocuments(text).flatMap(
      (doc) =>
        (doc.toJS() as { spec: { configPatches: { applyTo: string; patch: { value: unknown } }[] } }).spec
          .configPatches,
    );
    const types: Record<string, string> = {
      HTTP_FILTER: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter',
      VIRTUAL_HOST: 'envoy.config.route.v3.VirtualHost',
    };
    assert.deepEqual(
      patches.map((p) => p.applyTo),
      ['HTTP_FILTER', 'VIRTUAL_HOST'],
    );
    for (const patch of patches)
      asEnvoy(root, types[patch.applyTo] as string, patch.patch.value, patch.applyTo);
  });

  test('the Envoy Gateway BackendTrafficPolicy is one YAML document of its kind', () => {
    const [text] = examples('gateway');
    assert.ok(text);
    const docs = parseAllDocuments(text).map((doc) => doc.toJS() as { kind: string });
    assert.deepEqual(
      docs.map((doc) => doc.kind),
      ['BackendTrafficPolicy'],
    );
  });

  test('a field Envoy does not know is refused, so the check can fail', () => {
    assert.throws(
      () =>
        asEnvoy(
          root,
          'envoy.extensions.filters.http.ratelimit.v3.RateLimit',
          { domain: 'd', failure_mode: true },
          'filter',
        ),
      /failure_mode: no such field/,
    );
  });
});
