/** How the demo upstream sends answers: whole JSON, server-sent event streams, and broken-off connections. */
import { type ServerResponse } from 'node:http';
import type {
  StreamedSoFar,
  UpstreamCall,
  UpstreamObserver,
  UpstreamScript,
  UpstreamUsage,
} from './upstream-contract.js';
import { DEMO_SYSTEM_FINGERPRINT } from './upstream-contract.js';
import type { UpstreamError } from './upstream-errors.js';
import { tokenPieces } from './upstream-text.js';
import type { Answer } from './upstream-parse.js';
import { requestId } from './upstream-parse.js';

/** Answers this upstream broke off on purpose (a `cut` script): their close is not a client leaving. */
export const cutByUs = new WeakSet<ServerResponse>();

/** Breaks the connection off mid-answer, after what was written so far has gone out. */
function cut(res: ServerResponse): void {
  cutByUs.add(res);
  if (res.socket) res.socket.end();
  else res.destroy();
}

export async function streamAnswer(
  res: ServerResponse,
  call: UpstreamCall,
  answer: Answer,
  streamed: StreamedSoFar,
  halt: Extract<UpstreamScript, { kind: 'stall' | 'cut' | 'pause' }> | undefined,
  observer: UpstreamObserver,
): Promise<void> {
  const plan = answer.stream;
  if (!plan || res.destroyed) return;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': requestId(),
  });
  // With include_usage every chunk carries `usage`, null until the last one, as OpenAI's do.
  const chunk = (choices: Record<string, unknown>[], usage: UpstreamUsage | null = null) => ({
    id: call.id,
    object: plan.object,
    created: plan.created,
    model: call.model,
    system_fingerprint: DEMO_SYSTEM_FINGERPRINT,
    choices,
    ...(call.includeUsage ? { usage } : {}),
  });
  const send = (data: unknown) => writeEvent(res, JSON.stringify(data));

  for (const choice of plan.choices) {
    if (plan.opening && !(await send(chunk([plan.opening(choice.index)])))) return;
    for (const piece of tokenPieces(choice.text)) {
      if (res.destroyed) return;
      if (halt?.kind === 'pause' && streamed.chunks === halt.afterChunks) await halt.until;
      else if (halt && halt.kind !== 'pause' && streamed.chunks >= halt.afterChunks) {
        if (halt.kind === 'cut') cut(res);
        return;
      }
      streamed.chunks += 1;
      streamed.text += piece;
      if (!(await send(chunk([plan.content(choice.index, piece)])))) return;
    }
    // A halted stream never finishes, even with content to spare.
    if (halt && halt.kind !== 'pause') {
      if (halt.kind === 'cut') cut(res);
      return;
    }
    if (!(await send(chunk([plan.finish(choice.index, choice.finishReason)])))) return;
  }
  if (call.includeUsage) {
    if (!(await send(chunk([], plan.usageBody)))) return;
    observer.onUsage?.(call, answer.usage);
  }
  if (await writeEvent(res, '[DONE]')) res.end();
}

/** Writes one SSE event, waiting out backpressure; false once the client is gone. */
function writeEvent(res: ServerResponse, data: string): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(`data: ${data}\n\n`)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const settle = (open: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(open);
    };
    const onDrain = () => settle(true);
    const onClose = () => settle(false);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/** Sends a whole JSON answer; false when the client is already gone. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): boolean {
  if (res.headersSent || res.destroyed) return false;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-request-id': requestId(),
    ...headers,
  });
  res.end(text);
  return true;
}

export function sendError(res: ServerResponse, error: UpstreamError): void {
  if (res.headersSent) {
    res.destroy(); // a stream cannot turn into an error body; cutting it is what the client can notice
    return;
  }
  const { message, type, param, code, status } = error;
  // The rest of an oversized body is not worth reading: close the connection after the answer.
  const headers: Record<string, string> = status === 413 ? { connection: 'close' } : {};
  sendJson(res, status, { error: { message, type, param, code } }, headers);
}
