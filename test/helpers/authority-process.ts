import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';

export const CLI = fileURLToPath(new URL('../../src/main/cli.js', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

type LogLine = Record<string, unknown> & { msg?: string };

/** `quotad serve` as a real child process, with its JSON log lines readable as they come. */
export class AuthorityProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly #waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];

  private constructor(child: ChildProcess, grpcPort: number, metricsPort: number) {
    this.child = child;
    this.grpcPort = grpcPort;
    this.metricsPort = metricsPort;
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const text of complete) this.#onLine(text);
    });
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  /** Spawns the CLI with `env` on top of a clean environment and free ports. */
  static spawn(env: Record<string, string>, args: string[] = []): Promise<AuthorityProcess> {
    return (async () => {
      const grpcPort = await freePort();
      const metricsPort = await freePort();
      const child = spawn(process.execPath, [CLI, 'serve', ...args], {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          QUOTAD_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
          QUOTAD_METRICS_ADDR: `127.0.0.1:${metricsPort}`,
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return new AuthorityProcess(child, grpcPort, metricsPort);
    })();
  }

  get grpcAddress(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  #onLine(text: string): void {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { msg: text };
    }
    this.lines.push(line);
    for (const waiter of [...this.#waiters]) {
      if (waiter.match(line)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  }

  /** Resolves with the first log line (already seen or still to come) whose message includes `text`. */
  waitForLog(text: string): Promise<LogLine> {
    const match = (line: LogLine) => typeof line.msg === 'string' && line.msg.includes(text);
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ match, resolve });
      this.child.once('exit', (code) =>
        reject(new Error(`quotad exited (${code}) before logging '${text}': ${this.stderr}`)),
      );
    });
  }

  /** The next log line with `text` after the lines already seen. */
  nextLog(text: string): Promise<LogLine> {
    return new Promise((resolve) => {
      this.#waiters.push({
        match: (line) => typeof line.msg === 'string' && line.msg.includes(text),
        resolve,
      });
    });
  }

  /** Resolves once the authority says it serves (logged at info; keep LOG_LEVEL at info or below). */
  async ready(): Promise<this> {
    await this.waitForLog('quotad authority serving');
    return this;
  }

  async exitCode(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const [code] = (await once(this.child, 'exit')) as [number | null];
    return code;
  }

  async metrics(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return response.text();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    await exited;
  }
}
