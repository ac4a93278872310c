/**
 * What estimating the largest body costs the gateway, and how long it holds the event loop.
 *
 *   node dist/bench/estimate.js [--mb 4]
 *
 * 1. In this process, for four 4 MB prompts (repeated prose, the installed packages' Markdown, base64, one
 *    run without a space), the estimate's text
 *    counting four ways: gpt-tokenizer over the whole text at once (what the gateway did before), the
 *    bounded counting at once, in 5 ms slices (what it does), and in a worker thread. For each: wall time,
 *    CPU time of the process (the worker's included), and the longest the event loop went without a turn.
 * 2. Against `quotad serve` and `quotad gateway` processes (in-process store, the demo upstream): /healthz
 *    round trips every 10 ms while the gateway reads and estimates a 4 MB base64 prompt from a known key
 *    (three times; the tier's 3,000-token input cap then refuses it), and while it refuses the same body
 *    from a never-issued key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { clearMergeCache, countTokens, setMergeCacheSize } from 'gpt-tokenizer/encoding/o200k_base';
import { estimateInputTokensInSlices } from '../src/gateway/estimate.js';
import { parseModelCall } from '../src/gateway/requests.js';
import { runToEnd, tokenizerCounter } from '../src/gateway/text-tokens.js';
import { formatApiKey, KEY_RANDOM_BYTES } from '../src/keys/api-key.js';
import { AuthorityProcess } from '../harness/authority-process.js';
import { GatewayProcess } from '../harness/gateway-process.js';
import { adminClient } from '../harness/grpc-clients.js';
import { benchScript, startNodeServer } from './processes.js';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '4' }, only: { type: 'string', default: 'counting,gateway' } },
});
const only = new Set(values.only.split(','));
const chars = Math.floor(Number(values.mb) * 1_000_000);
const MODEL = 'gpt-4o';

const WORDS =
  'the quota gateway counts every prompt before it reaches the model, and settles what it used'.split(' ');
function prose(length: number): string {
  const words: string[] = [];
  for (let size = 0; size < length; size += 1) {
    const word = WORDS[size % WORDS.length] as string;
    words.push(word);
    size += word.length;
  }
  return words.join(' ');
}

/** The installed packages' Markdown, in path order: real English and code, the same for the same lockfile. */
async function markdown(length: number): Promise<string> {
  const files = (await readdir('node_modules', { recursive: true }))
    .filter((file) => file.endsWith('.md'))
    .sort();
  const parts: string[] = [];
  for (let size = 0, i = 0; size < length && i < files.length; i++) {
    const text = await readFile(join('node_modules', files[i] as string), 'utf8');
    parts.push(text);
    size += text.length;
  }
  return parts.join('\n').slice(0, length);
}

const prompts: Record<string, string> = {
  prose: prose(chars),
  markdown: await markdown(chars),
  base64: randomBytes(Math.floor((chars * 3) / 4)).toString('base64'),
  'one run': 'x'.repeat(chars),
};

/**
 * Runs `work`, measuring its wall time, the CPU time of the process (worker threads included) and the
 * longest the event loop went without a turn: the largest gap between ticks of a 1 ms timer, less the
 * 1 ms (wall time, so on a busy machine it includes time the process was not scheduled).
 */
async function measured<T>(
  work: () => Promise<T> | T,
): Promise<{ value: T; wallMs: number; cpuMs: number; heldMs: number }> {
  let heldMs = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    heldMs = Math.max(heldMs, now - last - 1);
    last = now;
  }, 1);
  const cpu = process.cpuUsage();
  const started = performance.now();
  const value = await work();
  const wallMs = performance.now() - started;
  // The loop's next turns after the work: work done at once is measured there, all of it.
  await new Promise((resolve) => setTimeout(resolve, 5));
  clearInterval(ticker);
  const used = process.cpuUsage(cpu);
  return { value, wallMs, cpuMs: (used.user + used.system) / 1_000, heldMs };
}

const fmt = (ms: number) =>
  ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;

/** Part 1: the estimate's counting, four ways, in this process. */
async function counting(): Promise<void> {
  const worker = new Worker(benchScript('estimate-worker'));
  const inWorker = (text: string) =>
    new Promise<number>((resolve) => {
      worker.once('message', resolve);
      worker.postMessage({ text, model: MODEL });
    });
  await inWorker('warm up');
  countTokens('warm up');

  console.log(`## Counting a ${values.mb} MB prompt (${MODEL}), in this process\n`);
  console.log('| prompt | way | tokens | wall | CPU | event loop held at most |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: |');
  for (const [name, text] of Object.entries(prompts)) {
    const call = parseModelCall('chat', { model: MODEL, messages: [{ role: 'user', content: text }] });
    const whole = name === 'one run' ? text.slice(0, 160_000) : text;
    const ways: [string, () => Promise<number> | number][] = [
      [
        name === 'one run' ? 'whole text at once (before), first 160 KB only' : 'whole text at once (before)',
        () => {
          // As before: the library's default cache of 100,000 merged pieces.
          setMergeCacheSize(100_000);
          const tokens = countTokens(whole, { disallowedSpecial: new Set() });
          // Back to the gateway's 1,000, emptied: a smaller size does not shrink what is cached.
          setMergeCacheSize(1_000);
          clearMergeCache();
          return tokens;
        },
      ],
      ['bounded, at once', () => runToEnd(tokenizerCounter(MODEL)(text))],
      ['bounded, 5 ms slices (shipped)', () => estimateInputTokensInSlices(call)],
      ['bounded, worker thread', () => inWorker(text)],
    ];
    for (const [way, work] of ways) {
      const m = await measured(work);
      console.log(
        `| ${name} | ${way} | ${m.value} | ${fmt(m.wallMs)} | ${fmt(m.cpuMs)} | ${fmt(m.heldMs)} |`,
      );
    }
  }
  await worker.terminate();
}

/** Part 2: /healthz of a gateway process while it reads and estimates the largest body. */
async function gatewayProcess(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'quotad-bench-estimate-'));
  const policy = join(dir, 'policy.yaml');
  const policyLines = [
    'version: 1',
    'timezone: UTC',
    'models:',
    `  ${MODEL}: { input_per_million: '2.50', output_per_million: '10.00' }`,
    'tiers:',
    '  bench:',
    '    max_output_tokens: 100',
    '    max_input_tokens: 3000',
  ];
  await writeFile(policy, `${policyLines.join('\n')}\n`);
  const adminToken = randomBytes(24).toString('hex');
  const stops: (() => Promise<void>)[] = [];
  const quotad = await (
    await AuthorityProcess.spawn({ QUOTAD_POLICY: policy, QUOTAD_ADMIN_TOKEN: adminToken, LOG_LEVEL: 'info' })
  ).ready();
  const admin = adminClient(quotad.grpcAddress, adminToken);
  const { secret } = await admin.createKey({ name: 'bench', owner: 'bench', org: 'bench', tier: 'bench' });
  admin.close();
  stops.push(() => quotad.stop());
  const upstream = await startNodeServer('upstream-server');
  stops.push(upstream.stop);
  const gateway = await (
    await GatewayProcess.spawn({
      QUOTAD_AUTHORITY: quotad.grpcAddress,
      OPENAI_BASE_URL: upstream.address,
      LOG_LEVEL: 'info',
    })
  ).ready();
  stops.push(() => gateway.stop());

  /** /healthz every 10 ms until `done` settles: each round trip's milliseconds. */
  async function probeWhile(done: Promise<unknown>): Promise<number[]> {
    const times: number[] = [];
    let finished = false;
    void done.finally(() => (finished = true));
    while (!finished) {
      const started = performance.now();
      await fetch(`${gateway.url}/healthz`).then((r) => r.text());
      times.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return times;
  }

  try {
    const body = JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: prompts.base64?.slice(0, chars - 200) }],
    });
    const send = (key: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body,
      }).then(
        async (r) => `${r.status} ${((await r.json()) as { error?: { code?: string } }).error?.code ?? ''}`,
      );

    console.log(
      `\n## /healthz of a gateway process while it takes a ${(body.length / 1e6).toFixed(1)} MB base64 prompt\n`,
    );
    console.log('| caller | answer | answered in | /healthz probes | /healthz worst | /healthz median |');
    console.log('| --- | --- | ---: | ---: | ---: | ---: |');
    await send(secret); // the key is confirmed from here on
    for (const [who, key] of [
      ['known key', secret],
      ['known key', secret],
      ['known key', secret],
      ['never-issued key, valid checksum', formatApiKey('live', randomBytes(KEY_RANDOM_BYTES))],
    ] as const) {
      const started = performance.now();
      const answer = send(key);
      const probes = await probeWhile(answer);
      const took = performance.now() - started;
      probes.sort((a, b) => a - b);
      console.log(
        `| ${who} | ${await answer} | ${fmt(took)} | ${probes.length} | ${fmt(probes.at(-1) ?? 0)} | ${fmt(probes[Math.floor(probes.length / 2)] ?? 0)} |`,
      );
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (only.has('counting')) await counting();
if (only.has('gateway')) await gatewayProcess();
