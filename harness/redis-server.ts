import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** Whether a server can listen on `port` on loopback right now (it listens, then closes at once). */
export async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The lowest port the kernel hands out for outgoing connections and listen(0). */
const EPHEMERAL_LOW = (() => {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
})();

/**
 * A free TCP port on loopback for a server a test starts, picked at random below the kernel's ephemeral
 * range and probed. A port from listen(0) lies in that range, where an outgoing connection of any parallel
 * test may take it between the probe and the server's own bind (seen in CI: EADDRINUSE); below the range
 * only another listener can.
 */
export async function freePort(): Promise<number> {
  const low = 10_000;
  if (EPHEMERAL_LOW - low < 5_000) return kernelPort();
  for (;;) {
    const port = low + Math.floor(Math.random() * (EPHEMERAL_LOW - low));
    if (await portIsFree(port)) return port;
  }
}

async function kernelPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * A private redis-server for one test file: its own free port and temp dir, no persistence. It can be
 * stopped and started again on the same port, to show what the authority does while Redis is gone.
 */
export class TestRedisServer {
  readonly port: number;
  readonly #dir: string;
  #process: ChildProcess | undefined;
  #paused = false;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.#dir = dir;
  }

  static async start(): Promise<TestRedisServer> {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-redis-'));
    const server = new TestRedisServer(await freePort(), dir);
    await server.resume();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Starts the server again after kill(), or lets a paused one run on (SIGCONT); resolves once Redis
   * accepts connections.
   */
  async resume(): Promise<void> {
    if (this.#paused && this.#process) {
      this.#process.kill('SIGCONT');
      this.#paused = false;
      return;
    }
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.#dir,
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#process = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          child.stdout?.off('data', onData);
          child.stdout?.resume();
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
      child.once('error', reject);
    });
  }

  /**
   * Stops the server in its tracks (SIGSTOP), as a hung host or a long GC-like stall would: connections
   * stay open and commands are accepted by the kernel, but nothing is answered until resume().
   */
  pause(): void {
    if (!this.#process || this.#process.exitCode !== null) throw new Error('redis-server is not running');
    this.#process.kill('SIGSTOP');
    this.#paused = true;
  }

  /** Kills the server at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.#process;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    this.#paused = false;
    await exited;
    this.#process = undefined;
  }

  /**
   * Stops the server's process (SIGSTOP): connections stay open and commands sent meanwhile wait in its
   * socket buffers, to run when it is thawed, as with a Redis stalled by the machine under it.
   */
  freeze(): void {
    this.#process?.kill('SIGSTOP');
  }

  /** Lets a frozen server run again (SIGCONT). */
  thaw(): void {
    this.#process?.kill('SIGCONT');
  }

  /** A plain client for inspecting what the store wrote. */
  client(): Redis {
    return new Redis(this.url, { maxRetriesPerRequest: 1 });
  }

  async stop(): Promise<void> {
    await this.kill();
    await rm(this.#dir, { recursive: true, force: true });
  }
}
