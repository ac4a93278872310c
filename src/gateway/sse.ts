/** One server-sent event as received: its exact text (for passing on unchanged) and its data. */
export interface SseEvent {
  raw: string;
  /** The `data:` lines joined by newlines; undefined for an event without data (a comment, say). */
  data: string | undefined;
}

const EVENT_END = /\r\n\r\n|\n\n|\r\r/;

/**
 * Splits a byte stream of server-sent events into whole events, whatever the chunking: an event may
 * arrive in pieces, or many in one chunk. Each event keeps its exact text so it can be relayed as is.
 */
export class SseSplitter {
  readonly #decoder = new TextDecoder();
  #buffer = '';

  /** The events completed by this chunk. */
  push(chunk: Uint8Array): SseEvent[] {
    this.#buffer += this.#decoder.decode(chunk, { stream: true });
    const events: SseEvent[] = [];
    for (let match = EVENT_END.exec(this.#buffer); match; match = EVENT_END.exec(this.#buffer)) {
      const end = match.index + match[0].length;
      events.push(parseEvent(this.#buffer.slice(0, end)));
      this.#buffer = this.#buffer.slice(end);
    }
    return events;
  }

  /** What is left when the stream ends: an unterminated last event, if any. */
  end(): SseEvent | undefined {
    const rest = this.#buffer + this.#decoder.decode();
    this.#buffer = '';
    return rest.trim() === '' ? undefined : parseEvent(rest);
  }
}

function parseEvent(raw: string): SseEvent {
  const data: string[] = [];
  for (const line of raw.split(/\r\n|\n|\r/)) {
    if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
  }
  return { raw, data: data.length > 0 ? data.join('\n') : undefined };
}
