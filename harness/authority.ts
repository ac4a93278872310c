import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { CheckQuotaInput, QuotaAuthority, RecordUsageInput } from '../src/authority/quota-authority.js';
import type { Clock } from '../src/core/clock.js';
import type { Policy } from '../src/core/policy.js';
import type { Principal } from '../src/core/quota.js';
import type { KeyRegistry } from '../src/keys/key-registry.js';
import { composeAuthority, type ComposedAuthority } from '../src/main/compose-authority.js';
import type { KeyStore } from '../src/store/key-store.js';
import { MemoryKeyStore } from '../src/store/memory-key-store.js';
import { MemoryStore } from '../src/store/memory-store.js';
import type { QuotaStore } from '../src/store/store.js';
import { createLogger, type Logger } from '../src/telemetry/logger.js';
import { AuthorityMetrics } from '../src/telemetry/metrics.js';
import { TEST_MODEL } from './policy.js';

/** A logger that keeps its lines in memory, so tests can read what was logged. */
export function capturingLogger(level = 'info'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ level, name: 'quotad-test', destination }), lines };
}

export interface TestAuthority {
  authority: QuotaAuthority;
  metrics: AuthorityMetrics;
  fallback: MemoryStore;
  /** What the authority logged, one JSON line each. */
  logLines: string[];
  keys: KeyRegistry;
  /** QuotaService's handlers, as `quotad serve` builds them (no AdminService: no admin token). */
  handlers: ComposedAuthority['handlers'];
  setPolicy(policy: Policy): void;
}

export function makeAuthority(
  store: QuotaStore,
  clock: Clock,
  policy: Policy,
  logLevel = 'info',
  keyStore: KeyStore = new MemoryKeyStore({ clock }),
): TestAuthority {
  let current = policy;
  const metrics = new AuthorityMetrics({ version: 'test', collectDefault: false, storeKind: store.kind });
  const fallback = new MemoryStore({ clock, sweepIntervalMs: 0 });
  const { logger, lines } = capturingLogger(logLevel);
  const { authority, keys, handlers } = composeAuthority({
    store,
    keyStore,
    fallback,
    policy: () => current,
    clock,
    metrics,
    logger,
    keyCacheTtlMs: 1_000,
    randomBytes,
  });
  return {
    authority,
    metrics,
    fallback,
    logLines: lines,
    keys,
    handlers,
    setPolicy: (next) => (current = next),
  };
}

let sequence = 0;

/** A principal no other test uses, so tests can share one Redis without flushing it. */
export function freshPrincipal(tier: string, org?: string): Principal {
  sequence += 1;
  return { subject: `user-${process.pid}-${sequence}`, org: org ?? `org-${process.pid}-${sequence}`, tier };
}

/** A check asked for a principal (not an API key), so tests can read who asked. */
export type PrincipalCheck = CheckQuotaInput & { principal: Principal };

export function checkInput(principal: Principal, overrides: Partial<PrincipalCheck> = {}): PrincipalCheck {
  sequence += 1;
  return {
    requestId: `req-${sequence}`,
    principal,
    model: TEST_MODEL.name,
    inputTokens: 100,
    maxOutputTokens: 200,
    dryRun: false,
    ...overrides,
  };
}

export function usageInput(
  check: PrincipalCheck,
  overrides: Partial<RecordUsageInput> = {},
): RecordUsageInput {
  return {
    requestId: check.requestId,
    principal: check.principal,
    model: check.model,
    inputTokens: check.inputTokens,
    outputTokens: check.maxOutputTokens,
    outcome: 'completed',
    ...overrides,
  };
}
