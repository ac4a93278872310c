/** The estimate's text counting in a worker thread, for bench/estimate.ts to compare with counting in slices. */
import { parentPort } from 'node:worker_threads';
import { runToEnd, tokenizerCounter } from '../src/gateway/text-tokens.js';

parentPort?.on('message', ({ text, model }: { text: string; model: string }) => {
  parentPort?.postMessage(runToEnd(tokenizerCounter(model)(text)));
});
