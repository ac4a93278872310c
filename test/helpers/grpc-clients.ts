import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { loadQuotaPackage } from '../../src/authority/proto.js';
import type { CheckQuotaRequest } from '../../src/gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../../src/gen/quotad/v1/CheckQuotaResponse.js';
import type { GetUsageRequest } from '../../src/gen/quotad/v1/GetUsageRequest.js';
import type { GetUsageResponse__Output } from '../../src/gen/quotad/v1/GetUsageResponse.js';
import type { QuotaServiceClient } from '../../src/gen/quotad/v1/QuotaService.js';
import type { RecordUsageRequest } from '../../src/gen/quotad/v1/RecordUsageRequest.js';
import type { RecordUsageResponse__Output } from '../../src/gen/quotad/v1/RecordUsageResponse.js';

const require = createRequire(import.meta.url);

type Unary<Req, Res> = (request: Req, deadlineMs?: number) => Promise<Res>;

function promisify<Req, Res>(
  call: (request: Req, options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => unknown,
): Unary<Req, Res> {
  return (request, deadlineMs = 5_000) =>
    new Promise((resolve, reject) => {
      call(request, { deadline: Date.now() + deadlineMs }, (error, response) =>
        error ? reject(error) : resolve(response as Res),
      );
    });
}

/** A real QuotaService client over a socket, with promise-returning methods. */
export interface QuotaClient {
  raw: QuotaServiceClient;
  checkQuota: Unary<CheckQuotaRequest, CheckQuotaResponse__Output>;
  recordUsage: Unary<RecordUsageRequest, RecordUsageResponse__Output>;
  getUsage: Unary<GetUsageRequest, GetUsageResponse__Output>;
  close(): void;
}

export function quotaClient(address: string): QuotaClient {
  const { proto } = loadQuotaPackage();
  const raw = new proto.quotad.v1.QuotaService(address, grpc.credentials.createInsecure());
  return {
    raw,
    checkQuota: promisify(raw.checkQuota.bind(raw)),
    recordUsage: promisify(raw.recordUsage.bind(raw)),
    getUsage: promisify(raw.getUsage.bind(raw)),
    close: () => raw.close(),
  };
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
