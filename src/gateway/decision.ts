import type { CheckQuotaResponse__Output } from '../gen/quotad/v1/CheckQuotaResponse.js';
import {
  authenticationError,
  gatewayError,
  invalidRequest,
  permissionError,
  type HttpError,
} from './errors.js';
import { retryHeaders, spreadRetry } from './rate-limit-headers.js';
import type { ModelCall } from './requests.js';

type Decision = CheckQuotaResponse__Output;

/** The SDKs wait at most a minute on their own; past that, telling them not to retry saves their calls. */
const LONGEST_USEFUL_RETRY_MS = 60_000;

/** The quota store (behind the authority) cannot decide, or the authority cannot be reached. */
export function quotaUnavailable(): HttpError {
  return gatewayError('quota_unavailable', undefined, { headers: retryHeaders(1_000) });
}

/**
 * Too many checks are waiting already (this gateway's bound), or the authority had no time left to decide
 * this one: refused at once rather than queued past its deadline. Not a failure of the authority, so
 * --fail-mode does not let it through.
 */
export function overloaded(): HttpError {
  return gatewayError('server_overloaded', undefined, { headers: retryHeaders(1_000) });
}

function overLimit(decision: Decision): HttpError {
  const denying = decision.limits.filter((l) => l.exceeded && !l.shadow);
  const spent = denying.some((l) => l.kind === 'BUDGET' && !l.held);
  const held = !spent && denying.some((l) => l.kind === 'BUDGET' && l.held);
  const wait = spreadRetry(decision.retryAfterMs > 0 ? decision.retryAfterMs : 1_000);
  const headers = retryHeaders(wait);
  if (wait > LONGEST_USEFUL_RETRY_MS) headers['x-should-retry'] = 'false';
  // OpenAI's own types: a spent budget is `insufficient_quota`; a rate names what ran out. A budget that
  // requests in flight hold frees as they settle: a short wait, which the SDKs retry as a rate limit.
  if (spent) return gatewayError('insufficient_quota', decision.reason, { headers });
  if (held) return gatewayError('quota_reserved', decision.reason, { headers });
  const type = denying[0]?.unit === 'TOKENS' ? 'tokens' : 'requests';
  return gatewayError('rate_limit_exceeded', decision.reason, { type, headers });
}

/** Why the authority refused a key: what CheckQuota decides and what GetUsage/ListModels put in the trailer. */
export type KeyRefusal = 'INVALID_KEY' | 'KEY_REVOKED' | 'KEY_EXPIRED';

export const KEY_REFUSALS: readonly string[] = [
  'INVALID_KEY',
  'KEY_REVOKED',
  'KEY_EXPIRED',
] satisfies KeyRefusal[];

/** The HTTP answer to a refused key, whichever call the authority refused it on. */
export function keyRefusal(refusal: KeyRefusal, reason: string): HttpError {
  switch (refusal) {
    case 'INVALID_KEY':
      return gatewayError('invalid_api_key');
    case 'KEY_REVOKED':
      return permissionError(`This API key was revoked: ${reason}.`, 'api_key_revoked');
    case 'KEY_EXPIRED':
      return permissionError(`This API key has expired: ${reason}.`, 'api_key_expired');
  }
}

/** The HTTP answer to a refusal, naming the parameter at fault where there is one. */
export function refusal(decision: Decision, call: ModelCall, requestedOutput: number): HttpError {
  switch (decision.code) {
    case 'OVER_LIMIT':
      return overLimit(decision);
    case 'INVALID_KEY':
    case 'KEY_REVOKED':
    case 'KEY_EXPIRED':
      return keyRefusal(decision.code, decision.reason);
    case 'MODEL_NOT_ALLOWED':
      return gatewayError('model_not_allowed', `Your tier may not use the model '${call.model}'.`, {
        param: 'model',
      });
    case 'UNKNOWN_MODEL':
      return invalidRequest(`The model '${call.model}' does not exist.`, 'model', 'model_not_found');
    case 'REQUEST_TOO_LARGE': {
      if (call.maxOutput && requestedOutput > decision.maxOutputTokens) {
        const times = call.choices > 1 ? ` for ${call.choices} choices (${requestedOutput} in all)` : '';
        return invalidRequest(
          `${call.maxOutput.param} is ${call.maxOutput.value}${times}, above your tier's cap of ${decision.maxOutputTokens} output tokens per request.`,
          call.maxOutput.param,
          'invalid_value',
        );
      }
      return invalidRequest(
        `The request is too large: ${decision.reason}.`,
        call.inputParam,
        'context_length_exceeded',
      );
    }
    case 'UNKNOWN_TIER':
      return permissionError(`Your tier is not configured: ${decision.reason}.`, 'unknown_tier');
    case 'STORE_UNAVAILABLE':
      return quotaUnavailable();
    case 'SIGNATURE_REQUIRED':
      return authenticationError(
        `This API key requires signed requests (X-Quotad-Timestamp, X-Quotad-Nonce, X-Quotad-Signature): ${decision.reason}.`,
        'signature_required',
      );
    case 'INVALID_SIGNATURE':
      return authenticationError(
        `The request signature is not valid: ${decision.reason}.`,
        'invalid_signature',
      );
    case 'SIGNATURE_EXPIRED':
      return authenticationError(
        `The request signature has expired: ${decision.reason}.`,
        'signature_expired',
      );
    case 'REPLAYED_REQUEST':
      return authenticationError(
        `This signed request was already used: ${decision.reason}. Sign every request with a new nonce.`,
        'replayed_request',
      );
    case 'OK':
    case 'CODE_UNSPECIFIED':
      return gatewayError('unknown_decision');
  }
}

/** A second request with an Idempotency-Key already admitted: it would be a free model call. */
export function duplicateRequest(requestId: string): HttpError {
  return gatewayError(
    'idempotency_key_reused',
    `A request with the id '${requestId}' was already admitted; it is charged once and not sent again. Use a new Idempotency-Key for a new request.`,
    { headers: { 'x-should-retry': 'false' } },
  );
}
