/** How every side of the wire loads quotad's protos: the authority's server and all of its clients. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { ProtoGrpcType } from '../gen/admin.js';

/** The repository's proto/ folder, two levels above src/api or three above dist/src/api. */
export const PROTO_ROOT = ['../../proto/', '../../../proto/']
  .map((relative) => fileURLToPath(new URL(relative, import.meta.url)))
  .find((dir) => existsSync(`${dir}quotad/v1/quota.proto`)) as string;

/** The loader options the generated types in src/gen assume (see scripts/gen-proto-types.mjs). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

const QUOTAD_PROTOS = ['quotad/v1/quota.proto', 'quotad/v1/admin.proto'];

/** quotad.v1: QuotaService, AdminService and their messages. */
export function loadQuotaPackage(): { definition: protoLoader.PackageDefinition; proto: ProtoGrpcType } {
  const definition = protoLoader.loadSync(QUOTAD_PROTOS, LOADER_OPTIONS);
  return { definition, proto: grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType };
}

/** The services the server exposes (QuotaService, AdminService when on, grpc.health.v1), for reflection. */
export function loadReflectedServices(withAdmin: boolean): protoLoader.PackageDefinition {
  const quotad = withAdmin ? QUOTAD_PROTOS : QUOTAD_PROTOS.slice(0, 1);
  return protoLoader.loadSync([...quotad, healthProtoPath], LOADER_OPTIONS);
}
