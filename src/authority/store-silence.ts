import { StoreUnavailableError } from '../core/errors.js';

/**
 * Notices a store that answers nothing at all (a hung host, a stopped process), as opposed to one that is
 * slow or refuses connections: once a command has gone unanswered for `suspectAfterMs` with no other
 * answer since, the store is suspect, and calls wait for it only `suspectWaitMs` before their failure
 * policies decide, instead of each waiting out its whole budget. Commands are still sent, so the first
 * answer after the store recovers ends the suspicion.
 */
export class StoreSilence {
  readonly #suspectAfterMs: number;
  readonly #suspectWaitMs: number;
  readonly #onChange: (suspect: boolean) => void;
  /** When the oldest command sent since the last answer was sent (performance.now()); none when answered. */
  #unansweredSince: number | undefined;
  #told = false;

  constructor(options: {
    suspectAfterMs: number;
    suspectWaitMs: number;
    /** Told when the store turns suspect, and when it answers again. */
    onChange?: (suspect: boolean) => void;
  }) {
    this.#suspectAfterMs = options.suspectAfterMs;
    this.#suspectWaitMs = options.suspectWaitMs;
    this.#onChange = options.onChange ?? (() => undefined);
  }

  /** Follows a command's answer. Any answer, a failure reply or a refused connection included, is a sign of life. */
  watch<T>(answer: Promise<T>): Promise<T> {
    this.#unansweredSince ??= performance.now();
    answer.then(
      () => this.#answered(),
      (error: unknown) => {
        if (!(error instanceof StoreUnavailableError && error.silent)) this.#answered();
      },
    );
    return answer;
  }

  #answered(): void {
    this.#unansweredSince = undefined;
    if (this.#told) {
      this.#told = false;
      this.#onChange(false);
    }
  }

  /** Whether the store has been silent for longer than it may be. */
  suspect(now = performance.now()): boolean {
    return this.#unansweredSince !== undefined && now - this.#unansweredSince >= this.#suspectAfterMs;
  }

  /** How long to wait for a command sent now: `waitMs`, or less while the store is suspect. */
  waitMs(waitMs: number): number {
    if (!this.suspect()) return waitMs;
    if (!this.#told) {
      this.#told = true;
      this.#onChange(true);
    }
    return Math.min(waitMs, this.#suspectWaitMs);
  }
}
