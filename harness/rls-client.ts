import * as grpc from '@grpc/grpc-js';
import { loadRateLimitServiceDefinition } from '../src/envoy/rls-proto.js';

/** A ShouldRateLimit request as Envoy encodes it (proto field names; uint64 as strings). */
export interface RlsRequest {
  domain: string;
  descriptors: {
    entries: { key: string; value: string }[];
    limit?: { requests_per_unit: number; unit: string };
    hits_addend?: { value: string };
  }[];
  hits_addend?: number;
}

export interface RlsStatus {
  code: string;
  current_limit?: { name?: string; requests_per_unit: number; unit: string };
  limit_remaining?: number;
  duration_until_reset?: { seconds: string; nanos?: number };
}

export interface RlsResponse {
  overall_code: string;
  statuses: RlsStatus[];
  response_headers_to_add?: { key: string; value: string }[];
}

export interface RlsClient {
  shouldRateLimit(request: RlsRequest): Promise<RlsResponse>;
  close(): void;
}

/**
 * A client of envoy.service.ratelimit.v3.RateLimitService made from Envoy's own protos (as
 * @grpc/grpc-js-xds ships them), speaking to a server over a real socket as Envoy does.
 */
export function rlsClient(address: string): RlsClient {
  const pkg = grpc.loadPackageDefinition(loadRateLimitServiceDefinition()) as unknown as {
    envoy: {
      service: {
        ratelimit: {
          v3: { RateLimitService: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client };
        };
      };
    };
  };
  const client = new pkg.envoy.service.ratelimit.v3.RateLimitService(
    address,
    grpc.credentials.createInsecure(),
  ) as grpc.Client & {
    ShouldRateLimit(request: RlsRequest, callback: grpc.requestCallback<RlsResponse>): void;
  };
  return {
    shouldRateLimit: (request) =>
      new Promise((resolve, reject) =>
        client.ShouldRateLimit(request, (error, response) =>
          error ? reject(error) : resolve(response as RlsResponse),
        ),
      ),
    close: () => client.close(),
  };
}

/** One descriptor of `[key, value]` entries, with its own hits_addend when given. */
export function descriptor(entries: [string, string][], hits?: number): RlsRequest['descriptors'][number] {
  return {
    entries: entries.map(([key, value]) => ({ key, value })),
    ...(hits === undefined ? {} : { hits_addend: { value: String(hits) } }),
  };
}
