/**
 * autocannon in a process of its own, for the gateway scenario of `make bench`: one closed-loop run against
 * a URL, printed as one JSON line. Latency comes from autocannon's per-response event, which has
 * sub-millisecond resolution (its own histogram keeps whole milliseconds), into bench/histogram.ts.
 *
 *   node dist/bench/http-load.js '<json: url, headers, body, connections, warmupSeconds, seconds>'
 */
import autocannon from 'autocannon';
import { Histogram } from './histogram.js';

interface Options {
  url: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as Options;

async function run(seconds: number, latency?: Histogram) {
  const cpu = process.cpuUsage();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        method: 'POST',
        headers: options.headers,
        body: options.body,
        connections: options.connections,
        duration: seconds,
      },
      (error, done) => (error ? reject(error as Error) : resolve(done)),
    );
    if (latency) {
      instance.on('response', (_client, statusCode, _bytes, ms) => {
        if (statusCode >= 200 && statusCode < 300) latency.recordMs(ms);
      });
    }
  });
  const used = process.cpuUsage(cpu);
  return { result, cpuSeconds: (used.user + used.system) / 1e6 };
}

const warmup = options.warmupSeconds > 0 ? await run(options.warmupSeconds) : undefined;
const latency = new Histogram();
const { result, cpuSeconds } = await run(options.seconds, latency);
process.stdout.write(
  `${JSON.stringify({
    requests: result.requests.total,
    // What the warm-up sent too, for readers of CPU measured around the whole process.
    warmupRequests: warmup?.result.requests.total ?? 0,
    seconds: result.duration,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: result.statusCodeStats ?? {},
    latency: latency.toJSON(),
    cpuSeconds,
  })}\n`,
);
