/**
 * The child processes `make bench` starts: servers that print `listening <address>` when they serve, and
 * the gRPC load generators (forked, driven by IPC). Each is stopped by its own handle.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Histogram } from './histogram.js';
import type { PhaseRequest, PhaseResult } from './loadgen.js';

/** dist/bench/<name>.js, next to this file once compiled. */
export const benchScript = (name: string) => fileURLToPath(new URL(`./${name}.js`, import.meta.url));

export interface NodeServer {
  pid: number;
  /** What the server printed after `listening `: a port or a URL. */
  address: string;
  commandLine: string;
  stop(): Promise<void>;
}

/** Spawns `node <script> <args>` and resolves once it prints `listening <address>`. */
export async function startNodeServer(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<NodeServer> {
  const child = spawn(process.execPath, [benchScript(script), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening (\S+)/.exec(output);
      if (match) resolve(match[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${stderr}`)));
    child.once('error', reject);
  });
  return {
    pid: child.pid as number,
    address,
    commandLine: `node dist/bench/${script}.js ${args.join(' ')}`.trim(),
    stop: () => stopChild(child),
  };
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** One forked load generator (bench/loadgen.ts). */
export class LoadGenerator {
  readonly child: ChildProcess;
  readonly commandLine: string;

  private constructor(child: ChildProcess, commandLine: string) {
    this.child = child;
    this.commandLine = commandLine;
  }

  static async start(target: string, principals: number, index: number, of: number): Promise<LoadGenerator> {
    const args = [target, String(principals), String(index), String(of)];
    const child = fork(benchScript('loadgen'), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`loadgen exited with ${code}`)));
    });
    return new LoadGenerator(child, `node dist/bench/loadgen.js ${args.join(' ')}`);
  }

  run(phase: Omit<PhaseRequest, 'type'>): Promise<PhaseResult> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`loadgen exited with ${code} mid-phase`));
      this.child.once('exit', onExit);
      this.child.once('message', (message: PhaseResult | { type: 'error'; message: string }) => {
        this.child.off('exit', onExit);
        if (message.type === 'result') resolve(message);
        else reject(new Error(`loadgen: ${message.message}`));
      });
      this.child.send({ type: 'phase', ...phase });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.send({ type: 'exit' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Several generators' results of one phase, as one. */
export function mergeResults(results: PhaseResult[]) {
  const latency = new Histogram();
  const service = new Histogram();
  const lag = new Histogram();
  const errors: Record<string, number> = {};
  const sum = { operations: 0, decisions: 0, calls: 0, denied: 0, unfinished: 0, cpuSeconds: 0 };
  const sent: Record<string, number> = {};
  for (const r of results) {
    latency.merge(r.latency);
    service.merge(r.service);
    lag.merge(r.lag);
    for (const [name, count] of Object.entries(r.errors)) errors[name] = (errors[name] ?? 0) + count;
    for (const [name, count] of Object.entries(r.sent)) sent[name] = (sent[name] ?? 0) + count;
    sum.operations += r.operations;
    sum.decisions += r.decisions;
    sum.calls += r.calls;
    sum.denied += r.denied;
    sum.unfinished += r.unfinished;
    sum.cpuSeconds += r.cpuSeconds;
  }
  return { ...sum, sent, errors, latency, service, lag, measuredMs: results[0]?.measuredMs ?? 0 };
}
