import type { EventContext, RaisedEvent } from '../core/alerts.js';
import { PeriodBoundsCache, periodAt } from '../core/calendar.js';
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
  type SignatureRefusal,
} from '../core/decision.js';
import {
  InvalidArgumentError,
  NotFoundError,
  OverloadedError,
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
import type {
  LimitState,
  PlannedLimit,
  Principal,
  ReserveCommand,
  ReserveResult,
  SettleCommand,
  SettleOutcome,
  SettleResult,
} from '../core/quota.js';
import type { KeyRegistry } from '../keys/key-registry.js';
import { keyPrincipal, signingOf, type ApiKeyRecord, type SigningMode } from '../core/key-record.js';
import {
  DEFAULT_SIGNATURE_MAX_AGE_MS,
  deriveSigningSecret,
  verifySignature,
  type SignatureInput,
} from '../keys/signing.js';
import { limitKey, reservationKey } from '../store/keys.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { QuotaStore } from '../store/store.js';
import { within } from '../store/within.js';
import type { AuthorityMetrics } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';
import { CallBudget } from './call-budget.js';
import { LateCancels } from './late-cancels.js';
import { StoreSilence } from './store-silence.js';

/**
 * Who asks: a principal the caller verified (with a key's overrides when the caller already resolved the
 * key, as AdminService does), or the SHA-256 of an API key for the authority to resolve.
 */
export type Credential = { principal: Principal; overrides?: LimitOverrides } | { apiKeySha256: Buffer };

export type CheckQuotaInput = Omit<CheckRequest, 'principal' | 'overrides'> &
  Credential & {
    requestId: string;
    dryRun: boolean;
    /** The request's signature, when the client signed it (a key with signing on checks it). */
    signature?: SignatureInput;
  };

/** How signed requests are verified: the master secret signing secrets derive from, and the clock skew allowed. */
export interface SigningOptions {
  /** QUOTAD_SIGNING_KEY; unset: no key can have signing on, and a key that has it refuses every request. */
  masterKey: Buffer | undefined;
  maxAgeMs: number;
}

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
  /** The key's signing mode (off for a principal). */
  signing?: SigningMode;
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
  /** Told when a store command raised events (to deliver them now rather than at the next poll). */
  onEventsRaised?: () => void;
  /**
   * The most one store command is waited for (`--redis-timeout`): a call with a deadline waits less when
   * less of it remains, and a call without one waits this long. Default 1 s.
   */
  maxStoreWaitMs?: number;
  signing?: SigningOptions;
}

/** A call without a deadline (an admin call, grpcurl): its store commands wait maxStoreWaitMs each. */
const NO_DEADLINE = Infinity;
/** A key lookup may use this share of the time left, so that the reserve keeps the rest. */
const KEY_LOOKUP_SHARE = 0.5;
/** While the store has answered nothing for maxStoreWaitMs, a command is waited for only this long. */
const SUSPECT_WAIT_MS = 50;
/** Last counts the store reported for `local` limits, kept for this many (principal, limit) pairs. */
export const LAST_SEEN_MAX_ENTRIES = 100_000;

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
  readonly #maxStoreWaitMs: number;
  readonly #lateCancels: LateCancels;
  readonly #silence: StoreSilence;
  /** The `used` the store last reported per `local` limit's counter (LRU), to seed the fallback from. */
  readonly #lastSeen = new Map<string, { used: number; atMs: number }>();
  readonly #onEventsRaised: (() => void) | undefined;

  readonly #signing: SigningOptions | undefined;

  constructor(options: QuotaAuthorityOptions) {
    this.#onEventsRaised = options.onEventsRaised;
    this.#store = options.store;
    this.#fallback = options.fallback;
    this.#policy = options.policy;
    this.#clock = options.clock;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#keys = options.keys;
    this.#maxStoreWaitMs = options.maxStoreWaitMs ?? 1_000;
    this.#signing = options.signing;
    this.#lateCancels = new LateCancels({ metrics: options.metrics, logger: options.logger });
    this.#silence = new StoreSilence({
      suspectAfterMs: this.#maxStoreWaitMs,
      suspectWaitMs: SUSPECT_WAIT_MS,
      onChange: (suspect) => {
        if (suspect) {
          this.#logger.warn(
            { silentForMs: this.#maxStoreWaitMs, waitMs: SUSPECT_WAIT_MS },
            'the store has answered nothing for a while; calls wait for it briefly, then failure policies decide',
          );
        } else this.#logger.info('the store answers again');
      },
    });
  }

  /** How long a store command sent now may be waited for: `share` of the call's time, less while the store is silent. */
  #waitMs(budget: CallBudget, share = 1, nowMs = Date.now()): number {
    return this.#silence.waitMs(budget.storeWaitMs(share, nowMs));
  }

  /** Stops retrying cancellations of late reservations (at shutdown). */
  close(): void {
    this.#lateCancels.close();
  }

  /** Late reservations still being cancelled (see LateCancels). */
  get pendingCancels(): number {
    return this.#lateCancels.pending;
  }

  #boundsAt(): BoundsAt {
    const now = this.#clock.now();
    return (period, timeZone) => this.#bounds.get(period, timeZone, now);
  }

  /** For a check: a principal as given, a usable key as its principal, any other key as its refusal. */
  async #resolveToCheck(credential: Credential, budget: CallBudget): Promise<Resolved | Decision> {
    if ('principal' in credential) return asGiven(credential);
    const auth = await this.#keys.authenticate(
      credential.apiKeySha256,
      this.#waitMs(budget, KEY_LOOKUP_SHARE),
    );
    if (auth.code === 'INVALID_KEY') return keyRefusalDecision(auth.code, auth.reason, undefined);
    const key = keyIdentity(auth.record, auth.expiresAtMs);
    if (auth.code !== 'OK') return keyRefusalDecision(auth.code, auth.reason, key);
    return {
      principal: keyPrincipal(auth.record),
      overrides: auth.record.limits,
      key,
      warning: auth.warning,
      signing: signingOf(auth.record),
    };
  }

  /**
   * For a key with signing on: refuses a request that is unsigned (when required), wrongly signed or too
   * old, or returns the nonce the reserve must consume. Nothing is charged for a refusal.
   */
  #checkSignature(input: CheckQuotaInput, resolved: Resolved): Decision | ReserveCommand['nonce'] {
    const mode = resolved.signing ?? 'off';
    if (mode === 'off' || !('apiKeySha256' in input)) return undefined;
    const { signature } = input;
    const refuse = (code: SignatureRefusal, reason: string) => keyRefusalDecision(code, reason, resolved.key);
    if (!signature) {
      return mode === 'required'
        ? refuse('SIGNATURE_REQUIRED', 'the request carries no signature')
        : undefined;
    }
    const masterKey = this.#signing?.masterKey;
    if (!masterKey)
      return refuse('INVALID_SIGNATURE', 'the authority has no QUOTAD_SIGNING_KEY to verify it with');
    const secret = deriveSigningSecret(
      masterKey,
      resolved.principal.subject,
      input.apiKeySha256.toString('hex'),
    );
    const maxAgeMs = this.#signing?.maxAgeMs ?? DEFAULT_SIGNATURE_MAX_AGE_MS;
    const verified = verifySignature(signature, secret, this.#clock.now(), maxAgeMs);
    if (!verified.ok) return refuse(verified.code, verified.reason);
    // Past twice the allowed skew the timestamp alone refuses a replay; until then the store remembers it.
    return { value: signature.nonce, ttlMs: 2 * maxAgeMs + 1_000 };
  }

  /** For settlement and reports: any known key, even one revoked or expired since, so no usage is lost. */
  async #resolveToReport(credential: Credential, budget: CallBudget): Promise<Resolved> {
    if ('principal' in credential) return asGiven(credential);
    const record = await this.#keys.lookup(credential.apiKeySha256, this.#waitMs(budget, KEY_LOOKUP_SHARE));
    if (!record) throw new NotFoundError('api_key_sha256: no API key has this hash');
    const key = keyIdentity(record, record.expiresMs);
    return { principal: keyPrincipal(record), overrides: record.limits, key, warning: '' };
  }

  /** For a caller's own reports: as for a check, but a refused key is an error rather than a decision. */
  async #resolveCaller(credential: Credential, budget: CallBudget): Promise<Resolved> {
    const resolved = await this.#resolveToCheck(credential, budget);
    if (!('allowed' in resolved)) return resolved;
    if (resolved.code === 'KEY_REVOKED' || resolved.code === 'KEY_EXPIRED') {
      throw new PermissionDeniedError(resolved.code, resolved.reason);
    }
    throw new UnauthenticatedError(resolved.reason);
  }

  /**
   * Decides a check within the caller's deadline (`deadlineMs`, Unix ms; Infinity when it set none):
   * the key lookup and the reserve share what remains of it, and when the store cannot answer in time
   * each limit's on_store_failure decides. A check that arrives with no time left is refused unanswered
   * (OverloadedError): whatever it decided would come too late to matter.
   */
  async check(input: CheckQuotaInput, deadlineMs = NO_DEADLINE): Promise<Decision> {
    const started = performance.now();
    const budget = new CallBudget(deadlineMs, this.#maxStoreWaitMs);
    if (budget.spent()) {
      this.#metrics.checksShed.inc();
      throw new OverloadedError('the check came with no time left before its deadline; retry shortly');
    }
    const resolved = await this.#resolveToCheck(input, budget);
    if ('allowed' in resolved) {
      this.#observeDecision(input, undefined, resolved, started);
      return resolved;
    }
    const nonce = this.#checkSignature(input, resolved);
    if (nonce && 'allowed' in nonce) {
      this.#observeDecision(input, resolved.principal, nonce, started);
      return nonce;
    }
    const policy = this.#policy();
    const request = { ...input, principal: resolved.principal, overrides: resolved.overrides };
    const plan = planCheck(policy, request, this.#boundsAt());
    const decision =
      plan.kind === 'rejected'
        ? rejectionDecision(plan)
        : await this.#decide(policy, plan, request, budget, resolved.key?.id, nonce);
    decision.key = resolved.key;
    decision.warning = resolved.warning;
    this.#observeDecision(input, resolved.principal, decision, started);
    return decision;
  }

  async #decide(
    policy: Policy,
    plan: CheckPlan,
    input: CheckQuotaInput & { principal: Principal },
    budget: CallBudget,
    keyId: string | undefined,
    nonce?: ReserveCommand['nonce'],
  ): Promise<Decision> {
    const sentAt = Date.now();
    const waitMs = this.#waitMs(budget, 1, sentAt);
    const command: ReserveCommand = {
      principal: input.principal,
      requestId: input.requestId,
      mode: input.dryRun ? 'dry' : 'reserve',
      leaseMs: policy.leaseMs,
      idempotencyWindowMs: policy.idempotencyWindowMs,
      reservedTokens: plan.reservedTokens,
      reservedMicros: plan.reservedMicros,
      limits: plan.limits,
      // Past the moment this authority stops waiting, the store must not reserve any more.
      deadlineMs: sentAt + waitMs,
      events: eventContext(policy, keyId, input.principal.tier),
      ...(nonce && !input.dryRun ? { nonce } : {}),
    };
    let answer: Promise<ReserveResult> | undefined;
    try {
      if (waitMs <= 0) throw new StoreUnavailableError('no time left of the call to ask the store');
      answer = this.#silence.watch(this.#store.reserve(command));
      const result = await this.#timedStore('reserve', within(answer, waitMs, 'reserve'));
      if (result.outcome === 'expired') {
        throw new StoreUnavailableError('the store got the reserve after its deadline');
      }
      if (result.outcome === 'replayed') {
        return keyRefusalDecision('REPLAYED_REQUEST', 'this nonce was used before by this key', undefined);
      }
      if (command.mode === 'reserve' && result.outcome !== 'denied') {
        this.#metrics.reservations.inc({ result: result.outcome === 'duplicate' ? 'duplicate' : 'reserved' });
      }
      this.#noteRaised(input.principal, result.raised);
      this.#noteSeen(input.principal, plan.limits, result.limits);
      return storeDecision(plan, result);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      // Only the store can tell a replay: a signed request is never decided without it.
      const decision = command.nonce
        ? storeUnavailableDecision(plan, plan.limits)
        : this.#decideWithoutStore(policy, plan, command, error);
      // A reservation the store makes after all must not charge a refused request (an admitted one is
      // the caller's to settle, as usual).
      if (answer && command.mode === 'reserve' && !decision.allowed) {
        this.#cancelIfReserved(answer, command, plan.model.name);
      }
      return decision;
    }
  }

  /** When the store's late answer shows (or may hide) a reservation for a refused check, cancels it. */
  #cancelIfReserved(answer: Promise<ReserveResult>, command: ReserveCommand, model: string): void {
    answer.then(
      (late) => {
        if (late.outcome === 'admitted') this.#cancelLate(command, model);
      },
      (error: unknown) => {
        if (error instanceof StoreUnavailableError && !error.unsent) this.#cancelLate(command, model);
      },
    );
  }

  #cancelLate(command: ReserveCommand, model: string): void {
    const { principal, requestId } = command;
    this.#lateCancels.schedule(reservationKey(principal, requestId), () =>
      this.#settleStore(this.#cancelCommand(principal, requestId, model)),
    );
  }

  /** A settlement that charges nothing: refunds a reservation, and frees its request_id. */
  #cancelCommand(principal: Principal, requestId: string, model: string): SettleCommand {
    const policy = this.#policy();
    const usage = { inputTokens: 0, outputTokens: 0 };
    const { limits, actual } = planSettle(policy, principal, model, usage, 'failed', this.#boundsAt());
    return {
      principal,
      requestId,
      outcome: 'failed',
      actual,
      idempotencyWindowMs: policy.idempotencyWindowMs,
      limits,
    };
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
    for (const planned of local) this.#seedFallback(command.principal, planned, policy.replicas);
    const localPlan = { ...plan, limits: local };
    // The fallback decides at once, however late it is: no deadline of its own. Its counts are a
    // stand-in for the store's, so they raise no events.
    const localCommand = { ...command, limits: local, deadlineMs: 0, events: undefined };
    return storeDecision(localPlan, this.#fallback.reserveNow(localCommand), true);
  }

  /**
   * Remembers what the store reported of each `local` limit (most recent last; the oldest are dropped
   * past LAST_SEEN_MAX_ENTRIES), so that an outage starts the fallback from there rather than from zero.
   */
  #noteSeen(principal: Principal, limits: readonly PlannedLimit[], states: readonly LimitState[]): void {
    const atMs = this.#clock.now();
    limits.forEach((planned, i) => {
      const { spec } = planned;
      if (spec.onStoreFailure !== 'local' || spec.shadow || spec.kind === 'concurrency') return;
      const key = limitKey(principal, spec);
      this.#lastSeen.delete(key);
      if (this.#lastSeen.size >= LAST_SEEN_MAX_ENTRIES) {
        this.#lastSeen.delete(this.#lastSeen.keys().next().value as string);
      }
      this.#lastSeen.set(key, { used: (states[i] as LimitState).used, atMs });
    });
  }

  /**
   * Seeds a `local` limit's fallback counter, once per outage, with this replica's share of the last count
   * the store reported, if that count still bears on now (the same window or calendar period).
   */
  #seedFallback(principal: Principal, local: PlannedLimit, replicas: number): void {
    const key = limitKey(principal, local.spec);
    const seen = this.#lastSeen.get(key);
    if (!seen) return;
    this.#lastSeen.delete(key);
    const now = this.#clock.now();
    const { spec } = local;
    const current =
      spec.kind === 'rate'
        ? now - seen.atMs < spec.windowMs
        : spec.kind === 'budget' &&
          periodAt(local.bounds as NonNullable<PlannedLimit['bounds']>, seen.atMs).start ===
            periodAt(local.bounds as NonNullable<PlannedLimit['bounds']>, now).start;
    if (current) this.#fallback.seedNow(principal, local, Math.ceil(seen.used / replicas));
  }

  /**
   * Settles a request. A reservation the `local` fallback made for it while the store was out is given
   * back first, whatever the shared store then does (it may be out still; the caller retries).
   */
  async record(input: RecordUsageInput, deadlineMs = NO_DEADLINE): Promise<SettlementReport> {
    const started = performance.now();
    const budget = new CallBudget(deadlineMs, this.#maxStoreWaitMs);
    const { principal, overrides, key } = await this.#resolveToReport(input, budget);
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
    const command: SettleCommand = {
      principal,
      requestId: input.requestId,
      outcome: input.outcome,
      actual,
      idempotencyWindowMs: policy.idempotencyWindowMs,
      limits,
      events: eventContext(policy, key?.id),
    };
    this.#fallback.releaseNow({ ...command, limits: [], events: undefined });
    const result = await this.#settleStore(command, this.#waitMs(budget));
    this.#noteRaised(principal, result.raised);
    this.#noteSeen(principal, limits, result.limits);
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

  #settleStore(command: SettleCommand, waitMs = this.#maxStoreWaitMs): Promise<SettleResult> {
    const answer = this.#silence.watch(this.#store.settle(command));
    return this.#timedStore('settle', within(answer, waitMs, 'settle'));
  }

  /**
   * A caller's limits, used and remaining. `caller`: the credential must be usable now (the caller asks
   * about itself); `operator`: any known key, revoked or expired ones included (an operator looks back).
   */
  async usage(
    credential: Credential,
    as: 'caller' | 'operator' = 'caller',
    deadlineMs = NO_DEADLINE,
  ): Promise<UsageReport> {
    const started = performance.now();
    const budget = new CallBudget(deadlineMs, this.#maxStoreWaitMs);
    const { principal, overrides, key, warning } =
      as === 'caller'
        ? await this.#resolveCaller(credential, budget)
        : await this.#resolveToReport(credential, budget);
    const policy = this.#policy();
    const limits = planPeek(policy, principal, this.#boundsAt(), overrides);
    const peek = this.#silence.watch(
      this.#store.reserve({
        principal,
        requestId: '',
        mode: 'peek',
        leaseMs: policy.leaseMs,
        idempotencyWindowMs: policy.idempotencyWindowMs,
        reservedTokens: 0,
        reservedMicros: 0,
        limits,
        deadlineMs: 0,
      }),
    );
    const result = await this.#timedStore('reserve', within(peek, this.#waitMs(budget), 'usage'));
    this.#noteSeen(principal, limits, result.limits);
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
  async models(credential: Credential, deadlineMs = NO_DEADLINE): Promise<ModelsReport> {
    const budget = new CallBudget(deadlineMs, this.#maxStoreWaitMs);
    const { principal, key, warning } = await this.#resolveCaller(credential, budget);
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

  /**
   * Logs and counts the events a store command raised, and notes the org's outbox for delivery. The
   * events themselves are safe in the store already: a failed note is found by the delivery's sweep.
   */
  #noteRaised(principal: Principal, raised: readonly RaisedEvent[] | undefined): void {
    if (!raised || raised.length === 0) return;
    for (const event of raised) {
      this.#metrics.events.raised.inc({
        type: event.type,
        threshold: event.threshold,
        limit: event.limitName,
      });
      this.#logger.info(
        {
          eventId: event.id,
          type: event.type,
          threshold: event.threshold,
          limit: event.limitName,
          org: principal.org,
          tier: principal.tier,
        },
        'event raised',
      );
    }
    this.#store.events.noteRaised(principal.org).then(
      () => this.#onEventsRaised?.(),
      (error: unknown) =>
        this.#logger.warn(
          { err: (error as Error).message, org: principal.org },
          'events raised but their outbox could not be noted; the delivery sweep will find it',
        ),
    );
  }

  /** One store round trip (or the wait for it), timed and counted, with the expired leases it reclaimed. */
  async #timedStore<T extends { expiredLeases: number }>(
    op: 'reserve' | 'settle',
    answer: Promise<T>,
  ): Promise<T> {
    const labels = { store: this.#store.kind, op };
    const started = performance.now();
    try {
      const result = await answer;
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

/** What a command needs to raise events under `policy`: nothing when it has no alerts section. */
function eventContext(
  policy: Policy,
  keyId: string | undefined,
  reserveTier?: string,
): EventContext | undefined {
  const { alerts } = policy;
  if (!alerts) return undefined;
  const context: EventContext = { keyId: keyId ?? '', deliver: alerts.webhook !== undefined };
  if (alerts.anomaly && reserveTier !== undefined) {
    context.anomaly = { spec: alerts.anomaly, action: alerts.anomaly.actions.get(reserveTier) ?? 'alert' };
  }
  return context;
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
