import * as grpc from '@grpc/grpc-js';
import { loadQuotaPackage } from '../authority/proto.js';
import { Batcher } from './batcher.js';
import type { CheckQuotaBatchRequest } from '../gen/quotad/v1/CheckQuotaBatchRequest.js';
import type { CheckQuotaBatchResponse__Output } from '../gen/quotad/v1/CheckQuotaBatchResponse.js';
import type { CheckQuotaRequest } from '../gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../gen/quotad/v1/CheckQuotaResponse.js';
import type { GetUsageRequest } from '../gen/quotad/v1/GetUsageRequest.js';
import type { GetUsageResponse__Output } from '../gen/quotad/v1/GetUsageResponse.js';
import type { ListModelsRequest } from '../gen/quotad/v1/ListModelsRequest.js';
import type { ListModelsResponse__Output } from '../gen/quotad/v1/ListModelsResponse.js';
import type { QuotaServiceClient } from '../gen/quotad/v1/QuotaService.js';
import type { RecordUsageBatchRequest } from '../gen/quotad/v1/RecordUsageBatchRequest.js';
import type { RecordUsageBatchResponse__Output } from '../gen/quotad/v1/RecordUsageBatchResponse.js';
import type { RecordUsageRequest } from '../gen/quotad/v1/RecordUsageRequest.js';
import type { RecordUsageResponse__Output } from '../gen/quotad/v1/RecordUsageResponse.js';

/** The authority's QuotaService, as the gateway calls it: promises with a deadline per call. */
export interface AuthorityClient {
  check(request: CheckQuotaRequest, deadlineMs: number): Promise<CheckQuotaResponse__Output>;
  record(request: RecordUsageRequest, deadlineMs: number): Promise<RecordUsageResponse__Output>;
  usage(request: GetUsageRequest, deadlineMs: number): Promise<GetUsageResponse__Output>;
  models(request: ListModelsRequest, deadlineMs: number): Promise<ListModelsResponse__Output>;
  /** Whether a connection to some authority is up, or comes up within `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean>;
  close(): void;
}

/** gRPC codes worth another try: the authority (or the way to it) failed, not the request. */
const TRANSIENT = new Set<number>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.CANCELLED,
]);

export function isGrpcError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}

/** The call failed in a way a retry may fix, and that the fail mode decides when checking. */
export function isTransient(error: unknown): boolean {
  return isGrpcError(error) && TRANSIENT.has(error.code);
}

type Callback<Res> = (error: grpc.ServiceError | null, response?: Res) => void;

function unary<Req, Res>(
  call: (
    request: Req,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: Callback<Res>,
  ) => unknown,
  metadata: () => grpc.Metadata,
): (request: Req, deadlineMs: number) => Promise<Res> {
  return (request, deadlineMs) =>
    new Promise((resolve, reject) => {
      call(request, metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
        error ? reject(error) : resolve(response as Res),
      );
    });
}

/** Items per batch call: a busy turn's calls in a few batches, each well under the authority's 1,000. */
const MAX_BATCH_ITEMS = 256;

export interface AuthorityClientOptions {
  /** Coalesce the checks and settlements of one event-loop turn into one batch call (default on). */
  batch?: boolean;
  /** Told once if the authority answers batches with UNIMPLEMENTED (older than batching). */
  onBatchUnimplemented?: () => void;
  /** TLS, possibly with a client certificate; plaintext when absent. */
  credentials?: grpc.ChannelCredentials;
  /** Sent as `authorization: Bearer <token>` with every call, for an authority that requires it. */
  token?: string;
}

/**
 * A client for `target`: `host:port`, or `dns:///name:port` to resolve every address of a headless
 * service and spread calls over all of them (round robin), re-resolving as replicas come and go.
 */
export function connectAuthority(target: string, options: AuthorityClientOptions = {}): AuthorityClient {
  const { proto } = loadQuotaPackage();
  const raw: QuotaServiceClient = new proto.quotad.v1.QuotaService(
    target,
    options.credentials ?? grpc.credentials.createInsecure(),
    {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
      // Notice a dead authority between requests, not on the next request's deadline.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
    },
  );
  const metadata = () => {
    const sent = new grpc.Metadata();
    if (options.token !== undefined) sent.set('authorization', `Bearer ${options.token}`);
    return sent;
  };
  const checkOne: AuthorityClient['check'] = unary(raw.checkQuota.bind(raw), metadata);
  const recordOne: AuthorityClient['record'] = unary(raw.recordUsage.bind(raw), metadata);
  let check = checkOne;
  let record = recordOne;
  if (options.batch ?? true) {
    // Each batcher finds out on its own; the caller hears of it once.
    let told = false;
    const onUnimplemented = () => {
      if (told) return;
      told = true;
      options.onBatchUnimplemented?.();
    };
    const checkBatch = unary<CheckQuotaBatchRequest, CheckQuotaBatchResponse__Output>(
      raw.checkQuotaBatch.bind(raw),
      metadata,
    );
    const recordBatch = unary<RecordUsageBatchRequest, RecordUsageBatchResponse__Output>(
      raw.recordUsageBatch.bind(raw),
      metadata,
    );
    const checks = new Batcher<CheckQuotaRequest, CheckQuotaResponse__Output>({
      sendBatch: async (items, deadlineMs) => (await checkBatch({ checks: items }, deadlineMs)).results,
      sendOne: checkOne,
      maxItems: MAX_BATCH_ITEMS,
      onUnimplemented,
    });
    const records = new Batcher<RecordUsageRequest, RecordUsageResponse__Output>({
      sendBatch: async (items, deadlineMs) => (await recordBatch({ records: items }, deadlineMs)).results,
      sendOne: recordOne,
      maxItems: MAX_BATCH_ITEMS,
      onUnimplemented,
    });
    check = (request, deadlineMs) => checks.call(request, deadlineMs);
    record = (request, deadlineMs) => records.call(request, deadlineMs);
  }
  return {
    check,
    record,
    usage: unary(raw.getUsage.bind(raw), metadata),
    models: unary(raw.listModels.bind(raw), metadata),
    ready: (timeoutMs) =>
      new Promise((resolve) => raw.waitForReady(Date.now() + timeoutMs, (error) => resolve(!error))),
    close: () => raw.close(),
  };
}
