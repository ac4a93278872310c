import * as grpc from '@grpc/grpc-js';
import type { Decision, LimitReport } from '../core/decision.js';
import {
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  OverloadedError,
  PermissionDeniedError,
  StoreFullError,
  StoreUnavailableError,
  UnauthenticatedError,
} from '../core/errors.js';
import type { LimitKind, LimitUnit } from '../core/policy.js';
import type { CheckQuotaResponse } from '../gen/quotad/v1/CheckQuotaResponse.js';
import type { LimitStatus } from '../gen/quotad/v1/LimitStatus.js';
import type { QuotaServiceHandlers } from '../gen/quotad/v1/QuotaService.js';
import type { RecordUsageResponse } from '../gen/quotad/v1/RecordUsageResponse.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics, GrpcMethod, GrpcStatusName } from '../telemetry/metrics.js';
import type { QuotaAuthority, SettlementReport } from './quota-authority.js';
import { bearerTokenCheck } from './bearer-token.js';
import { MAX_BATCH_ITEMS } from '../api/limits.js';
import { AUTHORITY_TOKEN_REFUSAL, INVALID_KEY_REFUSAL, REFUSAL_TRAILER } from '../api/trailers.js';
import { toCheckInput, toRecordInput, toUsageCredential } from './validate.js';

const UNIT: Record<LimitUnit, LimitStatus['unit']> = {
  requests: 'REQUESTS',
  tokens: 'TOKENS',
  usd_micros: 'USD_MICROS',
  concurrent: 'CONCURRENT',
};
const KIND: Record<LimitKind, LimitStatus['kind']> = {
  rate: 'RATE',
  budget: 'BUDGET',
  concurrency: 'CONCURRENCY',
};
const SETTLE_STATUS: Record<SettlementReport['status'], RecordUsageResponse['status']> = {
  settled: 'SETTLED',
  duplicate: 'DUPLICATE',
  charged_without_reservation: 'CHARGED_WITHOUT_RESERVATION',
};

export function toLimitStatus(report: LimitReport): LimitStatus {
  const { spec } = report;
  return {
    name: spec.name,
    unit: UNIT[spec.unit],
    kind: KIND[spec.kind],
    limit: spec.limit,
    used: report.used,
    remaining: report.remaining,
    resetAfterMs: report.resetAfterMs,
    exceeded: report.exceeded,
    shadow: spec.shadow,
    retryAfterMs: report.retryAfterMs,
    windowMs: spec.kind === 'rate' ? spec.windowMs : 0,
    periodStartMs: report.periodStartMs,
    periodEndMs: report.periodEndMs,
    reserved: report.reserved,
    held: report.held,
  };
}

export function toCheckResponse(decision: Decision): CheckQuotaResponse {
  return {
    allowed: decision.allowed,
    code: decision.code,
    reason: decision.reason,
    retryAfterMs: decision.retryAfterMs,
    limits: decision.limits.map(toLimitStatus),
    reservation: decision.reservation ?? null,
    maxOutputTokens: decision.maxOutputTokens,
    degraded: decision.degraded,
    duplicate: decision.duplicate,
    model: decision.model,
    key: decision.key ?? null,
    warning: decision.warning,
  };
}

/** When the caller stops waiting, in Unix ms (Infinity when it set no deadline). */
function deadlineOf(call: { getDeadline(): grpc.Deadline }): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

function toRecordResponse(report: SettlementReport): RecordUsageResponse {
  return {
    status: SETTLE_STATUS[report.status],
    charged: report.charged,
    reservedTokens: report.reserved.tokens,
    reservedUsdMicros: report.reserved.usdMicros,
    limits: report.limits.map(toLimitStatus),
    late: report.late,
  };
}

/** A gRPC status for an error from the authority: bad input, an unreachable store, or a bug. */
export function toServiceError(
  error: unknown,
  logger: Logger,
  method: GrpcMethod,
): Partial<grpc.StatusObject> {
  if (error instanceof InvalidArgumentError) {
    return { code: grpc.status.INVALID_ARGUMENT, details: error.message };
  }
  if (error instanceof NotFoundError) return { code: grpc.status.NOT_FOUND, details: error.message };
  if (error instanceof ConflictError) return { code: grpc.status.ABORTED, details: error.message };
  if (error instanceof UnauthenticatedError) {
    const metadata = new grpc.Metadata();
    metadata.set(REFUSAL_TRAILER, INVALID_KEY_REFUSAL);
    return { code: grpc.status.UNAUTHENTICATED, details: error.message, metadata };
  }
  if (error instanceof PermissionDeniedError) {
    const metadata = new grpc.Metadata();
    metadata.set(REFUSAL_TRAILER, error.refusal);
    return { code: grpc.status.PERMISSION_DENIED, details: error.message, metadata };
  }
  if (error instanceof StoreFullError)
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: error.message };
  if (error instanceof StoreUnavailableError) {
    return { code: grpc.status.UNAVAILABLE, details: `quota store unavailable; retry: ${error.message}` };
  }
  if (error instanceof OverloadedError) {
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: `authority overloaded: ${error.message}` };
  }
  logger.error({ err: error, method }, 'internal error');
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}

/**
 * Kept back from a batch's deadline per item, beyond what one call keeps: after the store's wait ends,
 * every item must still be decided (by its failure policy, when the store said nothing), cancelled where
 * late, logged and encoded. A thousand of them took 0.6 s of wall time on two cores at load 7, and more
 * at load 10 (store-stall.test.ts), so a 1,000-item batch keeps back a second of a 2 s deadline; never
 * more than half of what remains, so the store is always given the other half.
 */
const BATCH_ANSWER_MS_PER_ITEM = 1;

/** The deadline each item of a batch of `items` works to, so that the whole answer leaves in time. */
function itemDeadline(deadlineMs: number, items: number, nowMs = Date.now()): number {
  if (!Number.isFinite(deadlineMs)) return deadlineMs;
  return deadlineMs - Math.min(items * BATCH_ANSWER_MS_PER_ITEM, Math.max(0, deadlineMs - nowMs) / 2);
}

function requireBatch<T>(field: string, items: readonly T[]): readonly T[] {
  if (items.length === 0 || items.length > MAX_BATCH_ITEMS) {
    throw new InvalidArgumentError(field, `must hold 1 to ${MAX_BATCH_ITEMS} items, not ${items.length}`);
  }
  return items;
}

export interface QuotaServiceOptions {
  /**
   * When set, every call must carry `authorization: Bearer <token>` (QUOTAD_AUTHORITY_TOKEN); any other is
   * UNAUTHENTICATED, with the trailer quotad-refusal: AUTHORITY_TOKEN, before anything is read or charged.
   */
  token?: string;
}

/**
 * QuotaService over gRPC: validates, calls the authority, maps the answer; no decision logic here. Its
 * callers are trusted to name principals (or to pass on the hashes of keys their users presented).
 *
 * A batch runs every item as its own call would, all started in the same turn of the event loop: their
 * store commands leave together, one pipelined Redis round trip for the whole batch. An item that fails
 * (bad input, the store out) gets its own error; the others are decided regardless.
 */
export function quotaServiceHandlers(
  authority: QuotaAuthority,
  metrics: AuthorityMetrics,
  logger: Logger,
  options: QuotaServiceOptions = {},
): QuotaServiceHandlers {
  const authorized = options.token === undefined ? () => true : bearerTokenCheck(options.token);
  function unary<Req, Res>(
    method: GrpcMethod,
    handle: (request: Req, deadlineMs: number) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      if (!authorized(call.metadata)) {
        metrics.grpcRequests.inc({ method, code: 'UNAUTHENTICATED' });
        const metadata = new grpc.Metadata();
        metadata.set(REFUSAL_TRAILER, AUTHORITY_TOKEN_REFUSAL);
        callback({
          code: grpc.status.UNAUTHENTICATED,
          details:
            "this authority's QuotaService requires its token (authorization: Bearer <QUOTAD_AUTHORITY_TOKEN>)",
          metadata,
        });
        return;
      }
      handle(call.request, deadlineOf(call)).then(
        (response) => {
          metrics.grpcRequests.inc({ method, code: 'OK' });
          callback(null, response);
        },
        (error: unknown) => {
          const status = toServiceError(error, logger, method);
          metrics.grpcRequests.inc({
            method,
            code: grpc.status[status.code as grpc.status] as GrpcStatusName,
          });
          callback(status);
        },
      );
    };
  }
  /** One batch item: its answer, or the status its own call would have failed with. */
  async function item<Res>(
    method: GrpcMethod,
    handle: () => Promise<Res>,
  ): Promise<{ response: Res } | { error: { code: number; message: string } }> {
    try {
      return { response: await handle() };
    } catch (error) {
      const status = toServiceError(error, logger, method);
      return { error: { code: status.code ?? grpc.status.UNKNOWN, message: status.details ?? '' } };
    }
  }
  return {
    CheckQuotaBatch: unary('CheckQuotaBatch', async (request, deadlineMs) => {
      const checks = requireBatch('checks', request.checks);
      metrics.batchItems.observe({ method: 'CheckQuotaBatch' }, checks.length);
      const itemDeadlineMs = itemDeadline(deadlineMs, checks.length);
      const results = await Promise.all(
        checks.map((check) =>
          item('CheckQuotaBatch', async () =>
            toCheckResponse(await authority.check(toCheckInput(check), itemDeadlineMs)),
          ),
        ),
      );
      return { results };
    }),
    RecordUsageBatch: unary('RecordUsageBatch', async (request, deadlineMs) => {
      const records = requireBatch('records', request.records);
      metrics.batchItems.observe({ method: 'RecordUsageBatch' }, records.length);
      const itemDeadlineMs = itemDeadline(deadlineMs, records.length);
      const results = await Promise.all(
        records.map((record) =>
          item('RecordUsageBatch', async () =>
            toRecordResponse(await authority.record(toRecordInput(record), itemDeadlineMs)),
          ),
        ),
      );
      return { results };
    }),
    CheckQuota: unary('CheckQuota', async (request, deadlineMs) =>
      toCheckResponse(await authority.check(toCheckInput(request), deadlineMs)),
    ),
    RecordUsage: unary('RecordUsage', async (request, deadlineMs) =>
      toRecordResponse(await authority.record(toRecordInput(request), deadlineMs)),
    ),
    GetUsage: unary('GetUsage', async (request, deadlineMs) => {
      const usage = await authority.usage(toUsageCredential(request), 'caller', deadlineMs);
      return {
        tier: usage.tier,
        limits: usage.limits.map(toLimitStatus),
        tokensUsed: usage.tokensUsed,
        usdMicrosSpent: usage.usdMicrosSpent,
        key: usage.key ?? null,
        warning: usage.warning,
      };
    }),
    ListModels: unary('ListModels', async (request, deadlineMs) => {
      const report = await authority.models(toUsageCredential(request), deadlineMs);
      return {
        tier: report.tier,
        models: report.models.map(({ spec, aliases }) => ({
          id: spec.name,
          aliases,
          inputUsdMicrosPerMillion: spec.inputMicrosPerMillion,
          outputUsdMicrosPerMillion: spec.outputMicrosPerMillion,
        })),
        key: report.key ?? null,
        warning: report.warning,
      };
    }),
  };
}
