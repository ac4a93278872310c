import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import { formatOverrideValue } from '../core/limit-overrides.js';
import type { Policy } from '../core/policy.js';
import type { AdminServiceHandlers } from '../gen/quotad/v1/AdminService.js';
import type { ApiKey } from '../gen/quotad/v1/ApiKey.js';
import type { KeyRegistry } from '../keys/key-registry.js';
import { isKeyId } from '../keys/api-key.js';
import { webhookBody } from '../events/webhook-event.js';
import type { EventOutbox } from '../store/event-outbox.js';
import {
  keyPrincipal,
  keyState,
  signingOf,
  SIGNING_MODES,
  type ApiKeyRecord,
  type SigningMode,
} from '../core/key-record.js';
import { deriveSigningSecret } from '../keys/signing.js';
import type { AuditKeySnapshot, AuditLog, AuditRecord as StoredAuditRecord } from '../store/audit-log.js';
import type { AuditRecord } from '../gen/quotad/v1/AuditRecord.js';
import type { AuditKeyState } from '../gen/quotad/v1/AuditKeyState.js';
import type { KeyChangeSeen } from '../keys/key-registry.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics, GrpcMethod, GrpcStatusName } from '../telemetry/metrics.js';
import type { AdminTokens } from './admin-tokens.js';
import type { QuotaAuthority } from './quota-authority.js';
import { toLimitStatus, toServiceError } from './quota-service.js';
import { requireOrg, requireText } from '../api/identity.js';

/** Key lifetimes and overlaps above this are mistakes, not policies. */
const MAX_DURATION_MS = 10 * 365 * 86_400_000;
const MAX_PAGE_SIZE = 500;
const DEFAULT_PAGE_SIZE = 50;
const MAX_AUDIT_PAGE_SIZE = 1_000;
const DEFAULT_AUDIT_PAGE_SIZE = 100;
const AUDIT_ID = /^\d{1,15}-\d{1,15}$/;

const STATE: Record<ReturnType<typeof keyState>, ApiKey['state']> = {
  active: 'ACTIVE',
  revoked: 'REVOKED',
  expired: 'EXPIRED',
};

export interface AdminServiceOptions {
  keys: KeyRegistry;
  authority: QuotaAuthority;
  /** The tokens callers present as `authorization: Bearer <token>`, with their names and roles. */
  tokens: AdminTokens;
  /** Where every change and every refused call is recorded. */
  audit: AuditLog;
  policy: () => Policy;
  clock: Clock;
  /** QUOTAD_SIGNING_KEY, which signing secrets derive from; unset: no key may have signing on. */
  signingKey?: Buffer;
  metrics: AuthorityMetrics;
  logger: Logger;
  /**
   * Confirms a store reset (ConfirmStoreReset): resolves whether one was pending. Absent for the
   * in-process store, which has no marker.
   */
  confirmStoreReset?: () => Promise<boolean>;
  /** The store's events, for ListEvents. */
  events: EventOutbox;
}

const EVENT_TYPES = ['budget.threshold', 'usage.anomaly'] as const;
const MAX_EVENTS = 1_000;
const DEFAULT_EVENTS = 50;

function requireId(id: string): string {
  requireText('id', id, 64);
  if (!isKeyId(id)) throw new InvalidArgumentError('id', `'${id}' is not a key id (key_…)`);
  return id;
}

function requireSigning(text: string): SigningMode {
  const mode = text === '' ? 'off' : text;
  if (!(SIGNING_MODES as readonly string[]).includes(mode))
    throw new InvalidArgumentError('signing', `must be off, optional or required, not '${text}'`);
  return mode as SigningMode;
}

function requireDuration(field: string, ms: number): number {
  if (ms < 0 || ms > MAX_DURATION_MS) throw new InvalidArgumentError(field, 'must be between 0 and 10 years');
  return ms;
}

/** AdminService over gRPC: every call checks the admin token first, so a refused call changes nothing. */
export function adminServiceHandlers(options: AdminServiceOptions): AdminServiceHandlers {
  const { keys, authority, metrics, logger } = options;

  function toApiKey(record: ApiKeyRecord): ApiKey {
    const tier = options.policy().tiers.get(record.tier);
    return {
      id: record.id,
      name: record.name,
      owner: record.owner,
      org: record.org,
      tier: record.tier,
      state: STATE[keyState(record, options.clock.now())],
      createdAtMs: record.createdMs,
      expiresAtMs: record.expiresMs ?? 0,
      revokedAtMs: record.revokedMs ?? 0,
      lastUsedAtMs: record.lastUsedMs ?? 0,
      limits: Object.entries(record.limits).map(([name, amount]) => ({
        name,
        value: formatOverrideValue(
          tier?.limits.find((spec) => spec.name === name),
          amount,
        ),
      })),
      secrets: record.secrets.map((secret) => ({
        hint: secret.hint,
        createdAtMs: secret.createdMs,
        expiresAtMs: secret.notAfterMs ?? 0,
      })),
      signing: signingOf(record),
    };
  }

  /** A signing mode other than off needs the master secret the signing secrets derive from. */
  function requireSigningKey(mode: SigningMode): void {
    if (mode !== 'off' && !options.signingKey) {
      throw new InvalidArgumentError(
        'signing',
        'this authority has no QUOTAD_SIGNING_KEY, so no key can have signing on',
      );
    }
  }

  /** The signing secret of the record's current API secret, when its signing is on; '' otherwise. */
  function signingSecretOf(record: ApiKeyRecord): string {
    const current = record.secrets.at(-1);
    if (signingOf(record) === 'off' || !options.signingKey || !current) return '';
    return deriveSigningSecret(options.signingKey, record.id, current.sha256);
  }

  function snapshot(record: ApiKeyRecord | undefined): AuditKeySnapshot | null {
    if (!record) return null;
    const now = options.clock.now();
    return {
      tier: record.tier,
      state: keyState(record, now),
      expiresMs: record.expiresMs,
      limits: toApiKey(record).limits as { name: string; value: string }[],
      secrets: record.secrets.filter((secret) => secret.notAfterMs === null || secret.notAfterMs > now)
        .length,
      signing: signingOf(record),
    };
  }

  function toAuditKeyState(state: AuditKeySnapshot | null): AuditKeyState | null {
    if (!state) return null;
    return {
      tier: state.tier,
      state: STATE[state.state],
      expiresAtMs: state.expiresMs ?? 0,
      limits: state.limits,
      secrets: state.secrets,
      signing: state.signing,
    };
  }

  function toAuditRecord(record: StoredAuditRecord): AuditRecord {
    return {
      id: record.id,
      timeMs: record.timeMs,
      actor: record.actor,
      action: record.action,
      keyId: record.keyId,
      outcome: record.outcome,
      detail: record.detail,
      peer: record.peer,
      before: toAuditKeyState(record.before),
      after: toAuditKeyState(record.after),
    };
  }

  /** What a changing call saw: its key before the change and after it (filled by the handler). */
  interface CallAudit {
    seen: KeyChangeSeen;
    after?: ApiKeyRecord;
  }

  /**
   * One AdminService method: the token is identified first (an unknown one is UNAUTHENTICATED, a read-only
   * one calling a changing method PERMISSION_DENIED, each changing nothing); then the call runs. Refusals,
   * and every call of a changing method whatever its outcome, are appended to the audit trail before the
   * answer goes out.
   */
  function admin<Req, Res>(
    method: GrpcMethod,
    kind: 'read' | 'change',
    handle: (request: Req, audit: CallAudit) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const identity = options.tokens.identify(call.metadata);
      const requestedId = (call.request as { id?: unknown }).id;
      const keyId = typeof requestedId === 'string' && isKeyId(requestedId) ? requestedId : '';
      const audit: CallAudit = { seen: {} };
      const finish = async (status: Partial<grpc.StatusObject> | null, response?: Res) => {
        const code = status ? (grpc.status[status.code as grpc.status] as GrpcStatusName) : 'OK';
        const refused = code === 'UNAUTHENTICATED' || code === 'PERMISSION_DENIED';
        if (kind === 'change' || refused) {
          await options.audit
            .append({
              timeMs: options.clock.now(),
              actor: identity?.name ?? '',
              action: method,
              keyId: keyId || (audit.after?.id ?? ''),
              outcome: code,
              detail: status?.details ?? '',
              peer: call.getPeer(),
              before: snapshot(audit.seen.before),
              after: code === 'OK' ? snapshot(audit.after) : null,
            })
            .catch((error: unknown) => {
              logger.error(
                { method, actor: identity?.name, keyId, outcome: code, err: (error as Error).message },
                'audit record not written',
              );
            });
        }
        metrics.grpcRequests.inc({ method, code });
        if (status) callback(status);
        else callback(null, response);
      };
      if (!identity) {
        logger.warn({ method, peer: call.getPeer() }, 'admin call refused: missing or unknown admin token');
        void finish({
          code: grpc.status.UNAUTHENTICATED,
          details: 'a valid admin token is required (authorization: Bearer <token>)',
        });
        return;
      }
      if (kind === 'change' && identity.role !== 'admin') {
        logger.warn(
          { method, actor: identity.name, peer: call.getPeer() },
          'admin call refused: read-only token',
        );
        void finish({
          code: grpc.status.PERMISSION_DENIED,
          details: `the admin token '${identity.name}' is read-only: it may list and show, not ${method}`,
        });
        return;
      }
      handle(call.request, audit).then(
        (response) => finish(null, response),
        (error: unknown) => finish(toServiceError(error, logger, method)),
      );
    };
  }

  return {
    CreateKey: admin('CreateKey', 'change', async (request, audit) => {
      const signing = requireSigning(request.signing);
      requireSigningKey(signing);
      const { record, secret } = await keys.create({
        signing,
        name: requireText('name', request.name, 128),
        owner: requireText('owner', request.owner, 128),
        org: requireOrg('org', request.org),
        tier: requireText('tier', request.tier, 64),
        expiresInMs: requireDuration('expires_in_ms', request.expiresInMs),
      });
      audit.after = record;
      return { key: toApiKey(record), secret, signingSecret: signingSecretOf(record) };
    }),
    ListKeys: admin('ListKeys', 'read', async (request) => {
      if (request.pageSize > MAX_PAGE_SIZE)
        throw new InvalidArgumentError('page_size', `must be at most ${MAX_PAGE_SIZE}`);
      const page = await keys.list({
        ...(request.org ? { org: requireOrg('org', request.org) } : {}),
        pageSize: request.pageSize || DEFAULT_PAGE_SIZE,
        pageToken: request.pageToken,
      });
      return { keys: page.keys.map(toApiKey), nextPageToken: page.nextPageToken };
    }),
    GetKey: admin('GetKey', 'read', async (request) => toApiKey(await keys.get(requireId(request.id)))),
    RevokeKey: admin('RevokeKey', 'change', async (request, audit) => {
      audit.after = await keys.revoke(requireId(request.id), audit.seen);
      return toApiKey(audit.after);
    }),
    RotateKey: admin('RotateKey', 'change', async (request, audit) => {
      const overlap =
        request._overlapMs === 'overlapMs'
          ? requireDuration('overlap_ms', request.overlapMs ?? 0)
          : undefined;
      const rotated = await keys.rotate(requireId(request.id), overlap, audit.seen);
      audit.after = rotated.record;
      return {
        key: toApiKey(rotated.record),
        secret: rotated.secret,
        signingSecret: signingSecretOf(rotated.record),
        previousSecretExpiresAtMs: rotated.previousExpiresAtMs,
      };
    }),
    SetKeyLimits: admin('SetKeyLimits', 'change', async (request, audit) => {
      if (request.set.length === 0 && request.unset.length === 0)
        throw new InvalidArgumentError('set', 'name at least one limit to set or unset');
      audit.after = await keys.setLimits(requireId(request.id), request.set, request.unset, audit.seen);
      return toApiKey(audit.after);
    }),
    ListEvents: admin('ListEvents', 'read', async (request) => {
      if (request.type !== '' && !(EVENT_TYPES as readonly string[]).includes(request.type)) {
        throw new InvalidArgumentError('type', `expected one of: ${EVENT_TYPES.join(', ')}`);
      }
      if (request.limit > MAX_EVENTS)
        throw new InvalidArgumentError('limit', `must be at most ${MAX_EVENTS}`);
      const entries = await options.events.list({
        ...(request.org ? { org: requireOrg('org', request.org) } : {}),
        ...(request.type ? { type: request.type as (typeof EVENT_TYPES)[number] } : {}),
        limit: Number(request.limit) || DEFAULT_EVENTS,
      });
      return {
        events: entries.map(({ event, state, attempts, lastError }) => ({
          id: event.id,
          type: event.type,
          createdAtMs: event.createdAtMs,
          threshold: event.threshold,
          org: event.principal.org,
          subject: event.principal.subject,
          tier: event.principal.tier,
          keyId: event.principal.keyId ?? '',
          limit: event.limit?.name ?? event.anomaly?.measure ?? '',
          used: event.limit?.used ?? event.anomaly?.observed ?? 0,
          limitAmount: event.limit?.limit ?? 0,
          delivery: state,
          attempts,
          lastError,
          body: webhookBody(event),
        })),
      };
    }),
    SetKeySigning: admin('SetKeySigning', 'change', async (request, audit) => {
      const mode = requireSigning(request.signing);
      requireSigningKey(mode);
      const record = await keys.setSigning(requireId(request.id), mode, audit.seen);
      audit.after = record;
      const wasOff = !audit.seen.before || signingOf(audit.seen.before) === 'off';
      return { key: toApiKey(record), signingSecret: wasOff ? signingSecretOf(record) : '' };
    }),
    GetKeyUsage: admin('GetKeyUsage', 'read', async (request) => {
      const record = await keys.get(requireId(request.id));
      const usage = await authority.usage(
        { principal: keyPrincipal(record), overrides: record.limits },
        'operator',
      );
      return {
        key: toApiKey(record),
        usage: {
          tier: usage.tier,
          limits: usage.limits.map(toLimitStatus),
          tokensUsed: usage.tokensUsed,
          usdMicrosSpent: usage.usdMicrosSpent,
        },
      };
    }),
    ListAuditRecords: admin('ListAuditRecords', 'read', async (request) => {
      if (request.pageSize > MAX_AUDIT_PAGE_SIZE)
        throw new InvalidArgumentError('page_size', `must be at most ${MAX_AUDIT_PAGE_SIZE}`);
      if (request.pageToken && !AUDIT_ID.test(request.pageToken))
        throw new InvalidArgumentError('page_token', 'is not one this service gave');
      if (request.sinceMs < 0) throw new InvalidArgumentError('since_ms', 'must not be negative');
      const page = await options.audit.list({
        ...(request.keyId ? { keyId: requireText('key_id', request.keyId, 64) } : {}),
        ...(request.actor ? { actor: requireText('actor', request.actor, 64) } : {}),
        ...(request.action ? { action: requireText('action', request.action, 64) } : {}),
        ...(request.sinceMs > 0 ? { sinceMs: request.sinceMs } : {}),
        ...(request.pageToken ? { beforeId: request.pageToken } : {}),
        limit: request.pageSize || DEFAULT_AUDIT_PAGE_SIZE,
      });
      return { records: page.records.map(toAuditRecord), nextPageToken: page.next ?? '' };
    }),
    ConfirmStoreReset: admin('ConfirmStoreReset', 'change', async () => {
      const confirm = options.confirmStoreReset;
      if (confirm === undefined) return { wasPending: false, store: 'memory' };
      const wasPending = await confirm();
      logger.warn(
        { wasPending },
        'store reset confirmed by an operator: QuotaService serves from the store as it is',
      );
      return { wasPending, store: 'redis' };
    }),
  };
}
