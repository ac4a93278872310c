/** Limits of the wire contract, one source for the server that enforces them and the clients that keep to them. */

/** The most items one batch call may carry: enough to coalesce a busy gateway's tick, bounded in memory. */
export const MAX_BATCH_ITEMS = 1_000;

/** Longest request_id, model and principal.subject, in characters. */
export const MAX_ID_LENGTH = 128;

/** Longest principal.org and principal.tier, in characters. */
export const MAX_NAME_LENGTH = 64;
