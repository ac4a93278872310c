/**
 * The trailer of a refused QuotaService call, so callers need not read the message:
 * - on a PERMISSION_DENIED from GetUsage or ListModels, why the key was refused (KEY_REVOKED or
 *   KEY_EXPIRED, as CheckQuotaResponse.Code names them);
 * - on an UNAUTHENTICATED from any QuotaService call, AUTHORITY_TOKEN: the caller's own token was missing
 *   or wrong (not the API key it asked about).
 */
export const REFUSAL_TRAILER = 'quotad-refusal';

/** The REFUSAL_TRAILER value of an UNAUTHENTICATED: the caller's token for the authority, not a key. */
export const AUTHORITY_TOKEN_REFUSAL = 'AUTHORITY_TOKEN';
