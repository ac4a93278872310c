import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';

export const CLI = fileURLToPath(new URL('../src/main/cli.js', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** One line a quotad process wrote to stdout: its JSON fields, or `{ msg }` for a line that is not JSON. */
export type LogLine = Record<string, unknown> & { msg?: string };

interface LogWaiter {
  match: (line: LogLine) => boolean;
  resolve: (line: LogLine) => void;
  reject: (error: Error) => void;
  text: string;
}

/**
 * Starts `quotad <command> <args>` as a child, with `env` on top of a clean environment (no QUOTAD_* leaks
 * in from the shell running the tests), stdout and stderr piped.
 */
export function spawnQuotad(command: string, args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [CLI, command, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * A quotad command running as a real child process: its JSON log lines readable as they come, its stderr
 * kept, and a way to wait for a line, for its exit, or to stop it with SIGTERM.
 */
export class QuotadProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly #readyMessage: string;
  readonly #waiters: LogWaiter[] = [];
  /** Settles once the process exited and its stdout and stderr are read to the end. */
  readonly #closed: Promise<number | null>;
  #hasClosed = false;

  /** `readyMessage`: the log message (logged at info) that says the process serves. */
  protected constructor(child: ChildProcess, readyMessage: string) {
    this.child = child;
    this.#readyMessage = readyMessage;
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const text of complete) this.#onLine(text);
    });
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.#closed = once(child, 'close')
      .then(([code]) => code as number | null)
      .finally(() => {
        if (pending) this.#onLine(pending);
        this.#hasClosed = true;
        for (const waiter of this.#waiters.splice(0)) {
          waiter.reject(this.#exitedBefore(waiter.text, child.exitCode ?? child.signalCode));
        }
      });
    // Awaited by exitCode() and stop(); a spawn error must not go unhandled in a test that calls neither.
    this.#closed.catch(() => undefined);
  }

  #exitedBefore(text: string, code: unknown): Error {
    return new Error(`quotad exited (${String(code)}) before logging '${text}': ${this.stderr}`);
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

  #waitFor(text: string, where: (line: LogLine) => boolean, seen: boolean): Promise<LogLine> {
    const match = (line: LogLine) => typeof line.msg === 'string' && line.msg.includes(text) && where(line);
    const found = seen ? this.lines.find(match) : undefined;
    if (found) return Promise.resolve(found);
    if (this.#hasClosed) {
      return Promise.reject(this.#exitedBefore(text, this.child.exitCode ?? this.child.signalCode));
    }
    return new Promise((resolve, reject) => this.#waiters.push({ match, resolve, reject, text }));
  }

  /**
   * Resolves with the first log line (already seen or still to come) whose message includes `text` and,
   * when given, that `where` accepts; rejects if the process ends first.
   */
  waitForLog(text: string, where: (line: LogLine) => boolean = () => true): Promise<LogLine> {
    return this.#waitFor(text, where, true);
  }

  /** The next log line with `text` (and accepted by `where`) after the lines already seen. */
  nextLog(text: string, where: (line: LogLine) => boolean = () => true): Promise<LogLine> {
    return this.#waitFor(text, where, false);
  }

  /** Resolves once the process says it serves (logged at info; keep LOG_LEVEL at info or below). */
  async ready(): Promise<this> {
    await this.waitForLog(this.#readyMessage);
    return this;
  }

  /** The exit code once the process has exited (null if a signal ended it), with all its output read. */
  exitCode(): Promise<number | null> {
    return this.#closed;
  }

  /** SIGTERM, then waits for the exit. Does nothing to a process that already ended. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.#closed;
  }
}

/** `quotad serve` as a real child process, with its JSON log lines readable as they come. */
export class AuthorityProcess extends QuotadProcess {
  readonly grpcPort: number;
  readonly metricsPort: number;

  private constructor(child: ChildProcess, grpcPort: number, metricsPort: number) {
    super(child, 'quotad authority serving');
    this.grpcPort = grpcPort;
    this.metricsPort = metricsPort;
  }

  /** Spawns the CLI with `env` on top of a clean environment and free ports. */
  static async spawn(env: Record<string, string>, args: string[] = []): Promise<AuthorityProcess> {
    const grpcPort = await freePort();
    const metricsPort = await freePort();
    const child = spawnQuotad('serve', args, {
      QUOTAD_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      QUOTAD_METRICS_ADDR: `127.0.0.1:${metricsPort}`,
      ...env,
    });
    return new AuthorityProcess(child, grpcPort, metricsPort);
  }

  get grpcAddress(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  async metrics(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return response.text();
  }
}
