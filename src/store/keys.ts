import type { LimitSpec } from '../core/policy.js';
import type { Principal } from '../core/quota.js';

/**
 * Every key quotad writes, built in one place. All keys of an org share the hash tag `{org:<org>}`, so one
 * script touches one Redis Cluster slot. Parts a caller chooses (subject, request_id) are escaped so that
 * no two identities share a key.
 */

const PLAIN = /^[A-Za-z0-9._-]*$/;

function escapePart(part: string): string {
  return PLAIN.test(part) ? part : encodeURIComponent(part);
}

const KIND_SEGMENT: Record<LimitSpec['kind'], string> = {
  rate: 'rate',
  budget: 'budget',
  concurrency: 'conc',
};

export function orgPrefix(org: string): string {
  return `quotad:{org:${org}}`;
}

/** The counter of one limit for one principal (or the principal's whole org, for org-scoped limits). */
export function limitKey(principal: Principal, spec: LimitSpec): string {
  const scope = spec.scope === 'org' ? 'org' : `s:${escapePart(principal.subject)}`;
  return `${orgPrefix(principal.org)}:${KIND_SEGMENT[spec.kind]}:${scope}:${spec.name}`;
}

/** The reservation record of one request_id of one subject. */
export function reservationKey(principal: Principal, requestId: string): string {
  return `${orgPrefix(principal.org)}:res:${escapePart(principal.subject)}:${escapePart(requestId)}`;
}

/** A reservation's member in its concurrency lease sets (unique within an org). */
export function leaseMember(principal: Principal, requestId: string): string {
  return `${escapePart(principal.subject)}:${escapePart(requestId)}`;
}
