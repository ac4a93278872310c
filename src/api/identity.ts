/**
 * The rules for the identity fields of the contract (ids, org, tier), shared by the authority that enforces
 * them and the gateway that checks a JWT's claims against them before it calls.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { MAX_NAME_LENGTH } from './limits.js';

const ORG = /^[A-Za-z0-9._-]{1,64}$/;
// Printable text without control characters: ids end up in logs and Redis keys.
const PRINTABLE = /^[^\p{Cc}]+$/u;

export function requireText(field: string, value: string, maxLength: number): string {
  if (value.length === 0) throw new InvalidArgumentError(field, 'is required');
  if (value.length > maxLength)
    throw new InvalidArgumentError(field, `must be at most ${maxLength} characters`);
  if (!PRINTABLE.test(value)) throw new InvalidArgumentError(field, 'must not contain control characters');
  return value;
}

export function requireOrg(field: string, org: string): string {
  requireText(field, org, MAX_NAME_LENGTH);
  if (!ORG.test(org))
    throw new InvalidArgumentError(field, 'may hold only letters, digits, ".", "_" and "-"');
  return org;
}
