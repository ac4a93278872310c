import type { Clock } from '../core/clock.js';

export interface KeyConfirmationsOptions {
  /** How long a key the authority confirmed is taken as known without asking again. */
  ttlMs: number;
  /** The most keys remembered; past it, the one confirmed longest ago is forgotten first. */
  maxKeys: number;
  clock: Clock;
}

/**
 * API keys (by their SHA-256) the authority recently answered for as usable, so that a request from a
 * known key reads its body at once, and one from a key never confirmed asks the authority first. This only
 * orders the work: CheckQuota still decides every request, so a key revoked within the TTL is refused
 * there, after its body was read and estimated.
 */
export class KeyConfirmations {
  readonly #o: KeyConfirmationsOptions;
  /** Key hash (hex) → when its confirmation lapses; in the order they were confirmed. */
  readonly #confirmed = new Map<string, number>();
  /** Confirmations being asked for now, shared by the requests of one key that arrive meanwhile. */
  readonly #asking = new Map<string, Promise<void>>();

  constructor(options: KeyConfirmationsOptions) {
    this.#o = options;
  }

  /** Whether the authority confirmed the key within the TTL. */
  isConfirmed(sha256: Buffer): boolean {
    const id = sha256.toString('hex');
    const until = this.#confirmed.get(id);
    if (until === undefined) return false;
    if (until > this.#o.clock.now()) return true;
    this.#confirmed.delete(id);
    return false;
  }

  /** The authority answered for the key as usable (a CheckQuota, ListModels or GetUsage naming it). */
  confirm(sha256: Buffer): void {
    const id = sha256.toString('hex');
    this.#confirmed.delete(id);
    this.#confirmed.set(id, this.#o.clock.now() + this.#o.ttlMs);
    for (const oldest of this.#confirmed.keys()) {
      if (this.#confirmed.size <= this.#o.maxKeys) break;
      this.#confirmed.delete(oldest);
    }
  }

  /** The authority refused the key (unknown, revoked, expired). */
  forget(sha256: Buffer): void {
    this.#confirmed.delete(sha256.toString('hex'));
  }

  /**
   * Runs `ask` for a key not confirmed, once at a time per key: requests of the same key that arrive while
   * it runs wait for the same answer (and its refusal), so a flood of one unknown key costs one call.
   */
  confirmOnce(sha256: Buffer, ask: () => Promise<void>): Promise<void> {
    const id = sha256.toString('hex');
    const pending = this.#asking.get(id);
    if (pending) return pending;
    const asking = ask().finally(() => this.#asking.delete(id));
    this.#asking.set(id, asking);
    return asking;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#confirmed.size;
  }
}
