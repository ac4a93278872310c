/** Input that breaks the API contract. The authority answers it with INVALID_ARGUMENT naming `field`. */
export class InvalidArgumentError extends Error {
  readonly field: string;
  readonly reason: string;

  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'InvalidArgumentError';
    this.field = field;
    this.reason = reason;
  }
}

/** The shared store did not answer in time or failed; the decision falls to each limit's on_store_failure. */
export class StoreUnavailableError extends Error {
  /** The command certainly never reached the store (no connection to send it on), so it changed nothing. */
  readonly unsent: boolean;
  /** The store said nothing at all in time (as opposed to a refused connection or a failover reply). */
  readonly silent: boolean;

  constructor(message: string, options?: { cause?: unknown; unsent?: boolean; silent?: boolean }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
    this.unsent = options?.unsent ?? false;
    this.silent = options?.silent ?? false;
  }
}

/**
 * A call came with too little of its deadline left to be decided in it (the authority is behind), so it
 * is refused unanswered rather than decided too late to matter. The authority answers RESOURCE_EXHAUSTED.
 */
export class OverloadedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OverloadedError';
  }
}

/** The thing named does not exist (an API key id, say). The authority answers NOT_FOUND. */
export class NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** A write lost too many races in a row to compare-and-set; the caller may retry. The authority answers ABORTED. */
export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

/** The caller's credential is not known (an API key never issued, or forgotten). The authority answers UNAUTHENTICATED. */
export class UnauthenticatedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnauthenticatedError';
  }
}

/**
 * The credential is known but may not be used (a revoked or expired key). The authority answers
 * PERMISSION_DENIED, with `refusal` (KEY_REVOKED or KEY_EXPIRED) in the `quotad-refusal` trailer.
 */
export class PermissionDeniedError extends Error {
  readonly refusal: 'KEY_REVOKED' | 'KEY_EXPIRED';

  constructor(refusal: 'KEY_REVOKED' | 'KEY_EXPIRED', message: string) {
    super(message);
    this.name = 'PermissionDeniedError';
    this.refusal = refusal;
  }
}

/**
 * The authority will take on no more state: the in-process store holds its maximum number of entries. The
 * request would have needed new ones (a new principal, a new reservation); nothing changed. The authority
 * answers RESOURCE_EXHAUSTED; room comes back as entries expire.
 */
export class StoreFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreFullError';
  }
}
