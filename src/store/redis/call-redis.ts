import { ReplyError } from 'ioredis';
import { StoreUnavailableError } from '../../core/errors.js';

/** Replies that mean "not now" (loading, failing over, busy), not "wrong". */
const TRANSIENT_REPLY = /^(LOADING|READONLY|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)/;

/**
 * Runs Redis commands, turning an outage (timeout, lost connection, failover reply) into
 * StoreUnavailableError, which the authority answers by its failure policies. A script error is a bug to
 * surface, not an outage to paper over, so it is thrown as it is.
 */
export async function callRedis<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof ReplyError && !TRANSIENT_REPLY.test((error as Error).message)) throw error;
    throw new StoreUnavailableError(`redis: ${(error as Error).message}`, { cause: error });
  }
}
