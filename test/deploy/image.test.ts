import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../harness/authority-process.js';
import {
  dockerIgnores,
  envOf,
  lastOf,
  parseCopy,
  parseDockerfile,
  type Stage,
} from '../helpers/dockerfile.js';
import { freePort } from '../../harness/redis-server.js';

const execFileAsync = promisify(execFile);

const DOCKERFILE = join(REPO_ROOT, 'deploy', 'Dockerfile');
const stages = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
const runtime = stages.at(-1) as Stage;
const PACKAGE = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };

function stageNamed(name: string): Stage {
  const stage = stages.find((each) => each.name === name);
  assert.ok(stage, `a stage named ${name}`);
  return stage;
}

function copies(stage: Stage) {
  return stage.instructions.filter(({ keyword }) => keyword === 'COPY').map(({ args }) => parseCopy(args));
}

/** The `npm ci …` commands of a stage's RUN instructions, as words. */
function npmCiCommands(stage: Stage): string[][] {
  return stage.instructions
    .filter(({ keyword }) => keyword === 'RUN')
    .flatMap(({ args }) => args.split('&&').map((part) => part.trim().split(/\s+/)))
    .filter((words) => words[0] === 'npm' && words[1] === 'ci');
}

describe('deploy/Dockerfile', () => {
  test('builds in one stage and runs from another, both on the same pinned node:20 bookworm-slim', () => {
    assert.ok(stages.length >= 2);
    const images = new Set(stages.map((stage) => stage.from));
    assert.equal(images.size, 1);
    assert.match([...images][0] as string, /^node:20\.\d+\.\d+-bookworm-slim$/);
    const build = stageNamed('build');
    assert.ok(
      build.instructions.some(({ keyword, args }) => keyword === 'RUN' && /\bnpm run build\b/.test(args)),
      'the build stage compiles',
    );
    assert.notEqual(runtime, build);
  });

  test('the runtime runs as a numeric, non-root user and group', () => {
    const user = lastOf(runtime, 'USER');
    assert.match(user ?? '', /^[1-9]\d*:[1-9]\d*$/);
  });

  test('the runtime is production only: NODE_ENV, npm ci --omit=dev, the CLI as entrypoint, serve by default', () => {
    assert.equal(envOf(runtime).NODE_ENV, 'production');
    const installs = npmCiCommands(runtime);
    assert.equal(installs.length, 1);
    assert.ok(installs[0]?.includes('--omit=dev'));
    assert.deepEqual(JSON.parse(lastOf(runtime, 'ENTRYPOINT') ?? 'null'), [
      'node',
      '/app/dist/src/main/cli.js',
    ]);
    assert.deepEqual(JSON.parse(lastOf(runtime, 'CMD') ?? 'null'), ['serve']);
    assert.equal(lastOf(runtime, 'WORKDIR'), '/app');
  });

  test('.dockerignore keeps out nothing the Dockerfile copies from the build context', () => {
    const patterns = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    const sources = stages
      .flatMap((stage) => copies(stage).filter((copy) => !copy.from))
      .flatMap((copy) => copy.sources);
    assert.ok(sources.length > 0);
    assert.deepEqual(
      sources.filter((source) => dockerIgnores(patterns, source)),
      [],
    );
    assert.ok(
      dockerIgnores(patterns, 'node_modules/x') && dockerIgnores(patterns, '.env'),
      'the check can fail',
    );
  });

  test("--ignore-scripts loses nothing: the only production install script is protobufjs's version warning", () => {
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }>;
    };
    const withScripts = Object.entries(lock.packages)
      .filter(([, entry]) => entry.hasInstallScript && !entry.dev)
      .map(([path]) => path);
    assert.deepEqual(withScripts, ['node_modules/protobufjs']);
    assert.ok(npmCiCommands(runtime)[0]?.includes('--ignore-scripts'));
  });

  test('the compiled service writes no file unless told to, so a read-only root filesystem holds', () => {
    // Writes only to --request-log, a path the operator names (on a volume they mount); unset by default.
    const toldTo = new Set([join(REPO_ROOT, 'dist', 'src', 'gateway', 'request-log.js')]);
    const writes =
      /\b(writeFile|writeFileSync|appendFile|appendFileSync|createWriteStream|mkdir|mkdirSync|mkdtemp|rename|renameSync|copyFile|cpSync|rmSync|unlink|unlinkSync|truncate)\(/;
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.js') && !toldTo.has(path) && writes.test(readFileSync(path, 'utf8')))
          offenders.push(path);
      }
    };
    walk(join(REPO_ROOT, 'dist', 'src'));
    assert.deepEqual(offenders, []);
  });
});

/** A process started from the image's file set: its output as it comes, and a way to wait for a line. */
class ImageProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly #closed: Promise<unknown>;
  #listeners: (() => void)[] = [];

  /** As `docker run image [args]`: the ENTRYPOINT, then `args`, or CMD without them. */
  constructor(root: string, args: string[], env: Record<string, string>) {
    const [program, ...entrypoint] = JSON.parse(lastOf(runtime, 'ENTRYPOINT') ?? '[]') as string[];
    assert.equal(program, 'node');
    const command = args.length > 0 ? args : (JSON.parse(lastOf(runtime, 'CMD') ?? '[]') as string[]);
    const inRoot = (word: string) => (posix.isAbsolute(word) ? join(root, word) : word);
    this.child = spawn(process.execPath, [...entrypoint.map(inRoot), ...command], {
      cwd: join(root, lastOf(runtime, 'WORKDIR') ?? '/'),
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const changed = () => this.#listeners.forEach((listener) => listener());
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString();
      changed();
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      changed();
    });
    this.#closed = once(this.child, 'close');
    this.#closed.then(changed, changed);
  }

  /** Resolves with the first match of `pattern` in stdout or stderr; rejects if the process ends first. */
  until(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(this[stream]);
        if (match) {
          this.#listeners = this.#listeners.filter((listener) => listener !== check);
          resolve(match);
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          reject(new Error(`exited before ${pattern}: ${this.stderr}${this.stdout}`));
        }
      };
      this.#listeners.push(check);
      check();
    });
  }

  /** The exit code, once the process has ended by itself. */
  async exit(): Promise<number | null> {
    await this.#closed;
    return this.child.exitCode;
  }

  /** SIGTERM, then the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.#closed;
    return this.child.exitCode;
  }
}

/** Starts a process from the image's files; it is stopped when the test ends, passed or failed. */
function launch(t: TestContext, root: string, args: string[], env: Record<string, string>): ImageProcess {
  const started = new ImageProcess(root, args, env);
  t.after(() => started.stop());
  return started;
}

/**
 * The runtime stage's file system, rebuilt without Docker: /app is `<root>/app`. Context COPYs come from
 * the checkout; `COPY --from=build /app/…` from the checkout's own build output (the build stage runs the
 * same `npm run build` in the same layout, WORKDIR /app); the stage's `npm ci` runs as written, from the
 * npm cache when it can. Everything else (base image, USER) the tests above read from the Dockerfile.
 */
async function reproduceRuntimeStage(root: string): Promise<void> {
  const workdir = lastOf(runtime, 'WORKDIR') ?? '/';
  const inRoot = (path: string) => join(root, posix.isAbsolute(path) ? path : posix.join(workdir, path));
  mkdirSync(inRoot(workdir), { recursive: true });
  const build = stageNamed('build');
  const buildWorkdir = lastOf(build, 'WORKDIR') ?? '/';
  for (const instruction of runtime.instructions) {
    if (instruction.keyword === 'COPY') {
      const copy = parseCopy(instruction.args);
      assert.ok(copy.from === undefined || copy.from === 'build', `COPY --from=${copy.from}`);
      const toDirectory = copy.destination.endsWith('/') || copy.sources.length > 1;
      for (const source of copy.sources) {
        const from = copy.from
          ? join(REPO_ROOT, posix.relative(buildWorkdir, source))
          : join(REPO_ROOT, source);
        const isDirectory = statSync(from).isDirectory();
        const to =
          isDirectory || !toDirectory
            ? inRoot(copy.destination)
            : join(inRoot(copy.destination), basename(from));
        mkdirSync(isDirectory ? to : dirname(to), { recursive: true });
        cpSync(from, to, { recursive: true });
      }
    } else if (instruction.keyword === 'RUN') {
      for (const part of instruction.args.split('&&').map((each) => each.trim())) {
        const words = part.split(/\s+/);
        if (part === 'npm cache clean --force') continue; // would empty this machine's cache, not an image layer's
        assert.ok(words[0] === 'npm' && words[1] === 'ci', `the test knows how to reproduce: ${part}`);
        await execFileAsync('npm', [...words.slice(1), '--prefer-offline'], {
          cwd: inRoot(workdir),
          timeout: 120_000,
        });
      }
    }
  }
}

describe("the runtime stage's files alone", () => {
  const root = mkdtempSync(join(tmpdir(), 'quotad-image-'));
  const env = envOf(runtime);
  before(() => reproduceRuntimeStage(root));
  after(() => rmSync(root, { recursive: true, force: true }));

  test('print the version', async (t) => {
    const run = launch(t, root, ['version'], env);
    assert.equal(await run.exit(), 0);
    assert.equal(run.stdout, `${PACKAGE.version}\n`);
  });

  test('list the settings of serve', async (t) => {
    const run = launch(t, root, ['serve', '--help'], env);
    assert.equal(await run.exit(), 0);
    assert.match(run.stdout, /QUOTAD_POLICY/);
  });

  test('run the authority on Redis: the Redis client and its Lua scripts load (Redis itself unreachable)', async (t) => {
    const authority = launch(t, root, ['serve'], {
      ...env,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      QUOTAD_GRPC_ADDR: '127.0.0.1:0',
      QUOTAD_METRICS_ADDR: '127.0.0.1:0',
      QUOTAD_ADMIN_TOKEN: 'image-test-admin-token',
    });
    const [, metricsPort] = await authority.until(
      'stdout',
      /"metrics":"127\.0\.0\.1:(\d+)","store":"redis"[^\n]*"quotad authority serving"/,
    );
    // Answered after the serving line, so the process is past start and handles SIGTERM.
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
    assert.equal(await authority.stop(), 0);
  });

  test('serve a chat completion: shipped policy, demo key, gateway, demo upstream', async (t) => {
    const authority = launch(t, root, [], {
      ...env,
      QUOTAD_GRPC_ADDR: '127.0.0.1:0',
      QUOTAD_METRICS_ADDR: '127.0.0.1:0',
      QUOTAD_DEMO_KEY: 'on',
    });
    const [, grpcPort] = await authority.until(
      'stdout',
      /"grpc":"127\.0\.0\.1:(\d+)"[^\n]*"quotad authority serving/,
    );
    const [key] = await authority.until('stderr', /qd_demo_[0-9A-Za-z]{38}/);
    const gateway = launch(t, root, ['gateway'], {
      ...env,
      QUOTAD_AUTHORITY: `127.0.0.1:${grpcPort}`,
      QUOTAD_GATEWAY_ADDR: '127.0.0.1:0',
      QUOTAD_DEMO_UPSTREAM: 'on',
      // The first call also opens the connection; on a loaded machine that outlasts the 100ms default.
      QUOTAD_AUTHORITY_TIMEOUT: '10s',
    });
    const [, httpPort] = await gateway.until(
      'stdout',
      /"address":"127\.0\.0\.1:(\d+)"[^\n]*"quotad gateway serving/,
    );
    const response = await fetch(`http://127.0.0.1:${httpPort}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Hello' }],
        max_tokens: 20,
      }),
    });
    const body = await response.text();
    assert.equal(response.status, 200, body);
    assert.match(body, /quotad demo upstream/);
    assert.equal(await gateway.stop(), 0);
    assert.equal(await authority.stop(), 0);
  });
});
