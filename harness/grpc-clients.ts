import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { adminServiceClient, quotaServiceClient, type AdminApi, type QuotaApi } from '../src/api/client.js';

const require = createRequire(import.meta.url);

/** A real QuotaService client over a socket (src/api/client.ts), with a 5 s deadline unless a call names one. */
export type QuotaClient = QuotaApi;

/** How a test client reaches the authority: TLS credentials, and the token QuotaService may require. */
export interface QuotaClientOptions {
  credentials?: grpc.ChannelCredentials;
  token?: string;
}

export function quotaClient(address: string, options: QuotaClientOptions = {}): QuotaClient {
  return quotaServiceClient(address, options);
}

/** A real AdminService client that sends `token` (when given) as `authorization: Bearer <token>`. */
export type AdminClient = AdminApi;

export function adminClient(address: string, token: string | undefined): AdminClient {
  return adminServiceClient(address, token === undefined ? {} : { token });
}

function loadFrom(packageFile: string, protoFile: string, includeDir: string): grpc.GrpcObject {
  const root = join(dirname(require.resolve(packageFile)), includeDir);
  return grpc.loadPackageDefinition(
    protoLoader.loadSync(protoFile, { includeDirs: [root], keepCase: true, enums: String }),
  );
}

interface HealthClient extends grpc.Client {
  check(request: { service: string }, callback: grpc.requestCallback<{ status: string }>): void;
  watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

/** grpc.health.v1.Health, loaded from the proto grpc-health-check ships. */
export function healthClient(address: string): HealthClient {
  const pkg = loadFrom('grpc-health-check/package.json', 'health/v1/health.proto', 'proto') as unknown as {
    grpc: {
      health: { v1: { Health: new (address: string, creds: grpc.ChannelCredentials) => HealthClient } };
    };
  };
  return new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
}

interface ReflectionClient extends grpc.Client {
  ServerReflectionInfo(): grpc.ClientDuplexStream<
    { list_services?: string; file_containing_symbol?: string },
    {
      list_services_response?: { service: { name: string }[] };
      file_descriptor_response?: { file_descriptor_proto: Buffer[] };
    }
  >;
}

/** grpc.reflection.v1.ServerReflection, loaded from the proto @grpc/reflection ships. */
export function reflectionClient(address: string): ReflectionClient {
  const pkg = loadFrom(
    '@grpc/reflection/package.json',
    'grpc/reflection/v1/reflection.proto',
    'build/proto',
  ) as unknown as {
    grpc: {
      reflection: {
        v1: { ServerReflection: new (address: string, creds: grpc.ChannelCredentials) => ReflectionClient };
      };
    };
  };
  return new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
}
