import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../../harness/authority-process.js';
import { freePort } from '../../harness/redis-server.js';

/** `make run`'s script (what `make run` runs once the build is current), with its port variables. */
class RunScript {
  stdout = '';
  stderr = '';
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  #wake: () => void = () => {};

  constructor(ports: { GATEWAY_PORT: number; AUTHORITY_PORT: number; METRICS_PORT: number }) {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', RUN_HOST: '127.0.0.1' };
    for (const [name, port] of Object.entries(ports)) env[name] = String(port);
    this.child = spawn('bash', ['scripts/run.sh'], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => ((this.stdout += chunk.toString()), this.#wake()));
    this.child.stderr?.on('data', (chunk: Buffer) => ((this.stderr += chunk.toString()), this.#wake()));
    this.exited = once(this.child, 'close').then(([code]) => code as number | null);
  }

  /** Resolves once `seen` holds for what the processes wrote; rejects if they exit first. */
  async waitFor(seen: (run: RunScript) => boolean, what: string): Promise<void> {
    let done = false;
    const exit = this.exited.then((code) => {
      if (!done) throw new Error(`make run exited (${String(code)}) before ${what}: ${this.stderr}`);
    });
    while (!seen(this)) {
      await Promise.race([new Promise<void>((resolve) => (this.#wake = resolve)), exit]);
    }
    done = true;
  }
}

function runBash(script: string): Promise<{ code: number | null; output: string }> {
  const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return once(child, 'close').then(([code]) => ({ code: code as number | null, output }));
}

describe('make run', { timeout: 60_000 }, () => {
  let ports: { GATEWAY_PORT: number; AUTHORITY_PORT: number; METRICS_PORT: number };
  let run: RunScript;

  before(async () => {
    ports = {
      GATEWAY_PORT: await freePort(),
      AUTHORITY_PORT: await freePort(),
      METRICS_PORT: await freePort(),
    };
    run = new RunScript(ports);
    await run.waitFor(
      (r) => r.stderr.includes('curl -i ') && r.stdout.includes('quotad gateway serving'),
      'the demo banner and a serving gateway',
    );
  });

  after(async () => {
    run.child.kill('SIGTERM');
    await run.exited;
  });

  test("takes the ports it is given, and the banner's export and curl lines work pasted as printed", async () => {
    const exportLine = /^ {4}(export DEMO_KEY=\S+)$/m.exec(run.stderr)?.[1];
    const curlLine = /^ {4}(curl -i .*)$/m.exec(run.stderr)?.[1];
    assert.ok(exportLine && curlLine, `no export or curl line in: ${run.stderr}`);
    assert.ok(curlLine.includes(`http://127.0.0.1:${ports.GATEWAY_PORT}/v1/chat/completions`), curlLine);
    const { code, output } = await runBash(`set -e\n${exportLine}\n${curlLine} --silent --max-time 10`);
    assert.equal(code, 0, output);
    assert.match(output, /^HTTP\/1\.1 200 /);
  });

  test('a busy port stops it with one line naming the address and the setting that moves it', async () => {
    const second = new RunScript({
      GATEWAY_PORT: ports.GATEWAY_PORT,
      AUTHORITY_PORT: await freePort(),
      METRICS_PORT: await freePort(),
    });
    const code = await second.exited;
    assert.notEqual(code, 0);
    assert.match(
      second.stderr,
      new RegExp(
        `cannot listen on 127\\.0\\.0\\.1:${ports.GATEWAY_PORT}: the address is already in use.*QUOTAD_GATEWAY_ADDR`,
      ),
    );
    assert.match(second.stderr, /GATEWAY_PORT=/);
    assert.doesNotMatch(second.stderr, /\n\s+at /, 'no stack trace');
  });
});
