import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fromJSON } from '@grpc/proto-loader';
import type { Options, PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** Envoy's rate limit service, as Envoy's own proto names it. */
export const RLS_PROTO_FILE = 'envoy/service/ratelimit/v3/rls.proto';
export const RLS_SERVICE_NAME = 'envoy.service.ratelimit.v3.RateLimitService';

/** How the RLS messages map to JavaScript: field names as in the proto, enums by name, uint64 as strings. */
export const RLS_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** The folders of `@grpc/grpc-js-xds` holding Envoy's protos and everything they import. */
export function envoyProtoIncludeDirs(): string[] {
  const packageRoot = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  return ['envoy-api', 'xds', 'protoc-gen-validate', 'googleapis'].map((folder) =>
    join(packageRoot, 'deps', folder),
  );
}

/**
 * Fields Envoy sends that the Envoy API shipped in `@grpc/grpc-js-xds` predates. Added only when missing, with
 * Envoy's field numbers, so a newer package takes over by itself: without them a descriptor's `hits_addend`
 * (what `apply_on_stream_done` charges) would be dropped on decoding as an unknown field.
 */
function addNewerEnvoyFields(root: protobuf.Root): void {
  const descriptor = root.lookupType('envoy.extensions.common.ratelimit.v3.RateLimitDescriptor');
  if (!descriptor.fieldsById[3]) {
    descriptor.add(new protobuf.Field('hits_addend', 3, 'google.protobuf.UInt64Value'));
  }
  const unit = root.lookupEnum('envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit');
  if (unit.values.WEEK === undefined) unit.add('WEEK', 7);
}

/**
 * Loads Envoy's `RateLimitService` from the protos `@grpc/grpc-js-xds` ships (nothing copied into this
 * repository), for `grpc.loadPackageDefinition` on the server and in tests' clients alike.
 */
export function loadRateLimitServiceDefinition(): PackageDefinition {
  const includeDirs = envoyProtoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    includeDirs.map((folder) => join(folder, target)).find((candidate) => existsSync(candidate)) ?? target;
  root.loadSync(RLS_PROTO_FILE, { keepCase: true });
  addNewerEnvoyFields(root);
  root.resolveAll();
  return fromJSON(root.toJSON(), RLS_LOADER_OPTIONS);
}
