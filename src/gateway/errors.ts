/**
 * Every error the gateway answers, from one catalogue: its OpenAI `code`, HTTP status and OpenAI `type`,
 * and the message where it is always the same. The README's table of answers lists the same codes under
 * the same statuses (test/unit/gateway-errors.test.ts keeps the two in step).
 */

/** The JSON body OpenAI answers every error with; clients (and the openai SDKs) parse exactly this shape. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

interface CatalogueEntry {
  status: number;
  type: string;
  /** The `code` on the wire when it is not the entry's name (null: OpenAI sends none). */
  code?: null;
  message?: string;
}

/** The catalogue, by OpenAI code (the wire `code`, unless the entry says null). */
export const GATEWAY_ERRORS = {
  // 400: the body breaks the API contract; `param` names the parameter at fault.
  invalid_request: { status: 400, type: 'invalid_request_error', code: null },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_type: { status: 400, type: 'invalid_request_error' },
  invalid_value: { status: 400, type: 'invalid_request_error' },
  missing_required_parameter: { status: 400, type: 'invalid_request_error' },
  empty_array: { status: 400, type: 'invalid_request_error' },
  empty_string: { status: 400, type: 'invalid_request_error' },
  integer_below_min_value: { status: 400, type: 'invalid_request_error' },
  integer_above_max_value: { status: 400, type: 'invalid_request_error' },
  nesting_too_deep: { status: 400, type: 'invalid_request_error' },
  invalid_request_id: { status: 400, type: 'invalid_request_error' },
  model_not_found: { status: 400, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  invalid_http: {
    status: 400,
    type: 'invalid_request_error',
    message: 'The request is not valid HTTP/1.1.',
  },
  // 401: no credential, or one that is not a key or a valid token.
  missing_api_key: { status: 401, type: 'authentication_error' },
  invalid_api_key: { status: 401, type: 'authentication_error', message: 'Incorrect API key provided.' },
  invalid_authorization_header: { status: 401, type: 'authentication_error' },
  invalid_token: { status: 401, type: 'authentication_error' },
  token_expired: { status: 401, type: 'authentication_error' },
  // 401 for a key with signed requests: the signature is missing, wrong, stale or used before.
  signature_required: { status: 401, type: 'authentication_error' },
  invalid_signature: { status: 401, type: 'authentication_error' },
  signature_expired: { status: 401, type: 'authentication_error' },
  replayed_request: { status: 401, type: 'authentication_error' },
  // 403: a real key that may not do this.
  api_key_revoked: { status: 403, type: 'permission_error' },
  api_key_expired: { status: 403, type: 'permission_error' },
  model_not_allowed: { status: 403, type: 'permission_error' },
  unknown_tier: { status: 403, type: 'permission_error' },
  unknown_url: { status: 404, type: 'invalid_request_error' },
  request_timeout: {
    status: 408,
    type: 'invalid_request_error',
    message: 'The request did not arrive in time; send it again.',
  },
  idempotency_key_reused: { status: 409, type: 'invalid_request_error' },
  request_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: {
    status: 415,
    type: 'invalid_request_error',
    message: 'Send the request body as JSON, with Content-Type: application/json.',
  },
  headers_too_large: {
    status: 431,
    type: 'invalid_request_error',
    message: 'The request headers are too large.',
  },
  // 429: `type` says what ran out: `requests` or `tokens` for a rate, `insufficient_quota` for a budget.
  rate_limit_exceeded: { status: 429, type: 'requests' },
  insufficient_quota: { status: 429, type: 'insufficient_quota' },
  quota_reserved: { status: 429, type: 'tokens' },
  internal_error: {
    status: 500,
    type: 'server_error',
    code: null,
    message: 'The gateway failed; the request was not charged.',
  },
  unknown_decision: {
    status: 500,
    type: 'server_error',
    code: null,
    message: 'The quota authority gave an answer the gateway does not know.',
  },
  upstream_error: { status: 502, type: 'server_error' },
  upstream_unreachable: {
    status: 502,
    type: 'server_error',
    message: 'The model API could not be reached; the request was not charged.',
  },
  quota_unavailable: {
    status: 503,
    type: 'server_error',
    message:
      'Quota checks are unavailable right now, so the request was not sent to the model. Retry shortly.',
  },
  server_overloaded: {
    status: 503,
    type: 'server_error',
    message:
      'The gateway is overloaded: too many requests are waiting for a quota decision, so this one was not sent to the model. Retry shortly.',
  },
  upstream_timeout: { status: 504, type: 'server_error', message: 'The model did not answer in time.' },
} as const satisfies Record<string, CatalogueEntry>;

export type GatewayErrorName = keyof typeof GATEWAY_ERRORS;

/** The catalogue's names whose status is S. */
export type GatewayErrorWithStatus<S extends number> = {
  [K in GatewayErrorName]: (typeof GATEWAY_ERRORS)[K]['status'] extends S ? K : never;
}[GatewayErrorName];

/** The code an entry sends on the wire: its name, or null. */
export function wireCode(name: GatewayErrorName): string | null {
  const entry: CatalogueEntry = GATEWAY_ERRORS[name];
  return entry.code === null ? null : name;
}

/** Builds an OpenAI-shaped error body. */
export function errorBody(
  message: string,
  type: string,
  param: string | null,
  code: string | null,
): OpenAiErrorBody {
  return { error: { message, type, param, code } };
}

/** The body of a catalogue error, for answers written outside a route (a raw socket, an SSE stream). */
export function catalogueBody(name: GatewayErrorName, message?: string): OpenAiErrorBody {
  const entry: CatalogueEntry = GATEWAY_ERRORS[name];
  return errorBody(message ?? entry.message ?? name, entry.type, null, wireCode(name));
}

/** What an HttpError carries besides its status and message. */
export interface HttpErrorDetails {
  /** OpenAI's error type, e.g. `invalid_request_error`. */
  type: string;
  /** The request parameter at fault, as OpenAI names it (`messages[2].role`); null when none. */
  param?: string | null;
  /** OpenAI's machine-readable code, e.g. `invalid_api_key`; null when none. */
  code?: string | null;
  /** Extra response headers, e.g. `retry-after`. */
  headers?: Record<string, string>;
}

/** A gateway answer that is not a success: thrown anywhere in a route, written as an OpenAI error body. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers?: Record<string, string>;

  constructor(status: number, message: string, details: HttpErrorDetails) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.type = details.type;
    this.param = details.param ?? null;
    this.code = details.code ?? null;
    if (details.headers) this.headers = details.headers;
  }

  /** The body to send. */
  body(): OpenAiErrorBody {
    return errorBody(this.message, this.type, this.param, this.code);
  }
}

export interface GatewayErrorOptions {
  param?: string | null;
  headers?: Record<string, string>;
  /** Only for rate_limit_exceeded, whose type names what ran out (`requests` or `tokens`). */
  type?: 'requests' | 'tokens';
}

/** The catalogue's error `name`, with `message` (else the catalogue's own). */
export function gatewayError(
  name: GatewayErrorName,
  message?: string,
  options: GatewayErrorOptions = {},
): HttpError {
  const entry: CatalogueEntry = GATEWAY_ERRORS[name];
  return new HttpError(entry.status, message ?? entry.message ?? name, {
    type: options.type ?? entry.type,
    param: options.param ?? null,
    code: wireCode(name),
    ...(options.headers ? { headers: options.headers } : {}),
  });
}

/**
 * A 4xx of the upstream about the request itself (context too long, a bad parameter), passed on with its
 * own status, type and code: the one answer not from the catalogue, as the README says.
 */
export function passedOnFromUpstream(status: number, message: string, details: HttpErrorDetails): HttpError {
  return new HttpError(status, message, details);
}

/** 400: the body breaks the API contract; `param` names the parameter at fault. */
export function invalidRequest(
  message: string,
  param: string | null,
  name: GatewayErrorWithStatus<400> = 'invalid_request',
): HttpError {
  return gatewayError(name, message, { param });
}

/** 413: the body is larger than the gateway reads. */
export function payloadTooLarge(limitBytes: number): HttpError {
  return gatewayError('request_too_large', `Request body too large: the limit is ${limitBytes} bytes.`);
}

/** 401: no credential, or one that is not a key (codes `missing_api_key`, `invalid_api_key`). */
export function authenticationError(message: string, name: GatewayErrorWithStatus<401>): HttpError {
  return gatewayError(name, message);
}

/** 403: a real key that may not do this (codes `api_key_revoked`, `api_key_expired`, `model_not_allowed`). */
export function permissionError(message: string, name: GatewayErrorWithStatus<403>): HttpError {
  return gatewayError(name, message);
}

/** 404: no route at this method and path. */
export function notFound(message: string): HttpError {
  return gatewayError('unknown_url', message);
}
