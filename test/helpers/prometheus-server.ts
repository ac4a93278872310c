import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../../harness/eventually.js';
import { freePort } from '../../harness/redis-server.js';

/** A scrape job: its name (the `job` label) and the `host:port` whose `/metrics` it scrapes. */
export interface ScrapeJob {
  job: string;
  target: string;
}

/** One series of an instant query's answer. */
export interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A target as `/api/v1/targets` lists it. */
export interface ActiveTarget {
  labels: Record<string, string>;
  health: string;
  lastError: string;
}

/** A rule as `/api/v1/rules` lists it. */
export interface LoadedRule {
  name: string;
  type: 'alerting' | 'recording';
  health: string;
  lastError?: string;
}

interface ApiAnswer<T> {
  status: string;
  data: T;
  error?: string;
}

/** How often the helpers poll the API while they wait for something. */
const POLL_MS = 100;

/**
 * A real Prometheus server (Debian's /usr/bin/prometheus) for one test file: loopback only, a free port,
 * a temp TSDB, scraping and evaluating rules every second.
 */
export class PrometheusServer {
  readonly url: string;
  readonly #child: ChildProcess;
  readonly #dir: string;
  #output = '';
  #spawnError: Error | undefined;

  private constructor(child: ChildProcess, port: number, dir: string) {
    this.#child = child;
    this.url = `http://127.0.0.1:${port}`;
    this.#dir = dir;
    const keep = (chunk: Buffer) => (this.#output += chunk.toString());
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (error) => (this.#spawnError = error));
  }

  static async start(options: { jobs: ScrapeJob[]; ruleFiles: string[] }): Promise<PrometheusServer> {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-prometheus-'));
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: options.ruleFiles,
      scrape_configs: options.jobs.map(({ job, target }) => ({
        job_name: job,
        static_configs: [{ targets: [target] }],
      })),
    };
    // JSON is YAML.
    await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
    const port = await freePort();
    const child = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const server = new PrometheusServer(child, port, dir);
    await server.waitFor('Prometheus to be ready', async () => {
      const response = await fetch(`${server.url}/-/ready`).catch(() => undefined);
      return response?.ok === true ? true : undefined;
    });
    return server;
  }

  /** GETs an API path and returns its `data`, failing on an error answer. */
  async api<T>(path: string): Promise<T> {
    const response = await fetch(`${this.url}${path}`);
    const answer = (await response.json()) as ApiAnswer<T>;
    if (answer.status !== 'success') throw new Error(`${path}: ${answer.error ?? response.status}`);
    return answer.data;
  }

  /** An instant query's vector. */
  async query(expr: string): Promise<VectorSample[]> {
    const data = await this.api<{ resultType: string; result: VectorSample[] }>(
      `/api/v1/query?query=${encodeURIComponent(expr)}`,
    );
    if (data.resultType !== 'vector') throw new Error(`${expr}: a ${data.resultType}, not a vector`);
    return data.result;
  }

  async targets(): Promise<ActiveTarget[]> {
    return (await this.api<{ activeTargets: ActiveTarget[] }>('/api/v1/targets')).activeTargets;
  }

  async rules(): Promise<LoadedRule[]> {
    const data = await this.api<{ groups: { rules: LoadedRule[] }[] }>('/api/v1/rules');
    return data.groups.flatMap((group) => group.rules);
  }

  /**
   * Polls `probe` until it returns a value (not undefined) and resolves with it; fails after `timeoutMs`
   * with what Prometheus logged, or at once if Prometheus exits.
   */
  waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
    return eventually(
      async () => {
        if (this.#spawnError) {
          throw new Error(
            `prometheus did not start (is it installed? make tools): ${this.#spawnError.message}`,
          );
        }
        if (this.#child.exitCode !== null) {
          throw new Error(`prometheus exited (${this.#child.exitCode}) waiting for ${what}: ${this.#output}`);
        }
        return probe();
      },
      () => `timed out waiting for ${what}; prometheus said: ${this.#output}`,
      { timeoutMs, intervalMs: POLL_MS },
    );
  }

  async stop(): Promise<void> {
    if (!this.#spawnError && this.#child.exitCode === null && this.#child.signalCode === null) {
      const exited = once(this.#child, 'exit');
      this.#child.kill('SIGTERM');
      await exited;
    }
    await rm(this.#dir, { recursive: true, force: true });
  }
}
