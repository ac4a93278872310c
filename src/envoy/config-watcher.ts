import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename } from 'node:path';
import type { EnvoyConfig } from './config.js';
import { EnvoyConfigError } from './config-error.js';
import type { EnvoyConfigFile } from './load-config.js';
import { buildEnvoyConfig, isEnvoyConfigFileName, readEnvoyConfigDirectory } from './load-config.js';

export interface EnvoyConfigReloaded {
  config: EnvoyConfig;
  /** SHA-256 (hex) over the names and texts of the files now in force, to log and compare across replicas. */
  sha256: string;
}

export interface EnvoyConfigWatcherEvents {
  /** The directory changed and every file in it is valid: this configuration is now in force. */
  reloaded: [EnvoyConfigReloaded];
  /** The directory changed but a file is invalid or unreadable; the last good configuration stays in force. */
  rejected: [EnvoyConfigError];
  /** The directory can no longer be watched (e.g. it was removed); only `reload()` picks up edits now. */
  watchFailed: [Error];
}

export type EnvoyConfigReloadOutcome = 'reloaded' | 'unchanged' | 'rejected';

export interface EnvoyConfigWatcherOptions {
  /** How long the directory must stay quiet before it is re-read; editors and ConfigMap swaps write in bursts. */
  debounceMs?: number;
}

function sha256Of(files: readonly EnvoyConfigFile[]): string {
  const hash = createHash('sha256');
  for (const file of files) hash.update(`${basename(file.name)}\0${file.text}\0`);
  return hash.digest('hex');
}

/**
 * Keeps the last good configuration of a directory of envoyproxy/ratelimit files in force, and swaps in a
 * changed directory when every file in it is valid. Watches the directory, so edits, new files, removed files
 * and Kubernetes ConfigMap swaps (`..data`) are all seen.
 */
export class EnvoyConfigWatcher extends EventEmitter<EnvoyConfigWatcherEvents> {
  readonly directory: string;
  readonly #debounceMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #current: EnvoyConfigReloaded | undefined;
  // The files last read, valid or not, so an unchanged bad directory is not rejected again on every event.
  #lastSeenSha: string | undefined;
  // Reads run one after another, so an older read never overwrites a newer one.
  #queue: Promise<unknown> = Promise.resolve();
  #started = false;
  #stopped = false;

  constructor(directory: string, options: EnvoyConfigWatcherOptions = {}) {
    super();
    this.directory = directory;
    this.#debounceMs = options.debounceMs ?? 100;
  }

  /** The configuration in force. */
  get current(): EnvoyConfig {
    if (!this.#current) throw new Error('EnvoyConfigWatcher.current read before start() succeeded');
    return this.#current.config;
  }

  /** SHA-256 (hex) of the files in force. */
  get sha256(): string {
    if (!this.#current) throw new Error('EnvoyConfigWatcher.sha256 read before start() succeeded');
    return this.#current.sha256;
  }

  /** Loads the directory and starts watching it; throws EnvoyConfigError when a file is invalid, so a bad configuration never serves. */
  async start(): Promise<EnvoyConfig> {
    if (this.#started) throw new Error('an EnvoyConfigWatcher starts only once');
    this.#started = true;
    try {
      // Watch before the first read, so an edit landing during that read is not missed.
      this.#watcher = this.#watchDirectory();
      await this.#enqueue(async () => {
        const files = await readEnvoyConfigDirectory(this.directory);
        const sha256 = sha256Of(files);
        this.#current = { config: buildEnvoyConfig(files), sha256 };
        this.#lastSeenSha = sha256;
      });
    } catch (error) {
      await this.stop();
      throw error;
    }
    return this.current;
  }

  /** Re-reads the directory now (SIGHUP, tests). An unchanged bad directory is rejected again, since it was asked for. */
  reload(): Promise<EnvoyConfigReloadOutcome> {
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
    if (fileName !== null && !isEnvoyConfigFileName(fileName) && !fileName.startsWith('..')) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // Not caught: only a throwing listener or a bug can reject here, and neither should pass silently.
      void this.#enqueue(() => this.#readAndApply(false));
    }, this.#debounceMs);
  }

  async #readAndApply(forced: boolean): Promise<EnvoyConfigReloadOutcome> {
    if (this.#stopped && !forced) return 'unchanged';
    let files: EnvoyConfigFile[];
    try {
      files = await readEnvoyConfigDirectory(this.directory);
    } catch (error) {
      this.#lastSeenSha = undefined;
      return this.#reject(error, forced);
    }
    const sha256 = sha256Of(files);
    if (!forced && sha256 === this.#lastSeenSha) return 'unchanged';
    this.#lastSeenSha = sha256;
    if (sha256 === this.#current?.sha256) return 'unchanged';
    let config: EnvoyConfig;
    try {
      config = buildEnvoyConfig(files);
    } catch (error) {
      return this.#reject(error, forced);
    }
    if (this.#stopped && !forced) return 'unchanged';
    this.#current = { config, sha256 };
    this.emit('reloaded', { config, sha256 });
    return 'reloaded';
  }

  #reject(error: unknown, forced: boolean): EnvoyConfigReloadOutcome {
    if (!(error instanceof EnvoyConfigError)) throw error;
    if (!this.#stopped || forced) this.emit('rejected', error);
    return 'rejected';
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #watchDirectory(): FSWatcher {
    let watcher: FSWatcher;
    try {
      watcher = watch(this.directory, (_event, fileName) => this.#onDirectoryEvent(fileName));
    } catch (cause) {
      const reason = `cannot watch the Envoy configuration directory: ${cause instanceof Error ? cause.message : String(cause)}`;
      throw new EnvoyConfigError(
        [{ source: this.directory, line: undefined, column: undefined, path: '', reason }],
        {
          cause,
        },
      );
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
