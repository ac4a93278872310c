import { requireOrg, requireText } from '../api/identity.js';
import { MAX_ID_LENGTH, MAX_NAME_LENGTH } from '../api/limits.js';
import { InvalidArgumentError } from '../core/errors.js';
import { MAX_TOKENS, type Principal, type SettleOutcome } from '../core/quota.js';
import type { CheckQuotaRequest__Output } from '../gen/quotad/v1/CheckQuotaRequest.js';
import { isKeySubject, KEY_ID_PREFIX } from '../keys/api-key.js';
import type { RecordUsageRequest__Output } from '../gen/quotad/v1/RecordUsageRequest.js';
import type { CheckQuotaInput, Credential, RecordUsageInput } from './quota-authority.js';
import type { SignatureInput } from '../keys/signing.js';

/**
 * Token counts are uint64 on the wire, so what a caller sent arrives whole: a count above MAX_TOKENS, such
 * as a negative number's 2^64 − n or a 2^32 + n that a uint32 would have wrapped to n, is refused here.
 */
function requireTokens(field: string, value: number): number {
  if (value > MAX_TOKENS) throw new InvalidArgumentError(field, `must be at most ${MAX_TOKENS}`);
  return value;
}

type WithCredential = Pick<CheckQuotaRequest__Output, 'credential' | 'principal' | 'apiKeySha256'>;

function requireCredential(request: WithCredential): Credential {
  if (request.credential === 'apiKeySha256' && request.apiKeySha256) {
    if (request.apiKeySha256.length !== 32) {
      throw new InvalidArgumentError('api_key_sha256', 'must be the 32-byte SHA-256 of the API key');
    }
    return { apiKeySha256: request.apiKeySha256 };
  }
  if (request.credential !== 'principal' || !request.principal) {
    throw new InvalidArgumentError('credential', 'a principal or an api_key_sha256 is required');
  }
  const { subject, org, tier } = request.principal;
  requireText('principal.subject', subject, MAX_ID_LENGTH);
  if (isKeySubject(subject)) {
    // Else a principal could spend an API key's counters and claim its request ids.
    throw new InvalidArgumentError(
      'principal.subject',
      `must not start with '${KEY_ID_PREFIX}', which names API keys (send api_key_sha256 for a key)`,
    );
  }
  requireOrg('principal.org', org);
  requireText('principal.tier', tier, MAX_NAME_LENGTH);
  const principal: Principal = { subject, org, tier };
  return { principal };
}

function requireNoOutput(request: CheckQuotaRequest__Output): boolean {
  if (request.noOutput && request.maxOutputTokens > 0) {
    throw new InvalidArgumentError('max_output_tokens', 'must be 0 when no_output is set');
  }
  return request.noOutput;
}

/** A signature's fields, bounded; whether they are well formed and match is the verification's to say. */
function optionalSignature(request: CheckQuotaRequest__Output): { signature?: SignatureInput } {
  const sent = request.signature;
  if (!sent) return {};
  const bounded = (field: string, value: string, max: number) => {
    if (value.length > max)
      throw new InvalidArgumentError(`signature.${field}`, `must be at most ${max} characters`);
    return value;
  };
  if (sent.bodySha256.length !== 32) {
    throw new InvalidArgumentError(
      'signature.body_sha256',
      'must be the 32-byte SHA-256 of the request body',
    );
  }
  return {
    signature: {
      timestamp: bounded('timestamp', sent.timestamp, 32),
      nonce: bounded('nonce', sent.nonce, 128),
      signature: bounded('signature', sent.signature, 128),
      method: bounded('method', sent.method, 16),
      path: bounded('path', sent.path, 2048),
      bodySha256: Buffer.from(sent.bodySha256),
    },
  };
}

export function toCheckInput(request: CheckQuotaRequest__Output): CheckQuotaInput {
  return {
    ...optionalSignature(request),
    requestId: requireText('request_id', request.requestId, MAX_ID_LENGTH),
    ...requireCredential(request),
    model: requireText('model', request.model, MAX_ID_LENGTH),
    inputTokens: requireTokens('input_tokens', request.inputTokens),
    maxOutputTokens: requireTokens('max_output_tokens', request.maxOutputTokens),
    noOutput: requireNoOutput(request),
    dryRun: request.dryRun,
  };
}

const OUTCOMES: Record<string, SettleOutcome> = {
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
};

export function toRecordInput(request: RecordUsageRequest__Output): RecordUsageInput {
  const outcome = OUTCOMES[request.outcome];
  if (!outcome) throw new InvalidArgumentError('outcome', 'must be COMPLETED, FAILED or CANCELLED');
  return {
    requestId: requireText('request_id', request.requestId, MAX_ID_LENGTH),
    ...requireCredential(request),
    model: requireText('model', request.model, MAX_ID_LENGTH),
    inputTokens: requireTokens('input_tokens', request.inputTokens),
    outputTokens: requireTokens('output_tokens', request.outputTokens),
    outcome,
  };
}

/** The credential of a GetUsage or ListModels request. */
export function toUsageCredential(request: WithCredential): Credential {
  return requireCredential(request);
}
