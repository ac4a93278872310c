import { randomBytes } from 'node:crypto';
import { adminServiceHandlers } from '../authority/admin-service.js';
import type { AdminTokens } from '../authority/admin-tokens.js';
import { QuotaAuthority, type SigningOptions } from '../authority/quota-authority.js';
import { quotaServiceHandlers } from '../authority/quota-service.js';
import type { Clock } from '../core/clock.js';
import type { Policy } from '../core/policy.js';
import type { AdminServiceHandlers } from '../gen/quotad/v1/AdminService.js';
import type { QuotaServiceHandlers } from '../gen/quotad/v1/QuotaService.js';
import { KeyRegistry } from '../keys/key-registry.js';
import type { AuditLog } from '../store/audit-log.js';
import type { KeyStore } from '../store/key-store.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { QuotaStore } from '../store/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics } from '../telemetry/metrics.js';

/** What the authority is made of: its stores, policy, clock and telemetry, opened by the caller. */
export interface AuthorityParts {
  store: QuotaStore;
  keyStore: KeyStore;
  /** The in-process store limits fail over to when the store is down (on_store_failure: local). */
  fallback: MemoryStore;
  policy: () => Policy;
  /** The authority's clock: key expiry and the in-process stores are judged on it. */
  clock: Clock;
  metrics: AuthorityMetrics;
  logger: Logger;
  /** How long a looked-up API key may be trusted from the cache (--key-cache-ttl). */
  keyCacheTtlMs: number;
  /** The longest a check waits on the store (--redis-timeout); the authority's default when absent. */
  maxStoreWaitMs?: number;
  /**
   * AdminService is served only with admin tokens (QUOTAD_ADMIN_TOKEN as `admin`, QUOTAD_ADMIN_TOKENS_FILE's
   * named ones, which the caller watches), and records every change and refused call in `audit`.
   */
  admin?: { tokens: AdminTokens; audit: AuditLog };
  /** How signed requests are verified (QUOTAD_SIGNING_KEY, --signature-max-age); unset: no signing key. */
  signing?: SigningOptions;
  /** QuotaService calls must then carry it (QUOTAD_AUTHORITY_TOKEN). */
  quotaToken?: string;
  /** Why QuotaService refuses every call now (a store reset awaiting confirmation); serving when absent. */
  refusal?: () => string | undefined;
  /** AdminService's ConfirmStoreReset; absent for the in-process store. */
  confirmStoreReset?: () => Promise<boolean>;
  /** A CSPRNG for key secrets; crypto.randomBytes unless given. */
  randomBytes?: (size: number) => Uint8Array;
  /** Told when a decision raised events (the webhook delivery then looks at once). */
  onEventsRaised?: () => void;
}

export interface ComposedAuthority {
  authority: QuotaAuthority;
  keys: KeyRegistry;
  /** The handlers of both gRPC services, ready for the server; admin only with admin tokens. */
  handlers: { quota: QuotaServiceHandlers; admin?: AdminServiceHandlers };
}

/**
 * The one wiring of the authority process's parts: key registry, decision logic and the handlers of its two
 * services. `quotad serve`, the tests and the benchmarks all build the authority with it.
 */
export function composeAuthority(parts: AuthorityParts): ComposedAuthority {
  const { clock, metrics, logger, policy } = parts;
  const keys = new KeyRegistry({
    store: parts.keyStore,
    clock,
    policy,
    cacheTtlMs: parts.keyCacheTtlMs,
    randomBytes: parts.randomBytes ?? ((size) => randomBytes(size)),
    metrics,
    logger,
  });
  const authority = new QuotaAuthority({
    store: parts.store,
    fallback: parts.fallback,
    policy,
    clock,
    metrics,
    logger,
    keys,
    ...(parts.maxStoreWaitMs === undefined ? {} : { maxStoreWaitMs: parts.maxStoreWaitMs }),
    ...(parts.onEventsRaised ? { onEventsRaised: parts.onEventsRaised } : {}),
    ...(parts.signing ? { signing: parts.signing } : {}),
  });
  const quota = quotaServiceHandlers(authority, metrics, logger, {
    ...(parts.quotaToken === undefined ? {} : { token: parts.quotaToken }),
    ...(parts.refusal === undefined ? {} : { refusal: parts.refusal }),
  });
  const signingKey = parts.signing?.masterKey;
  const admin =
    parts.admin === undefined
      ? undefined
      : adminServiceHandlers({
          keys,
          authority,
          tokens: parts.admin.tokens,
          audit: parts.admin.audit,
          policy,
          clock,
          ...(signingKey ? { signingKey } : {}),
          metrics,
          logger,
          ...(parts.confirmStoreReset ? { confirmStoreReset: parts.confirmStoreReset } : {}),
          events: parts.store.events,
        });
  return { authority, keys, handlers: admin ? { quota, admin } : { quota } };
}
