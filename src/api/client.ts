/**
 * The one typed client of the authority's services: promise-returning methods, a deadline on every call
 * and the caller's token in its metadata. The gateway, the admin CLI, the tests and the benchmarks all
 * call the authority through it.
 */
import * as grpc from '@grpc/grpc-js';
import type { AdminServiceClient } from '../gen/quotad/v1/AdminService.js';
import type { ApiKey__Output } from '../gen/quotad/v1/ApiKey.js';
import type { CheckQuotaBatchRequest } from '../gen/quotad/v1/CheckQuotaBatchRequest.js';
import type { CheckQuotaBatchResponse__Output } from '../gen/quotad/v1/CheckQuotaBatchResponse.js';
import type { CheckQuotaRequest } from '../gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../gen/quotad/v1/CheckQuotaResponse.js';
import type { ConfirmStoreResetRequest } from '../gen/quotad/v1/ConfirmStoreResetRequest.js';
import type { ConfirmStoreResetResponse__Output } from '../gen/quotad/v1/ConfirmStoreResetResponse.js';
import type { CreateKeyRequest } from '../gen/quotad/v1/CreateKeyRequest.js';
import type { CreateKeyResponse__Output } from '../gen/quotad/v1/CreateKeyResponse.js';
import type { GetKeyRequest } from '../gen/quotad/v1/GetKeyRequest.js';
import type { GetKeyUsageRequest } from '../gen/quotad/v1/GetKeyUsageRequest.js';
import type { GetKeyUsageResponse__Output } from '../gen/quotad/v1/GetKeyUsageResponse.js';
import type { GetUsageRequest } from '../gen/quotad/v1/GetUsageRequest.js';
import type { GetUsageResponse__Output } from '../gen/quotad/v1/GetUsageResponse.js';
import type { ListAuditRecordsRequest } from '../gen/quotad/v1/ListAuditRecordsRequest.js';
import type { ListAuditRecordsResponse__Output } from '../gen/quotad/v1/ListAuditRecordsResponse.js';
import type { ListKeysRequest } from '../gen/quotad/v1/ListKeysRequest.js';
import type { ListKeysResponse__Output } from '../gen/quotad/v1/ListKeysResponse.js';
import type { ListModelsRequest } from '../gen/quotad/v1/ListModelsRequest.js';
import type { ListModelsResponse__Output } from '../gen/quotad/v1/ListModelsResponse.js';
import type { QuotaServiceClient } from '../gen/quotad/v1/QuotaService.js';
import type { RecordUsageBatchRequest } from '../gen/quotad/v1/RecordUsageBatchRequest.js';
import type { RecordUsageBatchResponse__Output } from '../gen/quotad/v1/RecordUsageBatchResponse.js';
import type { RecordUsageRequest } from '../gen/quotad/v1/RecordUsageRequest.js';
import type { RecordUsageResponse__Output } from '../gen/quotad/v1/RecordUsageResponse.js';
import type { RevokeKeyRequest } from '../gen/quotad/v1/RevokeKeyRequest.js';
import type { RotateKeyRequest } from '../gen/quotad/v1/RotateKeyRequest.js';
import type { RotateKeyResponse__Output } from '../gen/quotad/v1/RotateKeyResponse.js';
import type { SetKeyLimitsRequest } from '../gen/quotad/v1/SetKeyLimitsRequest.js';
import type { ListEventsRequest } from '../gen/quotad/v1/ListEventsRequest.js';
import type { ListEventsResponse__Output } from '../gen/quotad/v1/ListEventsResponse.js';
import type { SetKeySigningRequest } from '../gen/quotad/v1/SetKeySigningRequest.js';
import type { SetKeySigningResponse__Output } from '../gen/quotad/v1/SetKeySigningResponse.js';
import { loadQuotaPackage } from './proto.js';

/** A unary call; without `deadlineMs`, the client's default deadline applies. */
export type Unary<Req, Res> = (request: Req, deadlineMs?: number) => Promise<Res>;

export interface ClientOptions {
  /** TLS, possibly with a client certificate; plaintext when absent. */
  credentials?: grpc.ChannelCredentials;
  /** Sent as `authorization: Bearer <token>` with every call. */
  token?: string;
  /** The deadline of a call that names none (default 5 s). */
  deadlineMs?: number;
  channelOptions?: grpc.ChannelOptions;
}

/** QuotaService with promise methods. */
export interface QuotaApi {
  raw: QuotaServiceClient;
  checkQuota: Unary<CheckQuotaRequest, CheckQuotaResponse__Output>;
  recordUsage: Unary<RecordUsageRequest, RecordUsageResponse__Output>;
  getUsage: Unary<GetUsageRequest, GetUsageResponse__Output>;
  listModels: Unary<ListModelsRequest, ListModelsResponse__Output>;
  checkQuotaBatch: Unary<CheckQuotaBatchRequest, CheckQuotaBatchResponse__Output>;
  recordUsageBatch: Unary<RecordUsageBatchRequest, RecordUsageBatchResponse__Output>;
  /** Whether a connection to some authority is up, or comes up within `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean>;
  close(): void;
}

/** AdminService with promise methods. */
export interface AdminApi {
  raw: AdminServiceClient;
  createKey: Unary<CreateKeyRequest, CreateKeyResponse__Output>;
  listKeys: Unary<ListKeysRequest, ListKeysResponse__Output>;
  getKey: Unary<GetKeyRequest, ApiKey__Output>;
  revokeKey: Unary<RevokeKeyRequest, ApiKey__Output>;
  rotateKey: Unary<RotateKeyRequest, RotateKeyResponse__Output>;
  setKeyLimits: Unary<SetKeyLimitsRequest, ApiKey__Output>;
  getKeyUsage: Unary<GetKeyUsageRequest, GetKeyUsageResponse__Output>;
  confirmStoreReset: Unary<ConfirmStoreResetRequest, ConfirmStoreResetResponse__Output>;
  listEvents: Unary<ListEventsRequest, ListEventsResponse__Output>;
  setKeySigning: Unary<SetKeySigningRequest, SetKeySigningResponse__Output>;
  listAuditRecords: Unary<ListAuditRecordsRequest, ListAuditRecordsResponse__Output>;
  close(): void;
}

/** A failure the server (or the channel) answered with a gRPC status. */
export function isGrpcError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<Res>,
) => unknown;

function promised(options: ClientOptions) {
  const defaultDeadlineMs = options.deadlineMs ?? 5_000;
  const metadata = () => {
    const sent = new grpc.Metadata();
    if (options.token !== undefined) sent.set('authorization', `Bearer ${options.token}`);
    return sent;
  };
  return <Req, Res>(method: UnaryMethod<Req, Res>): Unary<Req, Res> =>
    (request, deadlineMs = defaultDeadlineMs) =>
      new Promise((resolve, reject) => {
        method(request, metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
          error ? reject(error) : resolve(response as Res),
        );
      });
}

/** A QuotaService client for `target` (`host:port`, or any gRPC target such as `dns:///name:port`). */
export function quotaServiceClient(target: string, options: ClientOptions = {}): QuotaApi {
  const { proto } = loadQuotaPackage();
  const raw: QuotaServiceClient = new proto.quotad.v1.QuotaService(
    target,
    options.credentials ?? grpc.credentials.createInsecure(),
    options.channelOptions,
  );
  const unary = promised(options);
  return {
    raw,
    checkQuota: unary(raw.checkQuota.bind(raw)),
    recordUsage: unary(raw.recordUsage.bind(raw)),
    getUsage: unary(raw.getUsage.bind(raw)),
    listModels: unary(raw.listModels.bind(raw)),
    checkQuotaBatch: unary(raw.checkQuotaBatch.bind(raw)),
    recordUsageBatch: unary(raw.recordUsageBatch.bind(raw)),
    ready: (timeoutMs) =>
      new Promise((resolve) => raw.waitForReady(Date.now() + timeoutMs, (error) => resolve(!error))),
    close: () => raw.close(),
  };
}

/** An AdminService client for `target`. */
export function adminServiceClient(target: string, options: ClientOptions = {}): AdminApi {
  const { proto } = loadQuotaPackage();
  const raw: AdminServiceClient = new proto.quotad.v1.AdminService(
    target,
    options.credentials ?? grpc.credentials.createInsecure(),
    options.channelOptions,
  );
  const unary = promised(options);
  return {
    raw,
    createKey: unary(raw.createKey.bind(raw)),
    listKeys: unary(raw.listKeys.bind(raw)),
    getKey: unary(raw.getKey.bind(raw)),
    revokeKey: unary(raw.revokeKey.bind(raw)),
    rotateKey: unary(raw.rotateKey.bind(raw)),
    setKeyLimits: unary(raw.setKeyLimits.bind(raw)),
    getKeyUsage: unary(raw.getKeyUsage.bind(raw)),
    confirmStoreReset: unary(raw.confirmStoreReset.bind(raw)),
    listEvents: unary(raw.listEvents.bind(raw)),
    setKeySigning: unary(raw.setKeySigning.bind(raw)),
    listAuditRecords: unary(raw.listAuditRecords.bind(raw)),
    close: () => raw.close(),
  };
}
