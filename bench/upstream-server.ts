/**
 * The demo upstream (src/demo/upstream.ts: OpenAI-compatible, canned answers with real token counts) in a
 * process of its own, for the gateway scenario of `make bench`.
 *
 *   node dist/bench/upstream-server.js    (prints `listening <base url>`; stops on SIGTERM)
 */
import { startDemoUpstream } from '../src/demo/upstream.js';

const upstream = await startDemoUpstream({ host: '127.0.0.1', port: 0 });
process.stdout.write(`listening ${upstream.url}\n`);
process.once('SIGTERM', () => {
  void upstream.close().then(() => process.exit(0));
});
