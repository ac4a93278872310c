import * as grpc from '@grpc/grpc-js';

/** One item's answer in a batch reply: its response, or the status its own call would have failed with. */
export interface BatchResult<Res> {
  response?: Res | null;
  error?: { code: number; message: string } | null;
}

/** Sends one batch with a deadline; resolves with one result per item, in order. */
export type SendBatch<Req, Res> = (items: Req[], deadlineMs: number) => Promise<BatchResult<Res>[]>;
/** Sends one item on its own, for an authority that does not serve batches. */
export type SendOne<Req, Res> = (item: Req, deadlineMs: number) => Promise<Res>;

interface Pending<Req, Res> {
  item: Req;
  deadline: number;
  resolve(response: Res): void;
  reject(error: unknown): void;
}

/** A per-item failure as the error its own unary call would have raised, so callers handle both alike. */
export function itemError(code: number, message: string): grpc.ServiceError {
  const name = (grpc.status[code] as string | undefined) ?? 'UNKNOWN';
  return Object.assign(new Error(`${code} ${name}: ${message}`), {
    code,
    details: message,
    metadata: new grpc.Metadata(),
  });
}

export interface BatcherOptions<Req, Res> {
  sendBatch: SendBatch<Req, Res>;
  sendOne: SendOne<Req, Res>;
  /** The most items in one batch; more calls in one turn go out as several batches. */
  maxItems: number;
  /** Told once when the authority turns out not to serve batches, and calls go one by one from then on. */
  onUnimplemented?: () => void;
}

/**
 * Coalesces the calls made in one turn of the event loop into one batch call: many concurrent requests on
 * a gateway cost the authority one gRPC call and one Redis round trip instead of one each. A call alone in
 * its turn waits for nothing but the end of that turn.
 *
 * A batch carries the earliest deadline of its items, so no call waits past its own deadline. A failure
 * of the whole batch (the authority unreachable, the deadline passed) fails each of its calls with that
 * status; an item's own error fails that call alone, as its unary call would have.
 */
export class Batcher<Req, Res> {
  readonly #o: BatcherOptions<Req, Res>;
  #queue: Pending<Req, Res>[] = [];
  #scheduled = false;
  #batching = true;

  constructor(options: BatcherOptions<Req, Res>) {
    this.#o = options;
  }

  call(item: Req, deadlineMs: number): Promise<Res> {
    if (!this.#batching) return this.#o.sendOne(item, deadlineMs);
    return new Promise<Res>((resolve, reject) => {
      this.#queue.push({ item, deadline: Date.now() + deadlineMs, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    for (let start = 0; start < queue.length; start += this.#o.maxItems) {
      void this.#send(queue.slice(start, start + this.#o.maxItems));
    }
  }

  async #send(batch: Pending<Req, Res>[]): Promise<void> {
    let deadline = Infinity;
    for (const pending of batch) deadline = Math.min(deadline, pending.deadline);
    try {
      const results = await this.#o.sendBatch(
        batch.map((p) => p.item),
        Math.max(0, deadline - Date.now()),
      );
      batch.forEach((pending, i) => {
        const result = results[i];
        if (result?.response) pending.resolve(result.response);
        else if (result?.error) pending.reject(itemError(result.error.code, result.error.message));
        else pending.reject(itemError(grpc.status.INTERNAL, 'the batch reply has no result for this item'));
      });
    } catch (error) {
      if ((error as Partial<grpc.ServiceError>).code === grpc.status.UNIMPLEMENTED) {
        // An authority older than batching: go one by one from now on, starting with these.
        if (this.#batching) this.#o.onUnimplemented?.();
        this.#batching = false;
        for (const pending of batch) {
          this.#o
            .sendOne(pending.item, Math.max(0, pending.deadline - Date.now()))
            .then(pending.resolve, pending.reject);
        }
        return;
      }
      for (const pending of batch) pending.reject(error);
    }
  }
}
