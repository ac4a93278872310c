/**
 * The transport ceiling of Envoy's RateLimitService: a grpc-js server loading Envoy's RLS proto as quotad
 * does (src/envoy/rls-proto.ts) and answering every ShouldRateLimit at once with a fixed OK, one status per
 * descriptor, shaped like quotad's (a current limit, the remaining count, the reset, the RateLimit headers).
 *
 *   node dist/bench/noop-rls-server.js    (prints `listening <port>` on loopback; stops on SIGTERM)
 */
import * as grpc from '@grpc/grpc-js';
import { loadRateLimitServiceDefinition, RLS_SERVICE_NAME } from '../src/envoy/rls-proto.js';

const status = {
  code: 'OK',
  current_limit: { requests_per_unit: 1_000_000, unit: 'MINUTE' },
  limit_remaining: 999_999,
  duration_until_reset: { seconds: '120', nanos: 0 },
};
const headers = [
  { key: 'RateLimit-Limit', value: '1000000' },
  { key: 'RateLimit-Remaining', value: '999999' },
  { key: 'RateLimit-Reset', value: '120' },
];

const definition = loadRateLimitServiceDefinition();
const server = new grpc.Server();
server.addService(definition[RLS_SERVICE_NAME] as grpc.ServiceDefinition, {
  ShouldRateLimit: (
    call: grpc.ServerUnaryCall<{ descriptors?: unknown[] }, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) =>
    callback(null, {
      overall_code: 'OK',
      statuses: (call.request.descriptors ?? []).map(() => status),
      response_headers_to_add: headers,
    }),
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
    error ? reject(error) : resolve(bound),
  ),
);
process.stdout.write(`listening ${port}\n`);
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
