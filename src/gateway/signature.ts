import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { signatureFormatProblem } from '../keys/signing.js';
import { authenticationError } from './errors.js';

/** A request's signature as it goes to the authority, which verifies it; the body's hash once read. */
export interface SentSignature {
  timestamp: string;
  nonce: string;
  signature: string;
  method: string;
  path: string;
  bodySha256: Buffer;
}

const EMPTY_BODY_SHA256 = createHash('sha256').update('').digest();

const HEADERS = ['x-quotad-timestamp', 'x-quotad-nonce', 'x-quotad-signature'] as const;

/**
 * The request's X-Quotad-Timestamp, X-Quotad-Nonce and X-Quotad-Signature, or undefined when it carries
 * none. Some but not all, or any malformed, is 401 invalid_signature at once: nothing is read or charged.
 */
export function signatureHeaders(
  headers: IncomingHttpHeaders,
  method: string,
  path: string,
): SentSignature | undefined {
  const values = HEADERS.map((name) => headers[name]);
  if (values.every((value) => value === undefined)) return undefined;
  const [timestamp, nonce, signature] = values;
  if (typeof timestamp !== 'string' || typeof nonce !== 'string' || typeof signature !== 'string') {
    throw authenticationError(
      'A signed request carries all three of X-Quotad-Timestamp, X-Quotad-Nonce and X-Quotad-Signature, once each.',
      'invalid_signature',
    );
  }
  const problem = signatureFormatProblem({ timestamp, nonce, signature });
  if (problem)
    throw authenticationError(`The request signature is not valid: ${problem}.`, 'invalid_signature');
  return { timestamp, nonce, signature, method, path, bodySha256: EMPTY_BODY_SHA256 };
}
