import { PeriodBoundsCache } from '../core/calendar.js';
import type { Clock } from '../core/clock.js';
import {
  keyRefusalDecision,
  partitionForStoreFailure,
  rejectionDecision,
  reportLimits,
  storeDecision,
  storeUnavailableDecision,
  type Decision,
  type KeyIdentity,
  type LimitReport,
} from '../core/decision.js';
import {
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  StoreUnavailableError,
  UnauthenticatedError,
} from '../core/errors.js';
import type { LimitOverrides } from '../core/limit-overrides.js';
import {
  planCheck,
  planPeek,
  planSettle,
  type BoundsAt,
  type CheckPlan,
  type CheckRequest,
} from '../core/plan.js';
import type { ModelSpec, Policy } from '../core/policy.js';
import type { Principal, ReserveCommand, SettleOutcome, SettleResult } from '../core/quota.js';
import type { KeyRegistry } from '../keys/key-registry.js';
import { keyPrincipal, type ApiKeyRecord } from '../keys/key-record.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { QuotaStore } from '../store/store.js';
import type { AuthorityMetrics } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';

/**
 * Who asks: a principal the caller verified (with a key's overrides when the caller already resolved the
 * key, as AdminService does), or the SHA-256 of an API key for the authority to resolve.
 */
export type Credential = { principal: Principal; overrides?: LimitOverrides } | { apiKeySha256: Buffer };

export type CheckQuotaInput = Omit<CheckRequest, 'principal' | 'overrides'> &
  Credential & {
    requestId: string;
    dryRun: boolean;
  };

export type RecordUsageInput = Credential & {
  requestId: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  outcome: SettleOutcome;
};

/** A credential resolved to whom to charge, with the key's own limits when it is a key. */
interface Resolved {
  principal: Principal;
  overrides: LimitOverrides | undefined;
  key: KeyIdentity | undefined;
  warning: string;
}

export interface SettlementReport extends Omit<SettleResult, 'limits'> {
  limits: LimitReport[];
}

export interface UsageReport {
  tier: string;
  limits: LimitReport[];
  /** When asked with an API key: the key. */
  key: KeyIdentity | undefined;
  warning: string;
  tokensUsed: number;
  usdMicrosSpent: number;
}

export interface ModelsReport {
  tier: string;
  /** The models the tier may use, sorted by name, each with its other names. */
  models: { spec: ModelSpec; aliases: string[] }[];
  key: KeyIdentity | undefined;
  warning: string;
}

export interface QuotaAuthorityOptions {
  store: QuotaStore;
  /** Counts `local` limits while the shared store is out (an in-process store, limits ÷ replicas). */
  fallback: MemoryStore;
  /** The policy in force now (it may be swapped by a reload between calls). */
  policy: () => Policy;
  /** Places calendar boundaries; the store's own clock still picks the period. */
  clock: Clock;
  metrics: AuthorityMetrics;
  logger: Logger;
  /** Resolves API-key credentials. */
  keys: KeyRegistry;
}

function keyIdentity(record: ApiKeyRecord, expiresAtMs: number | null): KeyIdentity {
  return { id: record.id, org: record.org, tier: record.tier, expiresAtMs: expiresAtMs ?? 0 };
}

function asGiven(credential: { principal: Principal; overrides?: LimitOverrides }): Resolved {
  return { principal: credential.principal, overrides: credential.overrides, key: undefined, warning: '' };
}

/**
 * Applies the policy to each call and asks the store: the reserve-then-settle protocol without the wire
 * format. When the shared store fails, each limit's on_store_failure decides.
 */
export class QuotaAuthority {
  readonly #store: QuotaStore;
  readonly #fallback: MemoryStore;
  readonly #policy: () => Policy;
  readonly #clock: Clock;
  readonly #metrics: AuthorityMetrics;
  readonly #logger: Logger;
  readonly #keys: KeyRegistry;
  readonly #bounds = new PeriodBoundsCache();

  constructor(options: QuotaAuthorityOptions) {
    this.#store = options.store;
    this.#fallback = options.fallback;
    this.#policy = options.policy;
    this.#clock = options.clock;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#keys = options.keys;
  }

  #boundsAt(): BoundsAt {
    const now = this.#clock.now();
    return (period, timeZone) => this.#bounds.get(period, timeZone, now);
  }

  /** For a check: a principal as given, a usable key as its principal, any other key as its refusal. */
  async #resolveToCheck(credential: Credential): Promise<Resolved | Decision> {
    if ('principal' in credential) return asGiven(credential);
    const auth = await this.#keys.authenticate(credential.apiKeySha256);
    if (auth.code === 'INVALID_KEY') return keyRefusalDecision(auth.code, auth.reason, undefined);
    const key = keyIdentity(auth.record, auth.expiresAtMs);
    if (auth.code !== 'OK') return keyRefusalDecision(auth.code, auth.reason, key);
    return {
      principal: keyPrincipal(auth.record),
      overrides: auth.record.limits,
      key,
      warning: auth.warning,
    };
  }

  /** For settlement and reports: any known key, even one revoked or expired since, so no usage is lost. */
  async #resolveToReport(credential: Credential): Promise<Resolved> {
    if ('principal' in credential) return asGiven(credential);
    const record = await this.#keys.lookup(credential.apiKeySha256);
    if (!record) throw new NotFoundError('api_key_sha256: no API key has this hash');
    const key = keyIdentity(record, record.expiresMs);
    return { principal: keyPrincipal(record), overrides: record.limits, key, warning: '' };
  }

  /** For a caller's own reports: as for a check, but a refused key is an error rather than a decision. */
  async #resolveCaller(credential: Credential): Promise<Resolved> {
    const resolved = await this.#resolveToCheck(credential);
    if (!('allowed' in resolved)) return resolved;
    if (resolved.code === 'KEY_REVOKED' || resolved.code === 'KEY_EXPIRED') {
      throw new PermissionDeniedError(resolved.code, resolved.reason);
    }
    throw new UnauthenticatedError(resolved.reason);
  }

  async check(input: CheckQuotaInput): Promise<Decision> {
    const started = performance.now();
    const resolved = await this.#resolveToCheck(input);
    if ('allowed' in resolved) {
      this.#observeDecision(input, undefined, resolved, started);
      return resolved;
    }
    const policy = this.#policy();
    const request = { ...input, principal: resolved.principal, overrides: resolved.overrides };
    const plan = planCheck(policy, request, this.#boundsAt());
    const decision =
      plan.kind === 'rejected' ? rejectionDecision(plan) : await this.#decide(policy, plan, request);
    decision.key = resolved.key;
    decision.warning = resolved.warning;
    this.#observeDecision(input, resolved.principal, decision, started);
    return decision;
  }

  async #decide(
    policy: Policy,
    plan: CheckPlan,
    input: CheckQuotaInput & { principal: Principal },
  ): Promise<Decision> {
    const command: ReserveCommand = {
      principal: input.principal,
      requestId: input.requestId,
      mode: input.dryRun ? 'dry' : 'reserve',
      leaseMs: policy.leaseMs,
      idempotencyWindowMs: policy.idempotencyWindowMs,
      reservedTokens: plan.reservedTokens,
      reservedMicros: plan.reservedMicros,
      limits: plan.limits,
    };
    try {
      const result = await this.#timedStore('reserve', () => this.#store.reserve(command));
      if (command.mode === 'reserve' && result.outcome !== 'denied') {
        this.#metrics.reservations.inc({ result: result.outcome === 'duplicate' ? 'duplicate' : 'reserved' });
      }
      return storeDecision(plan, result);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      return this.#decideWithoutStore(policy, plan, command, error);
    }
  }

  /** The shared store is out: `closed` limits deny, `local` limits count in-process, `open` limits pass. */
  #decideWithoutStore(
    policy: Policy,
    plan: CheckPlan,
    command: ReserveCommand,
    error: StoreUnavailableError,
  ): Decision {
    const { closed, local } = partitionForStoreFailure(plan.limits, policy.replicas);
    const mode = closed.length > 0 ? 'closed' : local.length > 0 ? 'local' : 'open';
    this.#metrics.degradedDecisions.inc({ mode });
    this.#logger.warn(
      { err: error.message, mode, org: command.principal.org },
      'store unavailable; failure policy decides',
    );
    if (closed.length > 0) return storeUnavailableDecision(plan, closed);
    const localPlan = { ...plan, limits: local };
    return storeDecision(localPlan, this.#fallback.reserveNow({ ...command, limits: local }), true);
  }

  async record(input: RecordUsageInput): Promise<SettlementReport> {
    const started = performance.now();
    const { principal, overrides } = await this.#resolveToReport(input);
    const policy = this.#policy();
    const { limits, actual } = planSettle(
      policy,
      principal,
      input.model,
      input,
      input.outcome,
      this.#boundsAt(),
      overrides,
    );
    const result = await this.#timedStore('settle', () =>
      this.#store.settle({
        principal,
        requestId: input.requestId,
        outcome: input.outcome,
        actual,
        idempotencyWindowMs: policy.idempotencyWindowMs,
        limits,
      }),
    );
    this.#metrics.reservationsSettled.inc({ status: result.status });
    if (result.late && result.status === 'settled') this.#metrics.reservationsSettled.inc({ status: 'late' });
    this.#metrics.decisionDuration.observe({ method: 'record' }, (performance.now() - started) / 1000);
    if (this.#logger.isLevelEnabled('debug')) {
      this.#logger.debug(
        {
          requestId: input.requestId,
          org: principal.org,
          status: result.status,
          charged: result.charged,
        },
        'settlement',
      );
    }
    return { ...result, limits: reportLimits(limits, result.limits) };
  }

  /**
   * A caller's limits, used and remaining. `caller`: the credential must be usable now (the caller asks
   * about itself); `operator`: any known key, revoked or expired ones included (an operator looks back).
   */
  async usage(credential: Credential, as: 'caller' | 'operator' = 'caller'): Promise<UsageReport> {
    const started = performance.now();
    const { principal, overrides, key, warning } =
      as === 'caller' ? await this.#resolveCaller(credential) : await this.#resolveToReport(credential);
    const policy = this.#policy();
    const limits = planPeek(policy, principal, this.#boundsAt(), overrides);
    const result = await this.#timedStore('reserve', () =>
      this.#store.reserve({
        principal,
        requestId: '',
        mode: 'peek',
        leaseMs: policy.leaseMs,
        idempotencyWindowMs: policy.idempotencyWindowMs,
        reservedTokens: 0,
        reservedMicros: 0,
        limits,
      }),
    );
    const reports = reportLimits(limits, result.limits);
    this.#metrics.decisionDuration.observe({ method: 'usage' }, (performance.now() - started) / 1000);
    return {
      tier: principal.tier,
      limits: reports,
      key,
      warning,
      tokensUsed: largestBudgetUse(reports, 'tokens'),
      usdMicrosSpent: largestBudgetUse(reports, 'usd_micros'),
    };
  }

  /** The models the caller's tier may use. Asks no store: the policy and the key are enough. */
  async models(credential: Credential): Promise<ModelsReport> {
    const { principal, key, warning } = await this.#resolveCaller(credential);
    const policy = this.#policy();
    const tier = policy.tiers.get(principal.tier);
    if (!tier) {
      throw new InvalidArgumentError('principal.tier', `tier '${principal.tier}' is not in the policy`);
    }
    const byName = new Map<string, { spec: ModelSpec; aliases: string[] }>();
    for (const [name, spec] of policy.models) {
      if (tier.models && !tier.models.has(spec.name)) continue;
      let entry = byName.get(spec.name);
      if (!entry) byName.set(spec.name, (entry = { spec, aliases: [] }));
      if (name !== spec.name) entry.aliases.push(name);
    }
    const models = [...byName.values()].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    return { tier: tier.name, models, key, warning };
  }

  /** One store round trip, timed and counted, with the expired leases it reclaimed. */
  async #timedStore<T extends { expiredLeases: number }>(
    op: 'reserve' | 'settle',
    call: () => Promise<T>,
  ): Promise<T> {
    const labels = { store: this.#store.kind, op };
    const started = performance.now();
    try {
      const result = await call();
      if (result.expiredLeases > 0) this.#metrics.reservationsExpired.inc(result.expiredLeases);
      return result;
    } catch (error) {
      this.#metrics.storeErrors.inc(labels);
      throw error;
    } finally {
      this.#metrics.storeDuration.observe(labels, (performance.now() - started) / 1000);
    }
  }

  #observeDecision(
    input: CheckQuotaInput,
    principal: Principal | undefined,
    decision: Decision,
    started: number,
  ): void {
    const seconds = (performance.now() - started) / 1000;
    this.#metrics.decisionDuration.observe({ method: 'check' }, seconds);
    this.#metrics.recordDecision(decision);
    if (this.#logger.isLevelEnabled('debug')) {
      this.#logger.debug(
        {
          requestId: input.requestId,
          keyId: decision.key?.id,
          org: principal?.org,
          tier: principal?.tier,
          model: decision.model,
          allowed: decision.allowed,
          code: decision.code,
          deniedBy: decision.deniedBy,
          degraded: decision.degraded,
          duplicate: decision.duplicate,
          dryRun: input.dryRun,
          ms: seconds * 1000,
        },
        'decision',
      );
    }
  }
}

/** The use of the tier's longest budget of a unit (a month's spend says more than a day's). */
function largestBudgetUse(reports: readonly LimitReport[], unit: 'tokens' | 'usd_micros'): number {
  let best: LimitReport | undefined;
  for (const report of reports) {
    if (report.spec.kind !== 'budget' || report.spec.unit !== unit) continue;
    const length = report.periodEndMs - report.periodStartMs;
    if (!best || length > best.periodEndMs - best.periodStartMs) best = report;
  }
  return best?.used ?? 0;
}
