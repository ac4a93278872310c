import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from './process-metrics.js';
import {
  LATENCY_BUCKETS_SECONDS,
  type LabelledCounter,
  type LabelledHistogram,
  type UnlabelledCounter,
} from './metrics.js';

/** The gateway's routes as metrics name them: a fixed set, so a scanner's paths cannot mint series. */
export type GatewayRoute =
  | 'chat_completions'
  | 'completions'
  | 'embeddings'
  | 'models'
  | 'usage'
  | 'healthz'
  | 'readyz'
  | 'metrics'
  | 'other';

/** The routes that answer API clients (the rest are probes, scrapes and unknown paths). */
const API_ROUTES: readonly GatewayRoute[] = [
  'chat_completions',
  'completions',
  'embeddings',
  'models',
  'usage',
];
/**
 * Answers whose series start at 0 on every API route, so that rate() and increase() see the first one:
 * Prometheus cannot see the rise of a counter that first appears already at 1.
 */
const INITIAL_STATUSES: readonly string[] = ['200', '500', '502', '503', '504'];

/** How the gateway's quota question ended: the authority's code (OK, OVER_LIMIT, ...), or the gRPC status name (DEADLINE_EXCEEDED, ...) when none came. */
export type DecisionResult = string;

/**
 * How a settlement ended: the authority's status; `failed` when the authority refused it (not recorded);
 * `unknown` when the retries ran out after failures that may have been applied (a deadline, an outage).
 */
export type SettlementResult = 'settled' | 'duplicate' | 'charged_without_reservation' | 'failed' | 'unknown';

/**
 * A model call's stages in the gateway itself: `intake` from the request's start to its handler (headers,
 * the key, the body read and parsed), `estimate` (its tokens counted), `relay` from the upstream's answer
 * to the end of the response written (a stream's whole length).
 */
export type GatewayStage = 'intake' | 'estimate' | 'relay';

/** Model calls take seconds; streams, minutes. */
const UPSTREAM_BUCKETS_SECONDS = [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Every gateway metric, in one registry owned by this instance. No label names a key, user or request. */
export class GatewayMetrics {
  readonly registry = new Registry();

  /** Answered HTTP requests by route and status code. */
  readonly requests: LabelledCounter<{ route: GatewayRoute; status: string }>;
  /** Time from request to the end of the response, by route. */
  readonly requestDuration: LabelledHistogram<{ route: GatewayRoute }>;
  /** Model calls: time to the upstream's answer (headers; a JSON body whole), by route and outcome. */
  readonly upstreamDuration: LabelledHistogram<{ route: GatewayRoute; outcome: string }>;
  /** CheckQuota round trips, by the decision's code (or unavailable, deadline_exceeded, error). */
  readonly decisionDuration: LabelledHistogram<{ result: DecisionResult }>;
  /** The gateway's own stages of a model call (the authority's and the model's are the two above). */
  readonly stageDuration: LabelledHistogram<{ stage: GatewayStage }>;
  /** Tokens settled, as the upstream reported them (or counted, when a stream was cut). */
  readonly tokens: LabelledCounter<{ model: string; direction: 'input' | 'output' }>;
  /** Dollars charged, from the authority's settlement at the policy's prices. */
  readonly spend: LabelledCounter<{ model: string }>;
  /** Settlements by how they ended. */
  readonly settlements: LabelledCounter<{ result: SettlementResult }>;
  /** Settlement attempts repeated after a transient authority error. */
  readonly settlementRetries: UnlabelledCounter;
  /** Settlements not yet acknowledged by the authority. */
  readonly settlementsPending: Gauge;
  /** Requests let through without a decision (fail mode open). */
  readonly unmetered: UnlabelledCounter;
  /** Requests refused unanswered (503 server_overloaded): by the gateway's own bound, or by the authority. */
  readonly shed: LabelledCounter<{ by: 'gateway' | 'authority' }>;
  /** Checks sent to the authority and not yet answered. */
  readonly checksPending: Gauge;
  /** Requests being served now. */
  readonly inFlight: Gauge;
  /** Client connections open now. */
  readonly openConnections: Gauge;
  /** Connections closed at once because --max-connections were open. */
  readonly connectionsRefused: UnlabelledCounter;
  /** Requests whose headers or body did not arrive within --header-timeout or --body-timeout. */
  readonly requestTimeouts: UnlabelledCounter;

  constructor(options: { version: string; collectDefault?: boolean }) {
    const registers = [this.registry];
    if (options.collectDefault ?? true) collectProcessMetrics(this.registry);
    const requests = new Counter({
      name: 'quotad_gateway_requests_total',
      help: 'HTTP requests answered, by route and status code.',
      labelNames: ['route', 'status'] as const,
      registers,
    });
    this.requests = requests;
    this.requestDuration = new Histogram({
      name: 'quotad_gateway_request_duration_seconds',
      help: 'Time from request to the end of the response, by route.',
      labelNames: ['route'] as const,
      buckets: UPSTREAM_BUCKETS_SECONDS,
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: 'quotad_gateway_upstream_duration_seconds',
      help: "Time to the upstream model API's answer (its headers; a JSON answer's whole body), by route and outcome (ok, error, aborted by a client that left).",
      labelNames: ['route', 'outcome'] as const,
      buckets: UPSTREAM_BUCKETS_SECONDS,
      registers,
    });
    this.decisionDuration = new Histogram({
      name: 'quotad_gateway_decision_duration_seconds',
      help: 'CheckQuota round trips to the authority, by decision code or failure.',
      labelNames: ['result'] as const,
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.stageDuration = new Histogram({
      name: 'quotad_gateway_stage_duration_seconds',
      help: "Time in the gateway's own stages of a model call: intake (headers, key, body read and parsed), estimate (tokens counted), relay (from the upstream's answer to the end of the response).",
      labelNames: ['stage'] as const,
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.tokens = new Counter({
      name: 'quotad_gateway_tokens_total',
      help: 'Tokens settled, by model and direction (input, output).',
      labelNames: ['model', 'direction'] as const,
      registers,
    });
    this.spend = new Counter({
      name: 'quotad_gateway_spend_usd_total',
      help: 'US dollars charged at the policy prices, by model.',
      labelNames: ['model'] as const,
      registers,
    });
    const settlements = new Counter({
      name: 'quotad_gateway_settlements_total',
      help: 'RecordUsage settlements by result; failed: the authority refused it, not recorded; unknown: every retry failed in a way that may have recorded it.',
      labelNames: ['result'] as const,
      registers,
    });
    this.settlements = settlements;
    this.settlementRetries = new Counter({
      name: 'quotad_gateway_settlement_retries_total',
      help: 'Settlement attempts repeated after a transient authority error.',
      registers,
    });
    this.settlementsPending = new Gauge({
      name: 'quotad_gateway_settlements_pending',
      help: 'Settlements not yet acknowledged by the authority.',
      registers,
    });
    this.unmetered = new Counter({
      name: 'quotad_gateway_unmetered_requests_total',
      help: 'Requests let through without a quota decision because the authority was unavailable (fail mode open).',
      registers,
    });
    const shed = new Counter({
      name: 'quotad_gateway_requests_shed_total',
      help: 'Requests refused with 503 server_overloaded: by="gateway" when --max-pending-checks checks were already waiting, by="authority" when it had no time left to decide.',
      labelNames: ['by'] as const,
      registers,
    });
    this.shed = shed;
    this.checksPending = new Gauge({
      name: 'quotad_gateway_checks_pending',
      help: 'Checks sent to the authority and not yet answered.',
      registers,
    });
    this.inFlight = new Gauge({
      name: 'quotad_gateway_requests_in_flight',
      help: 'Requests being served now.',
      registers,
    });
    this.openConnections = new Gauge({
      name: 'quotad_gateway_open_connections',
      help: 'Client connections open now.',
      registers,
    });
    this.connectionsRefused = new Counter({
      name: 'quotad_gateway_connections_refused_total',
      help: 'Client connections closed as soon as accepted, because --max-connections were open.',
      registers,
    });
    this.requestTimeouts = new Counter({
      name: 'quotad_gateway_request_timeouts_total',
      help: 'Requests whose headers or body did not arrive in time (--header-timeout, --body-timeout): answered 408 and closed.',
      registers,
    });
    const buildInfo = new Gauge({
      name: 'quotad_gateway_build_info',
      help: 'Always 1, labelled with the running quotad version.',
      labelNames: ['version'] as const,
      registers,
    });
    buildInfo.set({ version: options.version }, 1);
    for (const result of [
      'settled',
      'duplicate',
      'charged_without_reservation',
      'failed',
      'unknown',
    ] as const) {
      settlements.inc({ result }, 0);
    }
    for (const route of API_ROUTES) {
      for (const status of INITIAL_STATUSES) requests.inc({ route, status }, 0);
    }
    for (const by of ['gateway', 'authority'] as const) shed.inc({ by }, 0);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
