import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { MAX_TOKENS } from '../core/quota.js';
import type { CheckQuotaRequest } from '../gen/quotad/v1/CheckQuotaRequest.js';
import type { CheckQuotaResponse__Output } from '../gen/quotad/v1/CheckQuotaResponse.js';
import type { RecordUsageRequest } from '../gen/quotad/v1/RecordUsageRequest.js';
import type { Logger } from '../telemetry/logger.js';
import type { GatewayMetrics, GatewayRoute } from '../telemetry/gateway-metrics.js';
import { isGrpcError } from '../api/client.js';
import { REFUSAL_TRAILER } from '../api/trailers.js';
import type { AuthorityClient } from './authority-client.js';
import { credentialOf, type Caller, type Credential } from './auth.js';
import { duplicateRequest, overloaded, quotaUnavailable, refusal } from './decision.js';
import { countStreamedTokens, estimateInputTokensInSlices, type TextCounting } from './estimate.js';
import type { KeyConfirmations } from './key-confirmations.js';
import { catalogueBody, invalidRequest } from './errors.js';
import { rateLimitHeaders } from './rate-limit-headers.js';
import type { ModelCall } from './requests.js';
import type { Settler } from './settlement.js';
import { SseSplitter } from './sse.js';
import { upstreamFailure, type Upstream } from './upstream.js';
import type { SentSignature } from './signature.js';

/** Whether a model call goes ahead (open) or is refused (closed) when the authority cannot answer. */
export type FailMode = 'closed' | 'open';

/** What the request log line and the metrics learn while a model call is served. */
export interface CallRecord {
  requestId: string;
  keyId?: string;
  model?: string;
  inputTokens?: number;
  outputTokens?: number;
  unmetered?: boolean;
  /** A JWT caller's subject (an API key is named by its id instead). */
  subject?: string;
  /** The request's settlement: resolves with the micro-dollars charged (undefined when it did not land). */
  settlement?: Promise<number | undefined>;
}

export interface ModelCallOptions {
  authority: AuthorityClient;
  upstream: Upstream;
  settler: Settler;
  metrics: GatewayMetrics;
  logger: Logger;
  authorityTimeoutMs: number;
  /** Checks waiting for the authority at most; a request beyond them is shed (503 server_overloaded). */
  maxPendingChecks: number;
  failMode: FailMode;
  /** Told of every key a decision confirms or refuses. */
  keys: KeyConfirmations;
}

/** Where the answer goes: headers to set, then a JSON body, or a raw stream after `hijack()`. */
export interface Responder {
  header(name: string, value: string): void;
  /** Sends a whole JSON answer (already serialized). */
  send(status: number, json: string): void;
  /** Takes the raw socket over for a stream; the headers set so far go out with `writeHead`. */
  hijack(): ServerResponse;
  headers(): Record<string, string>;
  /** Calls `listener` once if the client goes away before its answer is complete. */
  onClientGone(listener: () => void): void;
}

interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

type Outcome = RecordUsageRequest['outcome'];

/** An upstream answer on its way to the client, and how to settle it. */
interface Relay {
  call: ModelCall;
  inputEstimate: number;
  requestId: string;
  response: Response;
  responder: Responder;
  settle: (outcome: Outcome, usage: { input: number; output: number }) => void;
  /** Whether the client has gone away (streams only; a whole answer is waited for regardless). */
  clientGone: () => boolean;
}

const METRIC_ROUTE: Record<ModelCall['route'], GatewayRoute> = {
  chat: 'chat_completions',
  completions: 'completions',
  embeddings: 'embeddings',
};

function tokenCount(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** The generated text in a chat or completion chunk (or whole answer): content, refusals, tool-call arguments. */
function generatedTexts(payload: unknown, into: string[]): void {
  const choices = (payload as { choices?: unknown }).choices;
  if (!Array.isArray(choices)) return;
  for (const choice of choices as Record<string, unknown>[]) {
    const part = (choice.delta ?? choice.message ?? choice) as Record<string, unknown>;
    for (const field of ['content', 'refusal', 'text']) {
      if (typeof part[field] === 'string') into.push(part[field]);
    }
    const toolCalls = part.tool_calls;
    if (Array.isArray(toolCalls)) {
      for (const call of toolCalls as { function?: { arguments?: unknown } }[]) {
        if (typeof call.function?.arguments === 'string') into.push(call.function.arguments);
      }
    }
  }
}

/**
 * One model call through the gateway: reserve with the authority, forward to the upstream, relay the
 * answer (streams event by event), and settle with what the upstream really used.
 */
export class ModelCallHandler {
  readonly #o: ModelCallOptions;

  constructor(options: ModelCallOptions) {
    this.#o = options;
  }

  /** Model calls being handled now, from the check to the start of their settlement. */
  #active = 0;
  #idleWaiters: (() => void)[] = [];

  /** Resolves when no model call is being handled (their settlements may still be pending). */
  idle(): Promise<void> {
    if (this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** `counting`: 'bytes' for a caller whose key the authority could not confirm yet (see server.ts). */
  async handle(
    call: ModelCall,
    caller: Caller,
    record: CallRecord,
    responder: Responder,
    counting: TextCounting = 'tokenizer',
    signature?: SentSignature,
  ): Promise<void> {
    this.#active += 1;
    try {
      await this.#handle(call, caller, record, responder, counting, signature);
    } finally {
      this.#active -= 1;
      if (this.#active === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  async #handle(
    call: ModelCall,
    caller: Caller,
    record: CallRecord,
    responder: Responder,
    counting: TextCounting,
    signature: SentSignature | undefined,
  ): Promise<void> {
    const estimating = performance.now();
    const inputTokens = await estimateInputTokensInSlices(call, counting);
    this.#o.metrics.stageDuration.observe({ stage: 'estimate' }, (performance.now() - estimating) / 1000);
    record.inputTokens = inputTokens;
    if (inputTokens > MAX_TOKENS) {
      throw invalidRequest(
        `The input is about ${inputTokens} tokens, above the ${MAX_TOKENS} any request may have.`,
        call.inputParam,
        'context_length_exceeded',
      );
    }
    const noOutput = call.route === 'embeddings';
    const requestedOutput = call.maxOutput ? call.maxOutput.value * call.choices : 0;
    const credential = credentialOf(caller);
    const decision = await this.#decide(
      {
        requestId: record.requestId,
        ...credential,
        model: call.model,
        inputTokens,
        maxOutputTokens: noOutput ? 0 : requestedOutput,
        noOutput,
        ...(signature ? { signature } : {}),
      },
      credential,
    );
    if (decision === 'unmetered') {
      record.unmetered = true;
    } else {
      if (caller.kind === 'key') this.#noteKey(caller.sha256, decision);
      record.model = decision.model || call.model;
      if (decision.key) record.keyId = decision.key.id;
      for (const [name, value] of Object.entries(rateLimitHeaders(decision.limits)))
        responder.header(name, value);
      if (decision.warning) responder.header('x-quotad-warning', decision.warning);
      // A reservation the store made too late for a refused check is cancelled by the authority itself.
      if (!decision.allowed) throw refusal(decision, call, requestedOutput);
      if (decision.duplicate) throw duplicateRequest(record.requestId);
    }
    const body = this.#upstreamBody(call, decision === 'unmetered' ? undefined : decision.maxOutputTokens);
    const settle = (outcome: Outcome, reported: { input: number; output: number }) => {
      // The authority refuses a count above MAX_TOKENS; an upstream's absurd count is charged the most instead.
      const usage = {
        input: Math.min(reported.input, MAX_TOKENS),
        output: Math.min(reported.output, MAX_TOKENS),
      };
      record.outputTokens = usage.output;
      const metricModel = record.unmetered ? 'unmetered' : (record.model ?? call.model);
      this.#o.metrics.tokens.inc({ model: metricModel, direction: 'input' }, usage.input);
      this.#o.metrics.tokens.inc({ model: metricModel, direction: 'output' }, usage.output);
      record.settlement = this.#o.settler.settle(
        {
          requestId: record.requestId,
          ...credential,
          model: call.model,
          inputTokens: usage.input,
          outputTokens: usage.output,
          outcome,
        },
        { metricModel },
      );
    };

    // A streaming client that leaves stops the model at once, even before it starts answering; a whole
    // answer is waited for and charged what the upstream reports, since the upstream bills it anyway.
    const abort = new AbortController();
    let clientGone = false;
    if (call.stream) {
      responder.onClientGone(() => {
        clientGone = true;
        abort.abort();
      });
    }
    const started = performance.now();
    const route = METRIC_ROUTE[call.route];
    let response: Response;
    try {
      response = await this.#o.upstream.send(call.route, body, abort.signal);
    } catch (error) {
      const seconds = (performance.now() - started) / 1000;
      this.#o.metrics.upstreamDuration.observe({ route, outcome: clientGone ? 'aborted' : 'error' }, seconds);
      // The prompt reached the model, so a client that left is charged it; a failed upstream refunds.
      if (clientGone) settle('CANCELLED', { input: inputTokens, output: 0 });
      else settle('FAILED', { input: 0, output: 0 });
      const failure = upstreamFailure(error);
      if (failure.status >= 500 && !clientGone) {
        this.#o.logger.warn(
          { requestId: record.requestId, err: (error as Error).message },
          'upstream failed',
        );
      }
      throw failure;
    }
    const answered = performance.now();
    this.#o.metrics.upstreamDuration.observe({ route, outcome: 'ok' }, (answered - started) / 1000);
    const relay: Relay = {
      call,
      inputEstimate: inputTokens,
      requestId: record.requestId,
      response,
      responder,
      settle,
      clientGone: () => clientGone,
    };
    try {
      return await (call.stream ? this.#relayStream(relay, abort) : this.#relayWhole(relay));
    } finally {
      this.#o.metrics.stageDuration.observe({ stage: 'relay' }, (performance.now() - answered) / 1000);
    }
  }

  /** A decision that names the key confirms it; one that refuses the key forgets it. */
  #noteKey(sha256: Buffer, decision: CheckQuotaResponse__Output): void {
    if (['INVALID_KEY', 'KEY_REVOKED', 'KEY_EXPIRED'].includes(decision.code)) this.#o.keys.forget(sha256);
    else if (decision.key) this.#o.keys.confirm(sha256);
  }

  /** Requests waiting for the authority: their check, or the confirmation of their key before it. */
  #pendingChecks = 0;

  /**
   * Runs `wait`, a wait on the authority for one request, counted among the pending checks. Beyond
   * --max-pending-checks waiting already, the request is shed at once: it would only queue past its deadline.
   */
  async whilePending<T>(wait: () => Promise<T>): Promise<T> {
    const { metrics } = this.#o;
    if (this.#pendingChecks >= this.#o.maxPendingChecks) {
      metrics.shed.inc({ by: 'gateway' });
      throw overloaded();
    }
    this.#pendingChecks += 1;
    metrics.checksPending.inc();
    try {
      return await wait();
    } finally {
      this.#pendingChecks -= 1;
      metrics.checksPending.dec();
    }
  }

  /** Asks the authority; when it cannot answer in time, the fail mode decides. */
  #decide(
    request: CheckQuotaRequest & { requestId: string; model: string },
    credential: Credential,
  ): Promise<CheckQuotaResponse__Output | 'unmetered'> {
    return this.whilePending(() => this.#ask(request, credential));
  }

  async #ask(
    request: CheckQuotaRequest & { requestId: string; model: string },
    credential: Credential,
  ): Promise<CheckQuotaResponse__Output | 'unmetered'> {
    const { authority, metrics, logger, authorityTimeoutMs, failMode } = this.#o;
    const started = performance.now();
    try {
      const decision = await authority.check(request, authorityTimeoutMs);
      metrics.decisionDuration.observe({ result: decision.code }, (performance.now() - started) / 1000);
      return decision;
    } catch (error) {
      const result = isGrpcError(error) ? (grpc.status[error.code] ?? 'error') : 'error';
      metrics.decisionDuration.observe({ result }, (performance.now() - started) / 1000);
      if (isGrpcError(error) && error.code === grpc.status.INVALID_ARGUMENT) {
        // The request itself, which validation here should have caught.
        logger.error({ requestId: request.requestId, err: error.message }, 'authority refused the check');
        throw invalidRequest(error.details, null);
      }
      if (isGrpcError(error) && error.code === grpc.status.RESOURCE_EXHAUSTED) {
        // The authority is behind and refused this check undecided: nothing was reserved.
        metrics.shed.inc({ by: 'authority' });
        throw overloaded();
      }
      const refusedFor = isGrpcError(error) ? error.metadata?.get(REFUSAL_TRAILER)[0] : undefined;
      if (refusedFor !== undefined || (isGrpcError(error) && error.code === grpc.status.UNAUTHENTICATED)) {
        // The authority answered and refused on purpose (this gateway's own token, a store reset awaiting an
        // operator): not an outage, so --fail-mode open must not turn it into unmetered traffic. Nothing
        // was reserved.
        logger.error(
          {
            requestId: request.requestId,
            err: error instanceof Error ? error.message : String(error),
            refusal: refusedFor,
          },
          'the authority refused the check (check QUOTAD_AUTHORITY_TOKEN, or quotad store confirm-reset); refused',
        );
        throw quotaUnavailable();
      }
      if (failMode === 'open') {
        metrics.unmetered.inc();
        logger.warn(
          { requestId: request.requestId, err: (error as Error).message },
          'authority unavailable; fail mode open lets the request through unmetered',
        );
        return 'unmetered';
      }
      logger.warn(
        { requestId: request.requestId, err: (error as Error).message },
        'authority unavailable; refused',
      );
      // A check past its deadline may still have reserved at the authority.
      this.#cancel(request.requestId, credential, request.model);
      throw quotaUnavailable();
    }
  }

  /**
   * Cancels a check whose answer never arrived: FAILED with no usage refunds a reservation that was made
   * and frees the request id, so a retry under it is decided afresh. The authority reserves nothing for a
   * check that reaches its store after the check's deadline, so none is made after this lands.
   */
  #cancel(requestId: string, credential: Credential, model: string): void {
    this.#o.settler.settle(
      { requestId, ...credential, model, inputTokens: 0, outputTokens: 0, outcome: 'FAILED' },
      { cancel: true },
    );
  }

  /**
   * The body sent upstream: the client's, with an output cap when it set none (so the model cannot
   * outrun the reservation), and usage asked for on streams.
   */
  #upstreamBody(call: ModelCall, capPerRequest: number | undefined): Record<string, unknown> {
    const body: Record<string, unknown> = { ...call.body };
    if (call.route === 'embeddings') {
      // The SDK would otherwise ask for base64 and decode it itself; the client expects OpenAI's default.
      body.encoding_format ??= 'float';
      return body;
    }
    if (!call.maxOutput && capPerRequest !== undefined && capPerRequest > 0) {
      const perChoice = Math.max(1, Math.floor(capPerRequest / call.choices));
      body[call.route === 'chat' ? 'max_completion_tokens' : 'max_tokens'] = perChoice;
    }
    if (call.stream) {
      const asked = (call.body.stream_options ?? {}) as Record<string, unknown>;
      body.stream_options = { ...asked, include_usage: true };
    }
    return body;
  }

  async #relayWhole({ call, inputEstimate, response, responder, settle }: Relay): Promise<void> {
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      settle('FAILED', { input: 0, output: 0 });
      throw upstreamFailure(error);
    }
    let payload: { usage?: Usage } = {};
    try {
      payload = JSON.parse(text) as { usage?: Usage };
    } catch {
      // Relayed as is; usage then falls back to counting.
    }
    responder.send(response.status, text);
    const usage = payload.usage ?? {};
    const output = (): number => {
      const texts: string[] = [];
      generatedTexts(payload, texts);
      return countStreamedTokens(texts, call.model);
    };
    settle('COMPLETED', {
      input: tokenCount(usage.prompt_tokens) ?? inputEstimate,
      output: call.route === 'embeddings' ? 0 : (tokenCount(usage.completion_tokens) ?? output()),
    });
  }

  /**
   * Relays a stream event by event, unchanged, except the usage chunk when the client did not ask for
   * it. Settles from the upstream's usage chunk; when the client leaves first, aborts the upstream and
   * settles from the tokens streamed so far.
   */
  async #relayStream(
    { call, inputEstimate, requestId, response, responder, settle, clientGone }: Relay,
    abort: AbortController,
  ): Promise<void> {
    const res = responder.hijack();
    res.writeHead(200, {
      ...responder.headers(),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    const texts: string[] = [];
    let usage: Usage | undefined;
    const splitter = new SseSplitter();
    const relay = async (raw: string, data: string | undefined): Promise<void> => {
      if (data !== undefined && data !== '[DONE]') {
        let payload: { usage?: Usage | null; choices?: unknown[] } | undefined;
        try {
          payload = JSON.parse(data) as typeof payload;
        } catch {
          payload = undefined;
        }
        if (payload?.usage) {
          usage = payload.usage;
          if (!call.clientWantsUsage && payload.choices?.length === 0) return;
        }
        if (payload) generatedTexts(payload, texts);
      }
      if (!res.write(raw)) await once(res, 'drain', { signal: abort.signal });
    };
    const streamed = () => ({
      input: tokenCount(usage?.prompt_tokens) ?? inputEstimate,
      output: tokenCount(usage?.completion_tokens) ?? countStreamedTokens(texts, call.model),
    });
    try {
      for await (const chunk of response.body ?? []) {
        for (const event of splitter.push(chunk as Uint8Array)) await relay(event.raw, event.data);
      }
      const last = splitter.end();
      if (last) await relay(last.raw, last.data);
      res.end();
      settle('COMPLETED', streamed());
    } catch (error) {
      if (clientGone()) {
        settle(usage ? 'COMPLETED' : 'CANCELLED', streamed());
        return;
      }
      // The upstream broke off mid-stream: charge what reached the client, tell it in-band, end.
      const charged = texts.length > 0;
      settle('FAILED', charged ? streamed() : { input: 0, output: 0 });
      this.#o.logger.warn({ requestId, err: (error as Error).message }, 'upstream stream broke off');
      const message = `The model API broke off the stream; ${charged ? 'only what was streamed is' : 'nothing was'} charged.`;
      res.end(`data: ${JSON.stringify(catalogueBody('upstream_error', message))}\n\n`);
    }
  }
}
