import * as grpc from '@grpc/grpc-js';
import { isGrpcError, quotaServiceClient } from '../api/client.js';
import { MAX_BATCH_ITEMS } from '../api/limits.js';
import { Batcher } from './batcher.js';
import type { CheckQuotaRequest } from '../gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../gen/quotad/v1/CheckQuotaResponse.js';
import type { GetUsageRequest } from '../gen/quotad/v1/GetUsageRequest.js';
import type { GetUsageResponse__Output } from '../gen/quotad/v1/GetUsageResponse.js';
import type { ListModelsRequest } from '../gen/quotad/v1/ListModelsRequest.js';
import type { ListModelsResponse__Output } from '../gen/quotad/v1/ListModelsResponse.js';
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

/** The call failed in a way a retry may fix, and that the fail mode decides when checking. */
export function isTransient(error: unknown): boolean {
  return isGrpcError(error) && TRANSIENT.has(error.code);
}

/** Items per batch call: a busy turn's calls in a few batches, each well under the contract's MAX_BATCH_ITEMS. */
const GATEWAY_BATCH_ITEMS = Math.min(256, MAX_BATCH_ITEMS);

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
  const api = quotaServiceClient(target, {
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.token !== undefined ? { token: options.token } : {}),
    channelOptions: {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
      // Notice a dead authority between requests, not on the next request's deadline.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
    },
  });
  const checkOne: AuthorityClient['check'] = api.checkQuota;
  const recordOne: AuthorityClient['record'] = api.recordUsage;
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
    const checks = new Batcher<CheckQuotaRequest, CheckQuotaResponse__Output>({
      sendBatch: async (items, deadlineMs) =>
        (await api.checkQuotaBatch({ checks: items }, deadlineMs)).results,
      sendOne: checkOne,
      maxItems: GATEWAY_BATCH_ITEMS,
      onUnimplemented,
    });
    const records = new Batcher<RecordUsageRequest, RecordUsageResponse__Output>({
      sendBatch: async (items, deadlineMs) =>
        (await api.recordUsageBatch({ records: items }, deadlineMs)).results,
      sendOne: recordOne,
      maxItems: GATEWAY_BATCH_ITEMS,
      onUnimplemented,
    });
    check = (request, deadlineMs) => checks.call(request, deadlineMs);
    record = (request, deadlineMs) => records.call(request, deadlineMs);
  }
  return {
    check,
    record,
    usage: api.getUsage,
    models: api.listModels,
    ready: api.ready,
    close: api.close,
  };
}
