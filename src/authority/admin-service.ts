import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import { formatOverrideValue } from '../core/limit-overrides.js';
import type { Policy } from '../core/policy.js';
import type { AdminServiceHandlers } from '../gen/quotad/v1/AdminService.js';
import type { ApiKey } from '../gen/quotad/v1/ApiKey.js';
import type { KeyRegistry } from '../keys/key-registry.js';
import { isKeyId } from '../keys/api-key.js';
import { keyPrincipal, keyState, type ApiKeyRecord } from '../core/key-record.js';
import { webhookBody } from '../events/webhook-event.js';
import type { EventOutbox } from '../store/event-outbox.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics, GrpcMethod, GrpcStatusName } from '../telemetry/metrics.js';
import { bearerTokenCheck } from './bearer-token.js';
import type { QuotaAuthority } from './quota-authority.js';
import { toLimitStatus, toServiceError } from './quota-service.js';
import { requireOrg, requireText } from '../api/identity.js';

/** Key lifetimes and overlaps above this are mistakes, not policies. */
const MAX_DURATION_MS = 10 * 365 * 86_400_000;
const MAX_PAGE_SIZE = 500;
const DEFAULT_PAGE_SIZE = 50;

const STATE: Record<ReturnType<typeof keyState>, ApiKey['state']> = {
  active: 'ACTIVE',
  revoked: 'REVOKED',
  expired: 'EXPIRED',
};

export interface AdminServiceOptions {
  keys: KeyRegistry;
  authority: QuotaAuthority;
  /** The token callers must present as `authorization: Bearer <token>`. */
  adminToken: string;
  policy: () => Policy;
  clock: Clock;
  metrics: AuthorityMetrics;
  logger: Logger;
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

function requireDuration(field: string, ms: number): number {
  if (ms < 0 || ms > MAX_DURATION_MS) throw new InvalidArgumentError(field, 'must be between 0 and 10 years');
  return ms;
}

/** AdminService over gRPC: every call checks the admin token first, so a refused call changes nothing. */
export function adminServiceHandlers(options: AdminServiceOptions): AdminServiceHandlers {
  const { keys, authority, metrics, logger } = options;
  const hasAdminToken = bearerTokenCheck(options.adminToken);

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
    };
  }

  function admin<Req, Res>(
    method: GrpcMethod,
    handle: (request: Req) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const finish = (status: Partial<grpc.StatusObject> | null, response?: Res) => {
        const code = status ? (grpc.status[status.code as grpc.status] as GrpcStatusName) : 'OK';
        metrics.grpcRequests.inc({ method, code });
        if (status) callback(status);
        else callback(null, response);
      };
      if (!hasAdminToken(call.metadata)) {
        logger.warn({ method, peer: call.getPeer() }, 'admin call refused: missing or wrong admin token');
        finish({
          code: grpc.status.UNAUTHENTICATED,
          details: 'a valid admin token is required (authorization: Bearer <QUOTAD_ADMIN_TOKEN>)',
        });
        return;
      }
      handle(call.request).then(
        (response) => finish(null, response),
        (error: unknown) => finish(toServiceError(error, logger, method)),
      );
    };
  }

  return {
    CreateKey: admin('CreateKey', async (request) => {
      const { record, secret } = await keys.create({
        name: requireText('name', request.name, 128),
        owner: requireText('owner', request.owner, 128),
        org: requireOrg('org', request.org),
        tier: requireText('tier', request.tier, 64),
        expiresInMs: requireDuration('expires_in_ms', request.expiresInMs),
      });
      return { key: toApiKey(record), secret };
    }),
    ListKeys: admin('ListKeys', async (request) => {
      if (request.pageSize > MAX_PAGE_SIZE)
        throw new InvalidArgumentError('page_size', `must be at most ${MAX_PAGE_SIZE}`);
      const page = await keys.list({
        ...(request.org ? { org: requireOrg('org', request.org) } : {}),
        pageSize: request.pageSize || DEFAULT_PAGE_SIZE,
        pageToken: request.pageToken,
      });
      return { keys: page.keys.map(toApiKey), nextPageToken: page.nextPageToken };
    }),
    GetKey: admin('GetKey', async (request) => toApiKey(await keys.get(requireId(request.id)))),
    RevokeKey: admin('RevokeKey', async (request) => toApiKey(await keys.revoke(requireId(request.id)))),
    RotateKey: admin('RotateKey', async (request) => {
      const overlap =
        request._overlapMs === 'overlapMs'
          ? requireDuration('overlap_ms', request.overlapMs ?? 0)
          : undefined;
      const rotated = await keys.rotate(requireId(request.id), overlap);
      return {
        key: toApiKey(rotated.record),
        secret: rotated.secret,
        previousSecretExpiresAtMs: rotated.previousExpiresAtMs,
      };
    }),
    SetKeyLimits: admin('SetKeyLimits', async (request) => {
      if (request.set.length === 0 && request.unset.length === 0)
        throw new InvalidArgumentError('set', 'name at least one limit to set or unset');
      return toApiKey(await keys.setLimits(requireId(request.id), request.set, request.unset));
    }),
    ListEvents: admin('ListEvents', async (request) => {
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
    GetKeyUsage: admin('GetKeyUsage', async (request) => {
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
  };
}
