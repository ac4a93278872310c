/** The demo upstream's errors, in OpenAI's shape, and the messages of its parameter checks. */

/** An answer in OpenAI's error shape; thrown where a request fails, sent by the request handler. */
export class UpstreamError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;

  constructor(
    status: number,
    message: string,
    details: { type?: string; param?: string; code?: string | null } = {},
  ) {
    super(message);
    this.status = status;
    this.type = details.type ?? defaultType(status);
    this.param = details.param ?? null;
    this.code = details.code !== undefined ? details.code : status === 429 ? 'rate_limit_exceeded' : null;
  }
}

function defaultType(status: number): string {
  if (status === 429) return 'requests';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

export function defaultMessage(status: number): string {
  if (status === 429) return 'Rate limit reached (scripted by the quotad demo upstream).';
  if (status >= 500)
    return 'The server had an error while processing your request (scripted by the quotad demo upstream).';
  return `Request failed with status ${status} (scripted by the quotad demo upstream).`;
}

export function describeFailure(err: unknown): string {
  return `The demo upstream failed: ${err instanceof Error ? err.message : String(err)}`;
}

export function missingParameter(param: string): UpstreamError {
  return new UpstreamError(400, `Missing required parameter: '${param}'.`, {
    param,
    code: 'missing_required_parameter',
  });
}

export function emptyArray(param: string): UpstreamError {
  return new UpstreamError(
    400,
    `Invalid '${param}': empty array. Expected an array with minimum length 1, but got an empty array instead.`,
    { param, code: 'empty_array' },
  );
}

export function invalidType(param: string, expected: string, value: unknown): UpstreamError {
  return new UpstreamError(
    400,
    `Invalid type for '${param}': expected ${expected}, but got ${describeType(value)} instead.`,
    { param, code: 'invalid_type' },
  );
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a decimal';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
