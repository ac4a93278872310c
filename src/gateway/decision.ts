import type { CheckQuotaResponse__Output } from '../gen/quotad/v1/CheckQuotaResponse.js';
import { HttpError, invalidRequest, permissionError, authenticationError } from './openai-error.js';
import { retryHeaders } from './rate-limit-headers.js';
import type { ModelCall } from './requests.js';

type Decision = CheckQuotaResponse__Output;

/** The SDKs wait at most a minute on their own; past that, telling them not to retry saves their calls. */
const LONGEST_USEFUL_RETRY_MS = 60_000;

/** The quota store (behind the authority) cannot decide, or the authority cannot be reached. */
export function quotaUnavailable(): HttpError {
  return new HttpError(
    503,
    'Quota checks are unavailable right now, so the request was not sent to the model. Retry shortly.',
    { type: 'server_error', code: 'quota_unavailable', headers: retryHeaders(1_000) },
  );
}

/**
 * Too many checks are waiting already (this gateway's bound), or the authority had no time left to decide
 * this one: refused at once rather than queued past its deadline. Not a failure of the authority, so
 * --fail-mode does not let it through.
 */
export function overloaded(): HttpError {
  return new HttpError(
    503,
    'The gateway is overloaded: too many requests are waiting for a quota decision, so this one was not sent to the model. Retry shortly.',
    { type: 'server_error', code: 'server_overloaded', headers: retryHeaders(1_000) },
  );
}

function overLimit(decision: Decision): HttpError {
  const denying = decision.limits.filter((l) => l.exceeded && !l.shadow);
  const spent = denying.some((l) => l.kind === 'BUDGET' && !l.held);
  const held = !spent && denying.some((l) => l.kind === 'BUDGET' && l.held);
  const wait = decision.retryAfterMs > 0 ? decision.retryAfterMs : 1_000;
  const headers = retryHeaders(wait);
  if (wait > LONGEST_USEFUL_RETRY_MS) headers['x-should-retry'] = 'false';
  // OpenAI's own types: a spent budget is `insufficient_quota`; a rate names what ran out. A budget that
  // requests in flight hold frees as they settle: a short wait, which the SDKs retry as a rate limit.
  if (spent)
    return new HttpError(429, decision.reason, {
      type: 'insufficient_quota',
      code: 'insufficient_quota',
      headers,
    });
  if (held) return new HttpError(429, decision.reason, { type: 'tokens', code: 'quota_reserved', headers });
  const type = denying[0]?.unit === 'TOKENS' ? 'tokens' : 'requests';
  return new HttpError(429, decision.reason, { type, code: 'rate_limit_exceeded', headers });
}

/** The HTTP answer to a refusal, naming the parameter at fault where there is one. */
export function refusal(decision: Decision, call: ModelCall, requestedOutput: number): HttpError {
  switch (decision.code) {
    case 'OVER_LIMIT':
      return overLimit(decision);
    case 'INVALID_KEY':
      return authenticationError('Incorrect API key provided.', 'invalid_api_key');
    case 'KEY_REVOKED':
      return permissionError(`This API key was revoked: ${decision.reason}.`, 'api_key_revoked');
    case 'KEY_EXPIRED':
      return permissionError(`This API key has expired: ${decision.reason}.`, 'api_key_expired');
    case 'MODEL_NOT_ALLOWED':
      return new HttpError(403, `Your tier may not use the model '${call.model}'.`, {
        type: 'permission_error',
        param: 'model',
        code: 'model_not_allowed',
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
      return new HttpError(500, 'The quota authority gave an answer the gateway does not know.', {
        type: 'server_error',
        code: null,
      });
  }
}

/** A second request with an Idempotency-Key already admitted: it would be a free model call. */
export function duplicateRequest(requestId: string): HttpError {
  return new HttpError(
    409,
    `A request with the id '${requestId}' was already admitted; it is charged once and not sent again. Use a new Idempotency-Key for a new request.`,
    { type: 'invalid_request_error', code: 'idempotency_key_reused', headers: { 'x-should-retry': 'false' } },
  );
}
