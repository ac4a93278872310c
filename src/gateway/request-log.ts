import { createWriteStream, statSync, type WriteStream } from 'node:fs';

export type RequestLogFormat = 'jsonl' | 'csv';

export const REQUEST_LOG_FORMATS: readonly RequestLogFormat[] = ['jsonl', 'csv'];

/** One request as the request log records it: who, what, how it ended, what it cost. Nothing secret. */
export interface RequestLogEntry {
  /** When the answer ended, in milliseconds since the epoch. */
  timeMs: number;
  requestId: string;
  /** The API key's id, or a JWT caller's subject; empty when the caller was never identified. */
  keyId: string;
  /** The socket address, or X-Forwarded-For from a trusted proxy. */
  client: string;
  /** The policy's name for the model; empty when the request named none or never reached the decision. */
  model: string;
  status: number;
  inputTokens: number | undefined;
  outputTokens: number | undefined;
  /** What the authority charged for the request, in micro-dollars; undefined when nothing was settled. */
  usdMicros: number | undefined;
  latencyMs: number;
}

/** The CSV columns, in order; the file's first line when it starts empty. */
export const CSV_COLUMNS = [
  'time',
  'request_id',
  'key_id',
  'client',
  'model',
  'status',
  'input_tokens',
  'output_tokens',
  'cost_usd',
  'latency_ms',
] as const;

/** Micro-dollars as a decimal string of dollars, exact (money is never a float here). */
export function usdText(micros: number): string {
  const whole = Math.floor(micros / 1_000_000);
  return `${whole}.${String(micros - whole * 1_000_000).padStart(6, '0')}`;
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** One entry as a line of the file, newline included. */
export function formatRequestLogLine(entry: RequestLogEntry, format: RequestLogFormat): string {
  const cost = entry.usdMicros === undefined ? undefined : usdText(entry.usdMicros);
  if (format === 'jsonl') {
    return `${JSON.stringify({
      time: new Date(entry.timeMs).toISOString(),
      requestId: entry.requestId,
      keyId: entry.keyId || null,
      client: entry.client,
      model: entry.model || null,
      status: entry.status,
      inputTokens: entry.inputTokens ?? null,
      outputTokens: entry.outputTokens ?? null,
      costUsd: cost ?? null,
      latencyMs: entry.latencyMs,
    })}\n`;
  }
  const fields = [
    new Date(entry.timeMs).toISOString(),
    entry.requestId,
    entry.keyId,
    entry.client,
    entry.model,
    String(entry.status),
    entry.inputTokens === undefined ? '' : String(entry.inputTokens),
    entry.outputTokens === undefined ? '' : String(entry.outputTokens),
    cost ?? '',
    String(entry.latencyMs),
  ];
  return `${fields.map(csvField).join(',')}\n`;
}

export interface RequestLogOptions {
  path: string;
  format: RequestLogFormat;
  /** Applied to every line before it is written (the process's secrets and credential shapes). */
  scrub: (line: string) => string;
  /** Told when the file cannot be opened or written; the gateway keeps serving. */
  onError: (error: Error) => void;
}

/**
 * The gateway's per-request lines appended to a file, one JSON object or CSV row per request. `reopen()`
 * (SIGHUP) opens the path again, so logrotate can rename the file and signal; lines written before go to
 * the renamed file, later ones to the new one.
 */
export class RequestLog {
  readonly #o: RequestLogOptions;
  #stream: WriteStream;
  /** Entries still waiting for their request's settlement (its cost), so close() writes them too. */
  readonly #pending = new Set<Promise<void>>();

  constructor(options: RequestLogOptions) {
    this.#o = options;
    this.#stream = this.#open();
  }

  #open(): WriteStream {
    let empty = true;
    try {
      empty = statSync(this.#o.path).size === 0;
    } catch {
      // Not there yet: created below.
    }
    const stream = createWriteStream(this.#o.path, { flags: 'a', mode: 0o640 });
    stream.on('error', (error) => this.#o.onError(error));
    if (empty && this.#o.format === 'csv') stream.write(`${CSV_COLUMNS.join(',')}\n`);
    return stream;
  }

  /** Appends the entry once it is known (a request's cost is known when its settlement is answered). */
  record(entry: RequestLogEntry | Promise<RequestLogEntry>): void {
    const written = Promise.resolve(entry)
      .then((known) => {
        this.#stream.write(this.#o.scrub(formatRequestLogLine(known, this.#o.format)));
      })
      .catch((error: unknown) => this.#o.onError(error as Error))
      .finally(() => this.#pending.delete(written));
    this.#pending.add(written);
  }

  /** Opens the path again (after logrotate renamed it); the old file gets what was already written. */
  reopen(): void {
    const old = this.#stream;
    this.#stream = this.#open();
    old.end();
  }

  /** Writes the entries still pending, then closes the file. */
  async close(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    const stream = this.#stream;
    await new Promise<void>((resolve) => stream.end(resolve));
  }
}
