import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** A free TCP port on loopback, as the kernel hands one out. */
export async function freePort(): Promise<number> {
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
