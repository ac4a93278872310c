import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { loadQuotaPackage } from '../../src/authority/proto.js';
import type { CheckQuotaBatchRequest } from '../../src/gen/quotad/v1/CheckQuotaBatchRequest.js';
import type { CheckQuotaBatchResponse__Output } from '../../src/gen/quotad/v1/CheckQuotaBatchResponse.js';
import type { CheckQuotaRequest } from '../../src/gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../../src/gen/quotad/v1/CheckQuotaResponse.js';
import type { GetUsageRequest } from '../../src/gen/quotad/v1/GetUsageRequest.js';
import type { GetUsageResponse__Output } from '../../src/gen/quotad/v1/GetUsageResponse.js';
import type { ListModelsRequest } from '../../src/gen/quotad/v1/ListModelsRequest.js';
import type { ListModelsResponse__Output } from '../../src/gen/quotad/v1/ListModelsResponse.js';
import type { AdminServiceClient } from '../../src/gen/quotad/v1/AdminService.js';
import type { ApiKey__Output } from '../../src/gen/quotad/v1/ApiKey.js';
import type { CreateKeyRequest } from '../../src/gen/quotad/v1/CreateKeyRequest.js';
import type { CreateKeyResponse__Output } from '../../src/gen/quotad/v1/CreateKeyResponse.js';
import type { GetKeyUsageResponse__Output } from '../../src/gen/quotad/v1/GetKeyUsageResponse.js';
import type { ListAuditRecordsRequest } from '../../src/gen/quotad/v1/ListAuditRecordsRequest.js';
import type { ListAuditRecordsResponse__Output } from '../../src/gen/quotad/v1/ListAuditRecordsResponse.js';
import type { ListKeysRequest } from '../../src/gen/quotad/v1/ListKeysRequest.js';
import type { ListKeysResponse__Output } from '../../src/gen/quotad/v1/ListKeysResponse.js';
import type { QuotaServiceClient } from '../../src/gen/quotad/v1/QuotaService.js';
import type { RotateKeyRequest } from '../../src/gen/quotad/v1/RotateKeyRequest.js';
import type { RotateKeyResponse__Output } from '../../src/gen/quotad/v1/RotateKeyResponse.js';
import type { SetKeyLimitsRequest } from '../../src/gen/quotad/v1/SetKeyLimitsRequest.js';
import type { RecordUsageBatchRequest } from '../../src/gen/quotad/v1/RecordUsageBatchRequest.js';
import type { RecordUsageBatchResponse__Output } from '../../src/gen/quotad/v1/RecordUsageBatchResponse.js';
import type { RecordUsageRequest } from '../../src/gen/quotad/v1/RecordUsageRequest.js';
import type { RecordUsageResponse__Output } from '../../src/gen/quotad/v1/RecordUsageResponse.js';

const require = createRequire(import.meta.url);

type Unary<Req, Res> = (request: Req, deadlineMs?: number) => Promise<Res>;

/** A real QuotaService client over a socket, with promise-returning methods. */
export interface QuotaClient {
  raw: QuotaServiceClient;
  checkQuota: Unary<CheckQuotaRequest, CheckQuotaResponse__Output>;
  recordUsage: Unary<RecordUsageRequest, RecordUsageResponse__Output>;
  getUsage: Unary<GetUsageRequest, GetUsageResponse__Output>;
  listModels: Unary<ListModelsRequest, ListModelsResponse__Output>;
  checkQuotaBatch: Unary<CheckQuotaBatchRequest, CheckQuotaBatchResponse__Output>;
  recordUsageBatch: Unary<RecordUsageBatchRequest, RecordUsageBatchResponse__Output>;
  close(): void;
}

/** How a test client reaches the authority: TLS credentials, and the token QuotaService may require. */
export interface QuotaClientOptions {
  credentials?: grpc.ChannelCredentials;
  token?: string;
}

export function quotaClient(address: string, options: QuotaClientOptions = {}): QuotaClient {
  const { proto } = loadQuotaPackage();
  const raw = new proto.quotad.v1.QuotaService(
    address,
    options.credentials ?? grpc.credentials.createInsecure(),
  );
  const metadata = () => {
    const sent = new grpc.Metadata();
    if (options.token !== undefined) sent.set('authorization', `Bearer ${options.token}`);
    return sent;
  };
  return {
    raw,
    checkQuota: promisifyWithMetadata(raw.checkQuota.bind(raw), metadata),
    recordUsage: promisifyWithMetadata(raw.recordUsage.bind(raw), metadata),
    getUsage: promisifyWithMetadata(raw.getUsage.bind(raw), metadata),
    listModels: promisifyWithMetadata(raw.listModels.bind(raw), metadata),
    checkQuotaBatch: promisifyWithMetadata(raw.checkQuotaBatch.bind(raw), metadata),
    recordUsageBatch: promisifyWithMetadata(raw.recordUsageBatch.bind(raw), metadata),
    close: () => raw.close(),
  };
}

function promisifyWithMetadata<Req, Res>(
  call: (
    request: Req,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<Res>,
  ) => unknown,
  metadata: () => grpc.Metadata,
): Unary<Req, Res> {
  return (request, deadlineMs = 5_000) =>
    new Promise((resolve, reject) => {
      call(request, metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
        error ? reject(error) : resolve(response as Res),
      );
    });
}

/** A real AdminService client that sends `token` (when given) as `authorization: Bearer <token>`. */
export interface AdminClient {
  createKey: Unary<CreateKeyRequest, CreateKeyResponse__Output>;
  listKeys: Unary<ListKeysRequest, ListKeysResponse__Output>;
  getKey: Unary<{ id: string }, ApiKey__Output>;
  revokeKey: Unary<{ id: string }, ApiKey__Output>;
  rotateKey: Unary<RotateKeyRequest, RotateKeyResponse__Output>;
  setKeyLimits: Unary<SetKeyLimitsRequest, ApiKey__Output>;
  getKeyUsage: Unary<{ id: string }, GetKeyUsageResponse__Output>;
  listAuditRecords: Unary<ListAuditRecordsRequest, ListAuditRecordsResponse__Output>;
  close(): void;
}

export function adminClient(address: string, token: string | undefined): AdminClient {
  const { proto } = loadQuotaPackage();
  const raw: AdminServiceClient = new proto.quotad.v1.AdminService(
    address,
    grpc.credentials.createInsecure(),
  );
  const metadata = () => {
    const m = new grpc.Metadata();
    if (token !== undefined) m.set('authorization', `Bearer ${token}`);
    return m;
  };
  return {
    createKey: promisifyWithMetadata(raw.createKey.bind(raw), metadata),
    listKeys: promisifyWithMetadata(raw.listKeys.bind(raw), metadata),
    getKey: promisifyWithMetadata(raw.getKey.bind(raw), metadata),
    revokeKey: promisifyWithMetadata(raw.revokeKey.bind(raw), metadata),
    rotateKey: promisifyWithMetadata(raw.rotateKey.bind(raw), metadata),
    setKeyLimits: promisifyWithMetadata(raw.setKeyLimits.bind(raw), metadata),
    getKeyUsage: promisifyWithMetadata(raw.getKeyUsage.bind(raw), metadata),
    listAuditRecords: promisifyWithMetadata(raw.listAuditRecords.bind(raw), metadata),
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
