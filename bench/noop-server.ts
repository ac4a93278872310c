/**
 * The transport ceiling: a grpc-js server with QuotaService loaded as the authority loads it, answering
 * every CheckQuota with a fixed allowed CheckQuotaResponse and every RecordUsage with a fixed SETTLED
 * RecordUsageResponse, shaped like the authority's for the bench tier, at once. When the loaded proto has
 * CheckQuotaBatch and RecordUsageBatch, they answer one fixed response per item the same way.
 *
 *   node dist/bench/noop-server.js    (prints `listening <port>` on loopback; stops on SIGTERM)
 */
import type * as grpc from '@grpc/grpc-js';
import {
  allowedCheckResponse,
  protoHasBatch,
  serveQuotaOnLoopback,
  settledRecordResponse,
} from './common.js';

const check = allowedCheckResponse(Date.now());
const record = settledRecordResponse(Date.now());

type Unary = grpc.handleUnaryCall<unknown, unknown>;
const handlers: Record<string, Unary> = {
  CheckQuota: (_call, callback) => callback(null, check),
  RecordUsage: (_call, callback) => callback(null, record),
};
if (protoHasBatch()) {
  handlers.CheckQuotaBatch = (call, callback) => {
    const { checks } = call.request as { checks: unknown[] };
    callback(null, { results: checks.map(() => ({ response: check })) });
  };
  handlers.RecordUsageBatch = (call, callback) => {
    const { records } = call.request as { records: unknown[] };
    callback(null, { results: records.map(() => ({ response: record })) });
  };
}

await serveQuotaOnLoopback(handlers);
