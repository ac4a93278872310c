/** What the demo upstream promises its callers: its constants, the calls it reports and the scripts it takes. */
import { type IncomingHttpHeaders } from 'node:http';

/** Opens every generated text, so nobody mistakes the demo's output for a model's. */
export const DEMO_TEXT_PREFIX = '[quotad demo upstream, not a model] ';

/** The `system_fingerprint` of every demo answer. */
export const DEMO_SYSTEM_FINGERPRINT = 'quotad-demo';

/** The models `GET /v1/models` lists unless told otherwise. */
export const DEFAULT_DEMO_MODELS: readonly string[] = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-4.1',
  'gpt-4.1-mini',
  'gpt-4.1-nano',
  'o3-mini',
  'text-embedding-3-small',
];

/** Output tokens per choice when a request sets neither `max_tokens` nor `max_completion_tokens`. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 64;

/** Larger request bodies are refused with 413. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Embedding length when the request does not ask for `dimensions`. */
export const DEFAULT_EMBEDDING_DIMENSIONS = 16;

export const MAX_EMBEDDING_DIMENSIONS = 4096;
export const MAX_CHOICES = 128;
/** How many words of the prompt a reply echoes. */
export const ECHO_WORDS = 16;
/** A fixed date, so `GET /v1/models` answers the same on every run. */
export const MODELS_CREATED = 1_700_000_000;

export type UpstreamRoute = 'chat' | 'completions' | 'embeddings';

/** One accepted request (valid JSON with a model and its input), as scripts and observers see it. */
export interface UpstreamCall {
  /** The response id: `chatcmpl-…`, `cmpl-…`; embeddings answers carry none, theirs is `emb-…`. */
  id: string;
  route: UpstreamRoute;
  model: string;
  stream: boolean;
  /** `stream_options.include_usage`: the stream ends with a usage chunk. */
  includeUsage: boolean;
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
}

/** How to answer one call, for tests and benchmarks; without a script the call gets the normal answer. */
export type UpstreamScript =
  /** Answer with this HTTP status and an OpenAI-shaped error body, before any output. */
  | { kind: 'error'; status: number; message?: string; type?: string; code?: string | null }
  /**
   * Streaming: send the role chunk and `afterChunks` content chunks, then nothing more, holding the
   * connection open until the client goes away. A call that does not stream gets no answer at all.
   */
  | { kind: 'stall'; afterChunks: number }
  /** Streaming: send the role chunk and `afterChunks` content chunks, then drop the connection. */
  | { kind: 'cut'; afterChunks: number }
  /** Streaming: send the role chunk and `afterChunks` content chunks, then the rest once `until` settles. */
  | { kind: 'pause'; afterChunks: number; until: Promise<unknown> }
  /** Answer normally after `ms` milliseconds. */
  | { kind: 'latency'; ms: number }
  /** Answer normally once `until` settles (a test holds every call in flight at once). */
  | { kind: 'hold'; until: Promise<unknown> };

/** Token counts as the upstream reports them. */
export interface UpstreamUsage {
  prompt_tokens: number;
  /** Always 0 for embeddings, whose usage has no such field on the wire. */
  completion_tokens: number;
  total_tokens: number;
}

/** What a call sent before its client went away. */
export interface StreamedSoFar {
  /** Content chunks written (role, finish and usage chunks do not count). */
  chunks: number;
  /** Their text, concatenated. */
  text: string;
}

export interface UpstreamObserver {
  onCall?(call: UpstreamCall): void;
  /** Called exactly when a usage object goes to the client: in a whole body or as the usage chunk. */
  onUsage?(call: UpstreamCall, usage: UpstreamUsage): void;
  /** The client closed the connection before the response completed (not called while closing). */
  onClientGone?(call: UpstreamCall, streamed: StreamedSoFar): void;
}

export interface DemoUpstreamOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (the default) binds a free port; the bound one is returned. */
  port?: number;
  /** What `GET /v1/models` lists. Requests may name any model: the demo answers for all. */
  models?: readonly string[];
  /** When set, requests must carry `Authorization: Bearer <apiKey>`; otherwise any key or none passes. */
  apiKey?: string;
  script?: (call: UpstreamCall) => UpstreamScript | undefined;
  observer?: UpstreamObserver;
}

export interface DemoUpstream {
  /** The base URL an OpenAI SDK takes, ending in `/v1`. */
  url: string;
  port: number;
  /** Stops listening and drops open connections, stalled streams included. */
  close(): Promise<void>;
}
