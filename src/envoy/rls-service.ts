import * as grpc from '@grpc/grpc-js';
import { InvalidArgumentError, StoreFullError, StoreUnavailableError } from '../core/errors.js';
import type {
  EnvoyCounterSpec,
  EnvoyCounterState,
  EnvoyRateLimitCommand,
  EnvoyRateLimitResult,
  EnvoyRateLimitStore,
} from '../store/envoy-store.js';
import { within } from '../store/within.js';
import type { EnvoyMetrics, EnvoyStoreFailureMode } from '../telemetry/envoy-metrics.js';
import { UNKNOWN_DOMAIN_LABEL } from '../telemetry/envoy-metrics.js';
import type { Logger } from '../telemetry/logger.js';
import type { EnvoyConfig } from './config.js';
import type { DescriptorMatch, LimitedMatch } from './match.js';
import { matchDescriptors } from './match.js';
import { parseRlsRequest, type RlsRequestMessage } from './rls-request.js';

/** How long an unsettled reservation is kept for its settlement, and a settled one remembered. */
export const ENVOY_RESERVATION_TTL_MS = 3_600_000;
/** `limit_remaining` of an unlimited descriptor, as envoyproxy/ratelimit reports it. */
const UNLIMITED_REMAINING = 4_294_967_295;

/** The RateLimit headers envoyproxy/ratelimit adds when its custom headers are on (and their names). */
export const RATE_LIMIT_HEADERS = {
  limit: 'RateLimit-Limit',
  remaining: 'RateLimit-Remaining',
  reset: 'RateLimit-Reset',
} as const;

interface DescriptorStatusMessage {
  code: 'OK' | 'OVER_LIMIT';
  current_limit?: { name?: string; requests_per_unit: number; unit: string };
  limit_remaining?: number;
  duration_until_reset?: { seconds: string; nanos: number };
}

export interface RlsResponseMessage {
  overall_code: 'OK' | 'OVER_LIMIT';
  statuses: DescriptorStatusMessage[];
  response_headers_to_add: { key: string; value: string }[];
}

export interface RateLimitServiceOptions {
  config: () => EnvoyConfig;
  store: EnvoyRateLimitStore;
  /** The in-process store `local` falls back to while `store` is out. */
  fallback: EnvoyRateLimitStore;
  onStoreFailure: EnvoyStoreFailureMode;
  /** How many authority replicas share the limits: `local` allows limit ÷ replicas on each. */
  replicas: () => number;
  /** The longest a store call is waited for; a call's own deadline may leave less. */
  maxStoreWaitMs: number;
  metrics: EnvoyMetrics;
  logger: Logger;
}

function durationOf(ms: number): { seconds: string; nanos: number } {
  const whole = Math.max(0, Math.ceil(ms));
  return { seconds: String(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 };
}

function limitedStatus(match: LimitedMatch, state: EnvoyCounterState | undefined): DescriptorStatusMessage {
  const current_limit = {
    ...(match.name === undefined ? {} : { name: match.name }),
    requests_per_unit: match.requestsPerUnit,
    unit: match.unit.toUpperCase(),
  };
  if (!state) return { code: 'OK', current_limit };
  const untilReset = state.exceeded && state.retryAfterMs > 0 ? state.retryAfterMs : state.resetAfterMs;
  return {
    code: state.exceeded ? 'OVER_LIMIT' : 'OK',
    current_limit,
    limit_remaining: state.remaining,
    duration_until_reset: durationOf(untilReset),
  };
}

/** The RateLimit headers of the descriptor with the least remaining, as envoyproxy/ratelimit picks it. */
function headersOf(
  statuses: readonly DescriptorStatusMessage[],
): RlsResponseMessage['response_headers_to_add'] {
  let least: DescriptorStatusMessage | undefined;
  for (const status of statuses) {
    if (!status.current_limit || status.limit_remaining === undefined) continue;
    if (!least || status.limit_remaining < (least.limit_remaining as number)) least = status;
  }
  if (!least?.current_limit) return [];
  return [
    { key: RATE_LIMIT_HEADERS.limit, value: String(least.current_limit.requests_per_unit) },
    { key: RATE_LIMIT_HEADERS.remaining, value: String(least.limit_remaining) },
    { key: RATE_LIMIT_HEADERS.reset, value: least.duration_until_reset?.seconds ?? '0' },
  ];
}

function deadlineWaitMs(call: grpc.ServerUnaryCall<unknown, unknown>, maxMs: number): number {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (!Number.isFinite(at)) return maxMs;
  return Math.min(maxMs, at - Date.now());
}

/**
 * Envoy's RateLimitService over the domains in force: match each descriptor, then one store command for
 * all of them (all or nothing), and the answer in Envoy's terms.
 */
export class RateLimitService {
  readonly #options: RateLimitServiceOptions;

  constructor(options: RateLimitServiceOptions) {
    this.#options = options;
  }

  /** The gRPC handlers, for `server.addService`. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      ShouldRateLimit: (
        call: grpc.ServerUnaryCall<RlsRequestMessage, RlsResponseMessage>,
        callback: grpc.sendUnaryData<RlsResponseMessage>,
      ) => {
        const waitMs = deadlineWaitMs(
          call as grpc.ServerUnaryCall<unknown, unknown>,
          this.#options.maxStoreWaitMs,
        );
        this.shouldRateLimit(call.request, waitMs).then(
          (response) => {
            this.#options.metrics.calls.inc({ code: 'OK' });
            callback(null, response);
          },
          (error: unknown) => {
            const [code, name] =
              error instanceof InvalidArgumentError
                ? [grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT']
                : error instanceof StoreFullError
                  ? [grpc.status.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED']
                  : [grpc.status.INTERNAL, 'INTERNAL'];
            this.#options.metrics.calls.inc({ code: name });
            if (code === grpc.status.INTERNAL) {
              this.#options.logger.error({ err: (error as Error).message }, 'ShouldRateLimit failed');
            }
            callback({ code, details: (error as Error).message });
          },
        );
      },
    };
  }

  /** Decides one request; rejects with InvalidArgumentError for bad input (nothing changed). */
  async shouldRateLimit(
    message: RlsRequestMessage,
    waitMs = this.#options.maxStoreWaitMs,
  ): Promise<RlsResponseMessage> {
    const started = process.hrtime.bigint();
    const { query, phase, requestId, underRequestId } = parseRlsRequest(message);
    const config = this.#options.config();
    const known = config.domains.has(query.domain);
    const domainLabel = known ? query.domain : UNKNOWN_DOMAIN_LABEL;
    const matches = matchDescriptors(config, query);
    const limited: { index: number; match: LimitedMatch }[] = [];
    matches.forEach((match, index) => {
      if (match.kind === 'limited') limited.push({ index, match });
    });

    let result: EnvoyRateLimitResult | undefined;
    let degraded: EnvoyStoreFailureMode | undefined;
    // An unknown domain has nothing to count; a settle still runs with no counters, to release its reservation.
    if (known && (limited.length > 0 || phase !== 'charge')) {
      const counters: EnvoyCounterSpec[] = limited.map(({ index, match }) => ({
        counterKey: match.counterKey,
        windowMs: match.windowMs,
        limit: match.requestsPerUnit,
        cost: match.hits,
        shadow: match.shadow,
        reserved: underRequestId[index] === true,
      }));
      const command: EnvoyRateLimitCommand = {
        domain: query.domain,
        phase,
        requestId,
        reservationTtlMs: ENVOY_RESERVATION_TTL_MS,
        counters,
      };
      try {
        result = await within(this.#options.store.shouldRateLimit(command), waitMs, 'envoy store');
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        degraded = this.#options.onStoreFailure;
        this.#options.metrics.degraded.inc({ mode: degraded });
        this.#options.logger.warn(
          { err: error.message, domain: query.domain, mode: degraded },
          'envoy store unavailable; --envoy-on-store-failure decides',
        );
        if (degraded === 'local') {
          const replicas = Math.max(1, this.#options.replicas());
          result = await this.#options.fallback.shouldRateLimit({
            ...command,
            counters: counters.map((c) => ({ ...c, limit: Math.floor(c.limit / replicas) })),
          });
        }
      }
    }

    const statuses = this.#statuses(matches, limited, result, degraded);
    const over =
      phase !== 'settle' &&
      (result
        ? result.outcome === 'denied'
        : degraded === 'closed' && limited.some(({ match }) => !match.shadow));
    this.#count(domainLabel, phase, matches, limited, result, over, degraded);
    const response: RlsResponseMessage = {
      overall_code: over ? 'OVER_LIMIT' : 'OK',
      statuses,
      response_headers_to_add: phase === 'settle' ? [] : headersOf(statuses),
    };
    this.#options.metrics.duration.observe({ phase }, Number(process.hrtime.bigint() - started) / 1e9);
    return response;
  }

  #statuses(
    matches: readonly DescriptorMatch[],
    limited: readonly { index: number; match: LimitedMatch }[],
    result: EnvoyRateLimitResult | undefined,
    degraded: EnvoyStoreFailureMode | undefined,
  ): DescriptorStatusMessage[] {
    const statuses: DescriptorStatusMessage[] = matches.map((match) =>
      match.kind === 'unlimited' ? { code: 'OK', limit_remaining: UNLIMITED_REMAINING } : { code: 'OK' },
    );
    limited.forEach(({ index, match }, i) => {
      if (degraded === 'closed' && !result) {
        statuses[index] = { ...limitedStatus(match, undefined), code: 'OVER_LIMIT' };
        return;
      }
      statuses[index] = limitedStatus(match, result?.counters[i]);
    });
    return statuses;
  }

  #count(
    domain: string,
    phase: EnvoyRateLimitCommand['phase'],
    matches: readonly DescriptorMatch[],
    limited: readonly { index: number; match: LimitedMatch }[],
    result: EnvoyRateLimitResult | undefined,
    over: boolean,
    degraded: EnvoyStoreFailureMode | undefined,
  ): void {
    const { metrics } = this.#options;
    metrics.decisions.inc({ domain, code: over ? 'OVER_LIMIT' : 'OK', phase });
    if (result && phase !== 'charge') metrics.reservations.inc({ domain, outcome: result.outcome });
    const charged = result && ['admitted', 'settled', 'settled_without_reservation'].includes(result.outcome);
    for (const match of matches) {
      if (match.kind === 'no_limit') metrics.descriptors.inc({ domain, rule: '', result: 'no_rule' });
      else if (match.kind !== 'limited')
        metrics.descriptors.inc({ domain, rule: match.metricName, result: match.kind });
    }
    limited.forEach(({ match }, i) => {
      // An override's keys come from the caller, not the configuration: one series per domain for them all.
      const rule = match.override ? `${domain}.(limit override)` : match.metricName;
      const state = result?.counters[i];
      const exceeded = state ? state.exceeded : degraded === 'closed';
      const outcome = !exceeded ? 'within_limit' : match.shadow ? 'shadow_over_limit' : 'over_limit';
      metrics.descriptors.inc({ domain, rule, result: outcome });
      if (charged && match.hits > 0) metrics.hitsCharged.inc({ domain, rule }, match.hits);
    });
  }
}
