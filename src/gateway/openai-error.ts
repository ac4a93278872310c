/** The JSON body OpenAI answers every error with; clients (and the openai SDKs) parse exactly this shape. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
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

/** 400: the body breaks the API contract; `param` names the parameter at fault. */
export function invalidRequest(message: string, param: string | null, code: string | null = null): HttpError {
  return new HttpError(400, message, { type: 'invalid_request_error', param, code });
}

/** 413: the body is larger than the gateway reads. */
export function payloadTooLarge(limitBytes: number): HttpError {
  return new HttpError(413, `Request body too large: the limit is ${limitBytes} bytes.`, {
    type: 'invalid_request_error',
    code: 'request_too_large',
  });
}

/** 401: no credential, or one that is not a key (codes `missing_api_key`, `invalid_api_key`). */
export function authenticationError(message: string, code: string): HttpError {
  return new HttpError(401, message, { type: 'authentication_error', code });
}

/** 403: a real key that may not do this (codes `api_key_revoked`, `api_key_expired`, `model_not_allowed`). */
export function permissionError(message: string, code: string): HttpError {
  return new HttpError(403, message, { type: 'permission_error', code });
}

/** 404: no route at this method and path. */
export function notFound(message: string): HttpError {
  return new HttpError(404, message, { type: 'invalid_request_error', code: 'unknown_url' });
}
