/**
 * What one model call costs the gateway's process in the OpenAI SDK, by the fetch under it: Node's global
 * fetch (undici's fetch), the gateway's src/gateway/http-fetch.ts (undici's Agent through `request`), the
 * hand-written node:http one it used before (bench/node-http-fetch.ts) and a bare undici Pool
 * (bench/undici-pool-fetch.ts). The demo upstream runs in a process of its own, so this process's CPU is
 * the client's alone.
 *
 *   node dist/bench/upstream-client.js [--calls 10000] [--rounds 3] [--concurrency 1,16]
 *
 * Each round measures every fetch, one after the other, at each concurrency: a non-streamed chat
 * completion, its body read to the end, as the gateway relays it. Prints calls/s and CPU ms per call.
 */
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { createHttpFetch } from '../src/gateway/http-fetch.js';
import { createNodeHttpFetch } from './node-http-fetch.js';
import { createPoolFetch } from './undici-pool-fetch.js';
import { startNodeServer } from './processes.js';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,16' },
  },
});
const calls = Number(values.calls);
const rounds = Number(values.rounds);
const concurrencies = values.concurrency.split(',').map(Number);

const upstream = await startNodeServer('upstream-server');
const baseURL = upstream.address;

const transport = createHttpFetch();
const nodeHttp = createNodeHttpFetch();
const pool = createPoolFetch(new URL(baseURL).origin);
const clients = {
  'global fetch (undici)': new OpenAI({ baseURL, apiKey: 'bench', maxRetries: 0 }),
  'http-fetch (undici Agent.request)': new OpenAI({
    baseURL,
    apiKey: 'bench',
    maxRetries: 0,
    fetch: transport.fetch,
  }),
  'node:http (before)': new OpenAI({ baseURL, apiKey: 'bench', maxRetries: 0, fetch: nodeHttp.fetch }),
  'undici Pool': new OpenAI({ baseURL, apiKey: 'bench', maxRetries: 0, fetch: pool.fetch }),
};
const body = {
  model: 'gpt-4o-mini',
  messages: [{ role: 'user' as const, content: 'Say hello to the benchmark' }],
  max_tokens: 16,
};

async function run(client: OpenAI, n: number, concurrency: number): Promise<void> {
  let started = 0;
  const worker = async () => {
    while (started++ < n) {
      const response = await client.chat.completions
        .create(body, { signal: new AbortController().signal })
        .asResponse();
      await response.text();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

console.log('| round | concurrency | fetch | calls/s | CPU ms per call |');
console.log('| ----- | ----------- | ----- | ------- | --------------- |');
for (let round = 1; round <= rounds; round++) {
  for (const concurrency of concurrencies) {
    for (const [name, client] of Object.entries(clients)) {
      await run(client, Math.ceil(calls / 5), concurrency); // warm-up
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      await run(client, calls, concurrency);
      const seconds = (performance.now() - t0) / 1000;
      const used = process.cpuUsage(cpu);
      const cpuMs = (used.user + used.system) / 1000 / calls;
      console.log(
        `| ${round} | ${concurrency} | ${name} | ${Math.round(calls / seconds).toLocaleString('en-US')} | ${cpuMs.toFixed(3)} |`,
      );
    }
  }
}
transport.close();
nodeHttp.close();
await pool.close();
await upstream.stop();
