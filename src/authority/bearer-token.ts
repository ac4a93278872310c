import { timingSafeEqual } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { sha256 } from '../keys/api-key.js';

/**
 * A check that a call carries `authorization: Bearer <token>`, compared in constant time over
 * equal-length digests (so neither the token's length nor its prefix leaks through timing).
 */
export function bearerTokenCheck(token: string): (metadata: grpc.Metadata) => boolean {
  const expected = sha256(token);
  return (metadata) => {
    const [header] = metadata.get('authorization');
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
    return timingSafeEqual(sha256(header.slice('Bearer '.length)), expected);
  };
}
