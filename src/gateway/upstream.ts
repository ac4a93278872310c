import OpenAI from 'openai';
import { createHttpFetch } from './http-fetch.js';
import type { ModelRoute } from './requests.js';
import { gatewayError, passedOnFromUpstream, type HttpError } from './errors.js';
import { secretScrubber } from '../telemetry/logger.js';

export interface UpstreamOptions {
  baseUrl: string;
  /** Unset for upstreams that need none (a local vLLM or Ollama). */
  apiKey: string | undefined;
  timeoutMs: number;
}

/** The model API, reached through the official SDK; each call returns the raw response to relay as is. */
export interface Upstream {
  send(route: ModelRoute, body: Record<string, unknown>, signal: AbortSignal): Promise<Response>;
  /** Closes the pooled connections to the model API. */
  close(): void;
}

export function connectUpstream(options: UpstreamOptions): Upstream {
  const transport = createHttpFetch();
  const scrub = secretScrubber([options.apiKey]);
  /** An upstream may echo the key it was sent in its error message; no client or log line gets it. */
  const withoutSecrets = (error: unknown): never => {
    if (error instanceof OpenAI.APIError) {
      error.message = scrub(error.message);
      const body = error.error as { message?: unknown } | undefined;
      if (body && typeof body.message === 'string') body.message = scrub(body.message);
    }
    throw error;
  };
  const client = new OpenAI({
    baseURL: options.baseUrl,
    // The SDK insists on a key. Without one, the placeholder never leaves: the header is removed below.
    apiKey: options.apiKey ?? 'unset',
    ...(options.apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    // The caller's SDK retries with our rate-limit headers; retrying here too would multiply the wait.
    maxRetries: 0,
    timeout: options.timeoutMs,
    fetch: transport.fetch,
  });
  return {
    send(route, body, signal) {
      // The bodies were validated against OpenAI's rules already; the SDK's types cannot see that.
      const params = body as never;
      switch (route) {
        case 'chat':
          return client.chat.completions.create(params, { signal }).asResponse().catch(withoutSecrets);
        case 'completions':
          return client.completions.create(params, { signal }).asResponse().catch(withoutSecrets);
        case 'embeddings':
          return client.embeddings.create(params, { signal }).asResponse().catch(withoutSecrets);
      }
    },
    close: () => transport.close(),
  };
}

/**
 * What the client hears when the upstream fails. A 4xx about the request (context too long, a bad
 * parameter) is the client's to fix and is passed on with the upstream's message; the upstream refusing
 * the gateway's own credentials or rate, a 5xx, or no answer at all is 502 (504 for a timeout).
 */
export function upstreamFailure(error: unknown): HttpError {
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return gatewayError('upstream_timeout');
  }
  if (error instanceof OpenAI.APIError && error.status !== undefined) {
    const passOn = error.status >= 400 && error.status < 500 && ![401, 403, 429].includes(error.status);
    if (passOn) {
      const upstream = (error.error ?? {}) as {
        message?: unknown;
        type?: unknown;
        param?: unknown;
        code?: unknown;
      };
      const text = (value: unknown) => (typeof value === 'string' ? value : null);
      return passedOnFromUpstream(error.status, text(upstream.message) ?? error.message, {
        type: text(upstream.type) ?? 'invalid_request_error',
        param: text(upstream.param),
        code: text(upstream.code),
      });
    }
    return gatewayError(
      'upstream_error',
      `The model API failed (HTTP ${error.status}); the request was not charged.`,
    );
  }
  return gatewayError('upstream_unreachable');
}
