/**
 * The trailer of a refused QuotaService call, so callers need not read the message. GetUsage and ListModels
 * name a refused API key in it as CheckQuota names one in its code:
 * - UNAUTHENTICATED with INVALID_KEY: no key has this hash;
 * - PERMISSION_DENIED with KEY_REVOKED or KEY_EXPIRED: the key was revoked, or has expired (or this
 *   secret was rotated out);
 * - UNAUTHENTICATED with AUTHORITY_TOKEN, from any QuotaService call: the caller's own token for the
 *   authority was missing or wrong (not the API key it asked about).
 */
export const REFUSAL_TRAILER = 'quotad-refusal';

/** The REFUSAL_TRAILER value of an UNAUTHENTICATED: the caller's token for the authority, not a key. */
export const AUTHORITY_TOKEN_REFUSAL = 'AUTHORITY_TOKEN';

/** The REFUSAL_TRAILER value of an UNAUTHENTICATED for an API key no one issued (or long forgotten). */
export const INVALID_KEY_REFUSAL = 'INVALID_KEY';
