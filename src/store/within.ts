import { StoreUnavailableError } from '../core/errors.js';

/**
 * Waits for a store's answer at most `waitMs`: past it, rejects with StoreUnavailableError so the caller
 * decides by its failure policy within its own deadline. The store command itself is not stopped (a
 * command already sent may still run); callers that care watch `answer` for its late outcome.
 */
export function within<T>(answer: Promise<T>, waitMs: number, what: string): Promise<T> {
  if (!(waitMs > 0)) {
    return Promise.reject(new StoreUnavailableError(`${what}: no time left of the call's deadline`));
  }
  if (waitMs === Infinity) return answer;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new StoreUnavailableError(`${what}: no answer within ${Math.ceil(waitMs)} ms`, { silent: true }),
        ),
      waitMs,
    );
    answer.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
