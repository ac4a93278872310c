import * as grpc from '@grpc/grpc-js';
import type { RecordUsageRequest } from '../gen/quotad/v1/RecordUsageRequest.js';
import type { RecordUsageResponse__Output } from '../gen/quotad/v1/RecordUsageResponse.js';
import type { Logger } from '../telemetry/logger.js';
import type { GatewayMetrics, SettlementResult } from '../telemetry/gateway-metrics.js';
import { isGrpcError } from '../api/client.js';
import { isTransient, type AuthorityClient } from './authority-client.js';

export interface SettlerOptions {
  authority: AuthorityClient;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Deadline of each RecordUsage attempt. */
  attemptTimeoutMs: number;
  /** Delays before the 2nd, 3rd, ... attempt; their count is the number of retries. */
  backoffMs?: readonly number[];
}

/** About 25 s of retries: an authority restart or a Redis failover is over by then. */
const DEFAULT_BACKOFF_MS = [50, 100, 250, 500, 1_000, 2_000, 4_000, 8_000, 8_000];

/**
 * Answers with which the authority refused a RecordUsage before applying it. After any other failure (a
 * deadline, an unavailable authority or store, a dropped connection) it may have applied it: the call may
 * have reached it, or its store may run a command that timed out once the store is back.
 */
const REFUSED_UNAPPLIED = new Set<number>([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
  grpc.status.RESOURCE_EXHAUSTED,
]);

function mayHaveApplied(error: unknown): boolean {
  return !isGrpcError(error) || !REFUSED_UNAPPLIED.has(error.code);
}

type SettleRequest = RecordUsageRequest & { requestId: string; model: string };

/**
 * Real usage, whose spend is counted under `metricModel` (the policy's canonical name, never the client's
 * text); or the cancellation of a check whose answer never came (no usage; nothing to count).
 */
export type SettlementKind = { metricModel: string } | { cancel: true };

const RESULT: Record<RecordUsageResponse__Output['status'], SettlementResult> = {
  SETTLED: 'settled',
  DUPLICATE: 'duplicate',
  CHARGED_WITHOUT_RESERVATION: 'charged_without_reservation',
  STATUS_UNSPECIFIED: 'settled',
};

/**
 * Reports real usage to the authority off the response path. Each settlement is retried on transient
 * errors (RecordUsage is idempotent per request id, so a retry after a lost answer charges nothing
 * twice), and `drain()` lets shutdown wait until every pending one has landed or given up.
 */
export class Settler {
  readonly #options: SettlerOptions;
  readonly #backoffMs: readonly number[];
  readonly #pending = new Set<Promise<undefined>>();

  constructor(options: SettlerOptions) {
    this.#options = options;
    this.#backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
  }

  /**
   * Starts settling; never throws and never blocks the caller. Resolves (never rejects) with the
   * micro-dollars the authority charged for the request, or undefined when the settlement did not land.
   */
  settle(request: SettleRequest, kind: SettlementKind): Promise<number | undefined> {
    const { metrics } = this.#options;
    metrics.settlementsPending.inc();
    const charged = this.#settle(request, kind);
    const done = charged.then(
      () => undefined,
      () => undefined,
    );
    this.#pending.add(done);
    void done.finally(() => {
      metrics.settlementsPending.dec();
      this.#pending.delete(done);
    });
    return charged.catch(() => undefined);
  }

  /** Settlements not yet answered. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Resolves when every settlement started so far has ended. */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async #settle(request: SettleRequest, kind: SettlementKind): Promise<number | undefined> {
    const { authority, metrics, logger, attemptTimeoutMs } = this.#options;
    // Whether some failed attempt may still have been applied: then giving up is not knowing, not losing.
    let uncertain = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await authority.record(request, attemptTimeoutMs);
        metrics.settlements.inc({ result: RESULT[answer.status] });
        const usd = (answer.charged?.usdMicros ?? 0) / 1_000_000;
        if (usd > 0 && 'metricModel' in kind) metrics.spend.inc({ model: kind.metricModel }, usd);
        return answer.charged?.usdMicros ?? 0;
      } catch (error) {
        uncertain ||= mayHaveApplied(error);
        const delay = this.#backoffMs[attempt];
        if (isTransient(error) && delay !== undefined) {
          metrics.settlementRetries.inc();
          await new Promise((resolve) => setTimeout(resolve, delay));
          continue;
        }
        metrics.settlements.inc({ result: uncertain ? 'unknown' : 'failed' });
        const context = {
          requestId: request.requestId,
          attempts: attempt + 1,
          err: (error as Error).message,
        };
        if ('cancel' in kind) {
          logger.warn(
            context,
            uncertain
              ? 'cancellation of a check unconfirmed: unless the authority recorded it, a reservation the check made keeps its estimate, and its slot until its lease ends'
              : 'the authority refused to cancel a check: a reservation it made keeps its estimate, and its slot until its lease ends',
          );
          return undefined;
        }
        const usage = {
          ...context,
          model: request.model,
          inputTokens: request.inputTokens,
          outputTokens: request.outputTokens,
          outcome: request.outcome,
        };
        if (uncertain) {
          logger.warn(
            usage,
            'settlement outcome unknown after every retry: the authority may have recorded this usage; if not, the request stays charged what its check reserved (nothing, if it went through unmetered)',
          );
        } else {
          logger.error(usage, 'settlement refused by the authority: this usage is not recorded');
        }
        return undefined;
      }
    }
  }
}
