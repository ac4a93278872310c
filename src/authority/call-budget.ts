/** Kept back from a call's deadline to send the answer: a tenth of what remains, within these bounds. */
const ANSWER_MARGIN_MIN_MS = 5;
const ANSWER_MARGIN_MAX_MS = 100;

/**
 * The time one call may spend waiting for the store: what remains of the caller's deadline (gRPC's, in
 * Unix ms on this host's clock) less a margin to answer in, and never more than `maxWaitMs` per command
 * (`--redis-timeout`, which is also all a call without a deadline gets).
 */
export class CallBudget {
  /** When the answer must be on its way (Unix ms); Infinity for a call without a deadline. */
  readonly answerByMs: number;
  readonly #maxWaitMs: number;

  constructor(deadlineMs: number, maxWaitMs: number, nowMs = Date.now()) {
    const remaining = deadlineMs - nowMs;
    const margin = Math.min(ANSWER_MARGIN_MAX_MS, Math.max(ANSWER_MARGIN_MIN_MS, remaining / 10));
    this.answerByMs = Number.isFinite(deadlineMs) ? deadlineMs - margin : Infinity;
    this.#maxWaitMs = maxWaitMs;
  }

  /** No time is left to ask the store anything. */
  spent(nowMs = Date.now()): boolean {
    return this.answerByMs <= nowMs;
  }

  /** How long a store command sent now may be waited for: `share` of what remains, capped per command. */
  storeWaitMs(share = 1, nowMs = Date.now()): number {
    return Math.min(this.#maxWaitMs, Math.max(0, (this.answerByMs - nowMs) * share));
  }
}
