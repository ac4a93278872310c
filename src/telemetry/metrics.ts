import type { status as GrpcStatus } from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { EventMetrics } from './event-metrics.js';
import { collectProcessMetrics } from './process-metrics.js';
import type { DecisionCode } from '../core/decision.js';
import type { Policy, StoreFailureMode } from '../core/policy.js';

export type DecisionResult = 'allowed' | 'denied';
/** Which quotad operation a decision latency belongs to. */
export type DecisionMethod = 'check' | 'record' | 'usage';
export type StoreKind = 'redis' | 'memory';
/** An in-process store: the store itself (no REDIS_URL), or the fallback counting `local` limits while Redis is out. */
export type MemoryStoreRole = 'memory' | 'fallback';
export type StoreOp = 'reserve' | 'settle';
export type ReservationResult = 'reserved' | 'duplicate';
/** `late`: settled after its lease had already ended. */
export type SettleStatus = 'settled' | 'duplicate' | 'charged_without_reservation' | 'late';
export type ReloadResult = 'success' | 'failure';
export type GrpcMethod =
  | 'CheckQuota'
  | 'RecordUsage'
  | 'GetUsage'
  | 'ListModels'
  | 'CheckQuotaBatch'
  | 'RecordUsageBatch'
  | 'CreateKey'
  | 'ListKeys'
  | 'GetKey'
  | 'RevokeKey'
  | 'RotateKey'
  | 'SetKeyLimits'
  | 'GetKeyUsage'
  | 'ConfirmStoreReset'
  | 'ListEvents'
  | 'ListAuditRecords'
  | 'SetKeySigning';
/** Where a key lookup was answered (`stale`: the last known record, the store being out), and whether it was known. */
export type KeyLookupLabels = { source: 'cache' | 'store' | 'stale'; result: 'found' | 'unknown' };
/** Why cached key lookups were dropped: one key changed, or every key (the change channel reconnected). */
export type KeyInvalidationReason = 'change' | 'resync';
export type BatchMethod = Extract<GrpcMethod, 'CheckQuotaBatch' | 'RecordUsageBatch'>;
/**
 * What became of a reservation the store made after its check was answered by a refusal: `cancelled`
 * (the store confirmed), `dropped` (too many were waiting), `failed` (an error no retry fixes).
 */
export type LateCancelResult = 'cancelled' | 'dropped' | 'failed';
/** A gRPC status by name (`OK`, `INVALID_ARGUMENT`), as operators read it. */
export type GrpcStatusName = keyof typeof GrpcStatus;

/** Sub-millisecond (in-memory store) up to one second (a struggling Redis). */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

// Records, not arrays, so the compiler fails here when core grows a code or a mode.
const DECISION_CODES: Record<DecisionCode, true> = {
  OK: true,
  OVER_LIMIT: true,
  UNKNOWN_TIER: true,
  MODEL_NOT_ALLOWED: true,
  UNKNOWN_MODEL: true,
  REQUEST_TOO_LARGE: true,
  STORE_UNAVAILABLE: true,
  INVALID_KEY: true,
  KEY_REVOKED: true,
  KEY_EXPIRED: true,
  SIGNATURE_REQUIRED: true,
  INVALID_SIGNATURE: true,
  SIGNATURE_EXPIRED: true,
  REPLAYED_REQUEST: true,
};
const FAILURE_MODES: Record<StoreFailureMode, true> = { open: true, closed: true, local: true };
const STORE_OPS: readonly StoreOp[] = ['reserve', 'settle'];
const RESERVATION_RESULTS: readonly ReservationResult[] = ['reserved', 'duplicate'];
const SETTLE_STATUSES: readonly SettleStatus[] = [
  'settled',
  'duplicate',
  'charged_without_reservation',
  'late',
];
const RELOAD_RESULTS: readonly ReloadResult[] = ['success', 'failure'];
const GRPC_METHODS: Record<GrpcMethod, true> = {
  CheckQuota: true,
  RecordUsage: true,
  GetUsage: true,
  ListModels: true,
  CheckQuotaBatch: true,
  RecordUsageBatch: true,
  CreateKey: true,
  ListKeys: true,
  GetKey: true,
  RevokeKey: true,
  RotateKey: true,
  SetKeyLimits: true,
  GetKeyUsage: true,
  ConfirmStoreReset: true,
  ListEvents: true,
  ListAuditRecords: true,
  SetKeySigning: true,
};

/** A counter whose label values the compiler checks, so a typo cannot mint a new series. */
export interface LabelledCounter<L extends object> {
  inc(labels: L, value?: number): void;
}

export interface UnlabelledCounter {
  inc(value?: number): void;
}

/** A latency histogram in seconds; `startTimer` returns a function that observes and returns the elapsed time. */
export interface LabelledHistogram<L extends object> {
  observe(labels: L, seconds: number): void;
  startTimer(labels: L): () => number;
}

export interface LabelledGauge<L extends object> {
  set(labels: L, value: number): void;
}

export interface UnlabelledGauge {
  set(value: number): void;
}

/** The parts of a decision the metrics count; a core `Decision` fits. */
export interface CountedDecision {
  allowed: boolean;
  code: DecisionCode;
  /** Limits that denied; for STORE_UNAVAILABLE these failed closed rather than ran out. */
  deniedBy: readonly string[];
  shadowExceeded: readonly string[];
}

export type PolicyReloadOutcome = { ok: true; loadedAtMs: number } | { ok: false };

export interface AuthorityMetricsOptions {
  /** The running quotad version, exported as `quotad_build_info{version}`. */
  version: string;
  /** The store this process talks to; its error and latency series start at zero. */
  storeKind: StoreKind;
  /** Adds the standard `process_*` and `nodejs_*` metrics; off to keep the output to quotad's own series. */
  collectDefault?: boolean;
}

/** Every quotad metric, in one registry owned by this instance rather than prom-client's global one. */
export class AuthorityMetrics {
  readonly registry = new Registry();
  /** Spend alerts and anomalies: raised, delivered, waiting. */
  readonly events = new EventMetrics(this.registry);

  /** Every decision by outcome: `result` allowed|denied, `code` the decision code. */
  readonly decisions: LabelledCounter<{ result: DecisionResult; code: DecisionCode }>;
  /** A policy limit that was exceeded in a decision; `shadow` "true" when it only would have denied. */
  readonly limitExceeded: LabelledCounter<{ limit: string; shadow: 'true' | 'false' }>;
  /** Time to decide, by quotad operation. */
  readonly decisionDuration: LabelledHistogram<{ method: DecisionMethod }>;
  /** Time of one store round trip. */
  readonly storeDuration: LabelledHistogram<{ store: StoreKind; op: StoreOp }>;
  /** Store calls that failed (timeouts, lost connections, script errors). */
  readonly storeErrors: LabelledCounter<{ store: StoreKind; op: StoreOp }>;
  /** Decisions taken by a limit's `on_store_failure` policy because the store was out. */
  readonly degradedDecisions: LabelledCounter<{ mode: StoreFailureMode }>;
  /** Admissions by whether they reserved anew or replayed an earlier request_id. */
  readonly reservations: LabelledCounter<{ result: ReservationResult }>;
  /** RecordUsage calls by how they settled. */
  readonly reservationsSettled: LabelledCounter<{ status: SettleStatus }>;
  /** Concurrency leases found expired and reclaimed: callers that never settled. */
  readonly reservationsExpired: UnlabelledCounter;
  /** Policy reload attempts; prefer `recordPolicyReload`, which keeps the policy gauges in step. */
  readonly policyReloads: LabelledCounter<{ result: ReloadResult }>;
  /** 1 when the last reload attempt succeeded, 0 while a rejected edit is pending. */
  readonly policyValid: UnlabelledGauge;
  /** When the policy in force was loaded, in Unix seconds. */
  readonly policyLoadedTimestamp: UnlabelledGauge;
  /** gRPC calls by method and final status name. */
  readonly grpcRequests: LabelledCounter<{ method: GrpcMethod; code: GrpcStatusName }>;
  /** API key lookups by where they were answered and whether the key was known. */
  readonly keyLookups: LabelledCounter<KeyLookupLabels>;
  /** Cached key lookups dropped because a key changed somewhere, or on a change-channel reconnect. */
  readonly keyCacheInvalidations: LabelledCounter<{ reason: KeyInvalidationReason }>;
  /** Items per batch call (CheckQuotaBatch, RecordUsageBatch): how much callers coalesce. */
  readonly batchItems: LabelledHistogram<{ method: BatchMethod }>;
  /** Late reservations (made after their check was refused by a failure policy) by what became of them. */
  readonly lateCancels: LabelledCounter<{ result: LateCancelResult }>;
  /** Late reservations waiting for the store to confirm their cancellation. */
  readonly lateCancelsPending: UnlabelledGauge;
  /** Checks refused unanswered (RESOURCE_EXHAUSTED): they came with too little of their deadline left. */
  readonly checksShed: UnlabelledCounter;
  /** Always 1; the version rides on the label so dashboards can join on it. */
  readonly buildInfo: LabelledGauge<{ version: string }>;
  /** Commands an in-process store refused for want of room (--memory-max-entries). */
  readonly memoryStoreFull: LabelledCounter<{ store: MemoryStoreRole }>;
  readonly #memoryStores = new Map<MemoryStoreRole, () => number>();
  /** Times the store's identity marker was found missing or changed (the store was emptied or replaced). */
  readonly storeResets: LabelledCounter<{ how: 'missing-at-start' | 'emptied' | 'replaced' }>;
  /** Budget charges answered before a replica confirmed them (--redis-wait-budgets on, WAIT timed out). */
  readonly budgetWritesUnconfirmed: UnlabelledCounter;
  /** 1 while QuotaService refuses every call on a store reset awaiting an operator's confirmation. */
  readonly storeResetRefusing: UnlabelledGauge;

  constructor(options: AuthorityMetricsOptions) {
    const registers = [this.registry];
    if (options.collectDefault ?? true) collectProcessMetrics(this.registry);

    const decisions = new Counter({
      name: 'quotad_decisions_total',
      help: 'Quota decisions by result and decision code.',
      labelNames: ['result', 'code'] as const,
      registers,
    });
    this.decisions = decisions;
    this.limitExceeded = new Counter({
      name: 'quotad_limit_exceeded_total',
      help: 'Policy limits exceeded in a decision; shadow="true" for limits that only report.',
      labelNames: ['limit', 'shadow'] as const,
      registers,
    });
    this.decisionDuration = new Histogram({
      name: 'quotad_decision_duration_seconds',
      help: 'Time to decide, by quotad operation.',
      labelNames: ['method'] as const,
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    const storeDuration = new Histogram({
      name: 'quotad_store_duration_seconds',
      help: 'Quota store round-trip time by store and operation.',
      labelNames: ['store', 'op'] as const,
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.storeDuration = storeDuration;
    const storeErrors = new Counter({
      name: 'quotad_store_errors_total',
      help: 'Quota store calls that failed, by store and operation.',
      labelNames: ['store', 'op'] as const,
      registers,
    });
    this.storeErrors = storeErrors;
    const degraded = new Counter({
      name: 'quotad_degraded_decisions_total',
      help: 'Decisions taken by the on_store_failure policy while the store was unavailable.',
      labelNames: ['mode'] as const,
      registers,
    });
    this.degradedDecisions = degraded;
    const reservations = new Counter({
      name: 'quotad_reservations_total',
      help: 'Admissions by whether they reserved anew or replayed an earlier request_id.',
      labelNames: ['result'] as const,
      registers,
    });
    this.reservations = reservations;
    const settled = new Counter({
      name: 'quotad_reservations_settled_total',
      help: 'Usage records by how they settled; late means after the lease had ended.',
      labelNames: ['status'] as const,
      registers,
    });
    this.reservationsSettled = settled;
    const resets = new Counter({
      name: 'quotad_store_resets_total',
      help: 'Times the store identity marker was missing or changed: the store was new or emptied (missing-at-start), emptied under a running authority (emptied), or replaced (replaced). Cached API keys are dropped each time.',
      labelNames: ['how'] as const,
      registers,
    });
    for (const how of ['missing-at-start', 'emptied', 'replaced'] as const) resets.inc({ how }, 0);
    this.storeResets = resets;
    this.budgetWritesUnconfirmed = new Counter({
      name: 'quotad_budget_writes_unconfirmed_total',
      help: 'Checks and settlements moving a budget answered before a replica confirmed them (--redis-wait-budgets on; WAIT timed out): a failover now could lose those charges.',
      registers,
    });
    this.storeResetRefusing = new Gauge({
      name: 'quotad_store_reset_refusing',
      help: '1 while QuotaService refuses every call (--on-store-reset refuse) because the store was emptied or replaced and no operator has confirmed it yet (quotad store confirm-reset); else 0.',
      registers,
    });
    this.reservationsExpired = new Counter({
      name: 'quotad_reservations_expired_total',
      help: 'Concurrency leases found expired and reclaimed.',
      registers,
    });
    const reloads = new Counter({
      name: 'quotad_policy_reloads_total',
      help: 'Policy reload attempts by result.',
      labelNames: ['result'] as const,
      registers,
    });
    this.policyReloads = reloads;
    this.policyValid = new Gauge({
      name: 'quotad_policy_valid',
      help: '1 when the last policy reload attempt succeeded, 0 after a rejected edit.',
      registers,
    });
    this.policyLoadedTimestamp = new Gauge({
      name: 'quotad_policy_loaded_timestamp_seconds',
      help: 'When the policy in force was loaded, in Unix seconds.',
      registers,
    });
    const grpcRequests = new Counter({
      name: 'quotad_grpc_requests_total',
      help: 'gRPC calls by method and status name.',
      labelNames: ['method', 'code'] as const,
      registers,
    });
    this.grpcRequests = grpcRequests;
    const keyLookups = new Counter({
      name: 'quotad_key_lookups_total',
      help: 'API key lookups by source (cache, store, or stale: last known while the store is out) and result.',
      labelNames: ['source', 'result'] as const,
      registers,
    });
    this.keyLookups = keyLookups;
    const keyInvalidations = new Counter({
      name: 'quotad_key_cache_invalidations_total',
      help: 'Cached API key lookups dropped: change (one key changed) or resync (the change channel reconnected).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.keyCacheInvalidations = keyInvalidations;
    this.batchItems = new Histogram({
      name: 'quotad_batch_items',
      help: 'Items per batch call (CheckQuotaBatch, RecordUsageBatch).',
      labelNames: ['method'] as const,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
      registers,
    });
    const lateCancels = new Counter({
      name: 'quotad_late_reservation_cancels_total',
      help: 'Reservations the store made after their check was refused by a failure policy, by what became of them: cancelled, dropped (too many waiting), failed.',
      labelNames: ['result'] as const,
      registers,
    });
    this.lateCancels = lateCancels;
    this.lateCancelsPending = new Gauge({
      name: 'quotad_late_reservation_cancels_pending',
      help: 'Late reservations waiting for the store to confirm their cancellation.',
      registers,
    });
    this.checksShed = new Counter({
      name: 'quotad_checks_shed_total',
      help: 'Checks refused unanswered (RESOURCE_EXHAUSTED) because they came with too little of their deadline left.',
      registers,
    });
    const buildInfo = new Gauge({
      name: 'quotad_build_info',
      help: 'Always 1, labelled with the running quotad version.',
      labelNames: ['version'] as const,
      registers,
    });
    this.buildInfo = buildInfo;
    buildInfo.set({ version: options.version }, 1);
    this.memoryStoreFull = new Counter({
      name: 'quotad_memory_store_full_total',
      help: 'Commands refused with RESOURCE_EXHAUSTED because an in-process store (memory, fallback) held --memory-max-entries entries.',
      labelNames: ['store'] as const,
      registers,
    });
    const memoryStores = this.#memoryStores;
    const memoryEntries: Gauge<'store'> = new Gauge({
      name: 'quotad_memory_store_entries',
      help: 'Entries (counters, lease sets, reservations) an in-process store (memory, fallback) holds.',
      labelNames: ['store'] as const,
      registers,
      collect: () => {
        for (const [store, entries] of memoryStores) memoryEntries.set({ store }, entries());
      },
    });

    // Series exist at 0 before the first event, so rate() and absence alerts work from the first scrape.
    for (const code of Object.keys(DECISION_CODES) as DecisionCode[]) {
      // A core invariant: only OK admits, and every other code denies.
      decisions.inc({ result: code === 'OK' ? 'allowed' : 'denied', code }, 0);
    }
    for (const op of STORE_OPS) {
      storeDuration.zero({ store: options.storeKind, op });
      storeErrors.inc({ store: options.storeKind, op }, 0);
    }
    for (const mode of Object.keys(FAILURE_MODES) as StoreFailureMode[]) degraded.inc({ mode }, 0);
    for (const result of RESERVATION_RESULTS) reservations.inc({ result }, 0);
    for (const status of SETTLE_STATUSES) settled.inc({ status }, 0);
    for (const result of RELOAD_RESULTS) reloads.inc({ result }, 0);
    for (const source of ['cache', 'store', 'stale'] as const) {
      for (const result of ['found', 'unknown'] as const) keyLookups.inc({ source, result }, 0);
    }
    for (const reason of ['change', 'resync'] as const) keyInvalidations.inc({ reason }, 0);
    for (const result of ['cancelled', 'dropped', 'failed'] as const) lateCancels.inc({ result }, 0);
    for (const method of Object.keys(GRPC_METHODS) as GrpcMethod[])
      grpcRequests.inc({ method, code: 'OK' }, 0);
  }

  /** Reports an in-process store's entries on each scrape, and starts its refusals at 0. */
  watchMemoryStore(store: MemoryStoreRole, entries: () => number): void {
    this.#memoryStores.set(store, entries);
    this.memoryStoreFull.inc({ store }, 0);
  }

  /** Counts a decision and the limits it found exceeded, so the two counters cannot disagree. */
  recordDecision(decision: CountedDecision): void {
    this.decisions.inc({ result: decision.allowed ? 'allowed' : 'denied', code: decision.code });
    // Fail-closed limits are in deniedBy too, but they were unreachable, not exceeded.
    if (decision.code === 'OVER_LIMIT') {
      for (const limit of decision.deniedBy) this.limitExceeded.inc({ limit, shadow: 'false' });
    }
    for (const limit of decision.shadowExceeded) this.limitExceeded.inc({ limit, shadow: 'true' });
  }

  /**
   * Starts the exceeded count of every limit in `policy` at 0 (a shadow limit's under shadow="true"), so
   * that rate() sees a limit's first denial: a series that first appears at 1 shows no rise. Called for
   * each policy put in force; series of limits since removed stay as they were.
   */
  startLimitSeries(policy: Policy): void {
    for (const tier of policy.tiers.values()) {
      for (const spec of tier.limits) {
        this.limitExceeded.inc({ limit: spec.name, shadow: spec.shadow ? 'true' : 'false' }, 0);
      }
    }
  }

  /** Counts a reload attempt and keeps the validity and load-time gauges in step with it. */
  recordPolicyReload(outcome: PolicyReloadOutcome): void {
    this.policyReloads.inc({ result: outcome.ok ? 'success' : 'failure' });
    this.policyValid.set(outcome.ok ? 1 : 0);
    if (outcome.ok) this.policyLoadedTimestamp.set(outcome.loadedAtMs / 1000);
  }

  /** The registry in Prometheus text format, with the content type to serve it under. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
