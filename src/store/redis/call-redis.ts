import { ReplyError } from 'ioredis';
import { StoreUnavailableError } from '../../core/errors.js';

/** Replies that mean "not now" (loading, failing over, busy), not "wrong". */
const TRANSIENT_REPLY = /^(LOADING|READONLY|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)/;
/** ioredis refuses a command at once when no connection can take it (the offline queue is off). */
const NOT_SENT = /Stream isn't writeable/;
/** ioredis gave up waiting (commandTimeout): Redis said nothing. */
const TIMED_OUT = /Command timed out/;

/**
 * Runs Redis commands, turning an outage (timeout, lost connection, failover reply) into
 * StoreUnavailableError, which the authority answers by its failure policies. A script error is a bug to
 * surface, not an outage to paper over, so it is thrown as it is.
 */
export async function callRedis<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof ReplyError && !TRANSIENT_REPLY.test(message)) throw error;
    throw new StoreUnavailableError(`redis: ${message}`, {
      cause: error,
      unsent: NOT_SENT.test(message),
      silent: TIMED_OUT.test(message),
    });
  }
}
