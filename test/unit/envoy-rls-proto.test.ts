import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MethodDefinition } from '@grpc/proto-loader';
import { loadRateLimitServiceDefinition, RLS_SERVICE_NAME } from '../../src/envoy/rls-proto.js';

type AnyMethod = MethodDefinition<object, object>;

function shouldRateLimit(): AnyMethod {
  const service = loadRateLimitServiceDefinition()[RLS_SERVICE_NAME] as Record<string, AnyMethod> | undefined;
  assert.ok(service?.ShouldRateLimit, 'the service has ShouldRateLimit');
  return service.ShouldRateLimit;
}

describe("Envoy's RateLimitService proto, loaded from @grpc/grpc-js-xds", () => {
  test('is the unary ShouldRateLimit at the path Envoy calls', () => {
    const method = shouldRateLimit();
    assert.deepEqual(
      { path: method.path, requestStream: method.requestStream, responseStream: method.responseStream },
      {
        path: '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
        requestStream: false,
        responseStream: false,
      },
    );
  });

  test("a descriptor's hits_addend is encoded as Envoy encodes it: field 3, a UInt64Value", () => {
    const request = {
      domain: 'd',
      descriptors: [{ entries: [{ key: 'k', value: 'v' }], hits_addend: { value: '5' } }],
    };
    // domain (1) "d"; descriptors (2) { entries (1) { key (1) "k", value (2) "v" }, hits_addend (3) { value (1) 5 } }
    const envoyBytes = '0a0164120c0a060a016b1201761a020805';
    assert.equal(shouldRateLimit().requestSerialize(request).toString('hex'), envoyBytes);
  });

  test("a request as Envoy sends it decodes with its descriptors' entries, override and hits_addend", () => {
    const method = shouldRateLimit();
    const sent = {
      domain: 'envoy',
      hits_addend: 3,
      descriptors: [
        {
          entries: [{ key: 'user', value: 'alice' }],
          limit: { requests_per_unit: 42, unit: 'HOUR' },
          hits_addend: { value: '0' },
        },
      ],
    };
    assert.deepEqual(method.requestDeserialize(method.requestSerialize(sent)), sent);
  });

  test('a response may name the WEEK unit of newer Envoy APIs', () => {
    const method = shouldRateLimit();
    const response = {
      overall_code: 'OK',
      statuses: [{ code: 'OK', current_limit: { requests_per_unit: 1, unit: 'WEEK' } }],
    };
    assert.deepEqual(method.responseDeserialize(method.responseSerialize(response)), response);
  });
});
