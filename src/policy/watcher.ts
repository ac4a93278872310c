import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Policy } from '../core/policy.js';
import { parsePolicy, readPolicyText } from './load.js';
import { PolicyError } from './policy-error.js';

export interface PolicyReloaded {
  policy: Policy;
  /** SHA-256 (hex) of the file text now in force, to log and compare across replicas. */
  sha256: string;
}

export interface PolicyWatcherEvents {
  /** A changed, valid file replaced the current policy. */
  reloaded: [PolicyReloaded];
  /** A changed file was invalid or unreadable; the last good policy stays in force. */
  rejected: [PolicyError];
  /** The directory can no longer be watched (e.g. it was removed); only `reload()` picks up edits now. */
  watchFailed: [Error];
}

export type ReloadOutcome = 'reloaded' | 'unchanged' | 'rejected';

export interface PolicyWatcherOptions {
  /** How long the directory must stay quiet before the file is re-read; editors write in bursts. */
  debounceMs?: number;
}

function sha256Of(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Keeps the policy file's last good version in force and swaps in valid edits. Watches the directory,
 * not the file: editors and Kubernetes ConfigMaps replace files by rename, which a file watch misses.
 */
export class PolicyWatcher extends EventEmitter<PolicyWatcherEvents> {
  /** The file as given, which names it in errors; reads use the resolved path. */
  readonly path: string;
  readonly #resolvedPath: string;
  readonly #fileName: string;
  readonly #debounceMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #current: PolicyReloaded | undefined;
  // The text last read, valid or not, so an unchanged bad file is not rejected again on every event.
  #lastSeenSha: string | undefined;
  // Reads run one after another, so an older read never overwrites a newer one.
  #queue: Promise<unknown> = Promise.resolve();
  #started = false;
  #stopped = false;

  constructor(path: string, options: PolicyWatcherOptions = {}) {
    super();
    this.path = path;
    this.#resolvedPath = resolve(path);
    this.#fileName = basename(this.#resolvedPath);
    this.#debounceMs = options.debounceMs ?? 100;
  }

  /** The policy in force. */
  get current(): Policy {
    if (!this.#current) throw new Error('PolicyWatcher.current read before start() succeeded');
    return this.#current.policy;
  }

  /** SHA-256 (hex) of the file text in force. */
  get sha256(): string {
    if (!this.#current) throw new Error('PolicyWatcher.sha256 read before start() succeeded');
    return this.#current.sha256;
  }

  /** Loads the file and starts watching; throws PolicyError when the file is invalid, so a bad policy never serves. */
  async start(): Promise<Policy> {
    if (this.#started) throw new Error('a PolicyWatcher starts only once');
    this.#started = true;
    // Watch before the first read, so an edit landing during that read is not missed.
    this.#watcher = this.#watchDirectory();
    const first = this.#enqueue(async () => {
      const text = await readPolicyText(this.#resolvedPath, this.path);
      const sha256 = sha256Of(text);
      this.#current = { policy: parsePolicy(text, this.path), sha256 };
      this.#lastSeenSha = sha256;
    });
    try {
      await first;
    } catch (error) {
      await this.stop();
      throw error;
    }
    return this.current;
  }

  /** Re-reads the file now (SIGHUP, tests). An unchanged bad file is rejected again, since it was asked for. */
  reload(): Promise<ReloadOutcome> {
    return this.#enqueue(() => this.#readAndApply(true));
  }

  /** Stops watching and waits for a read in progress; no timer or watch handle is left behind. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#closeWatcher();
    await this.#queue.catch(() => undefined);
  }

  #onDirectoryEvent(fileName: string | null): void {
    if (this.#stopped) return;
    // `..data` and friends are how Kubernetes swaps a ConfigMap's files at once.
    if (fileName !== null && fileName !== this.#fileName && !fileName.startsWith('..')) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // Not caught: only a throwing listener or a bug can reject here, and neither should pass silently.
      void this.#enqueue(() => this.#readAndApply(false));
    }, this.#debounceMs);
  }

  async #readAndApply(forced: boolean): Promise<ReloadOutcome> {
    if (this.#stopped && !forced) return 'unchanged';
    let text: string;
    try {
      text = await readPolicyText(this.#resolvedPath, this.path);
    } catch (error) {
      this.#lastSeenSha = undefined;
      return this.#reject(error, forced);
    }
    const sha256 = sha256Of(text);
    if (!forced && sha256 === this.#lastSeenSha) return 'unchanged';
    this.#lastSeenSha = sha256;
    if (sha256 === this.#current?.sha256) return 'unchanged';
    let policy: Policy;
    try {
      policy = parsePolicy(text, this.path);
    } catch (error) {
      return this.#reject(error, forced);
    }
    if (this.#stopped && !forced) return 'unchanged';
    this.#current = { policy, sha256 };
    this.emit('reloaded', { policy, sha256 });
    return 'reloaded';
  }

  #reject(error: unknown, forced: boolean): ReloadOutcome {
    if (!(error instanceof PolicyError)) throw error;
    if (!this.#stopped || forced) this.emit('rejected', error);
    return 'rejected';
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #watchDirectory(): FSWatcher {
    const directory = dirname(this.#resolvedPath);
    let watcher: FSWatcher;
    try {
      watcher = watch(directory, (_event, fileName) => this.#onDirectoryEvent(fileName));
    } catch (cause) {
      const reason = `cannot watch ${directory}: ${cause instanceof Error ? cause.message : String(cause)}`;
      throw new PolicyError([{ source: this.path, line: undefined, column: undefined, path: '', reason }], {
        cause,
      });
    }
    watcher.on('error', (error) => {
      this.#closeWatcher();
      this.emit('watchFailed', error);
    });
    return watcher;
  }

  #closeWatcher(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
