import { setTimeout as delay } from 'node:timers/promises';

/**
 * Polls `probe` every `intervalMs` until it returns a value (not undefined) and resolves with it; after
 * `timeoutMs` rejects with `timedOut()`'s message. For state only another process holds (a server's
 * metrics, Prometheus's API), where there is no event to wait for.
 */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timedOut: () => string,
  { timeoutMs = 10_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(timedOut());
    await delay(intervalMs);
  }
}
