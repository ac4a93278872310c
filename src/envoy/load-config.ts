import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EnvoyConfig, EnvoyDomain } from './config.js';
import type { EnvoyConfigProblem } from './config-error.js';
import { EnvoyConfigError } from './config-error.js';
import { parseEnvoyConfigFile } from './parse-config.js';

/** One configuration file's name (as errors show it) and text. */
export interface EnvoyConfigFile {
  readonly name: string;
  readonly text: string;
}

const CONFIG_FILE = /\.ya?ml$/i;

/** Whether a directory entry is a configuration file: `*.yaml` or `*.yml`, not hidden (editors' and Kubernetes' own files are). */
export function isEnvoyConfigFileName(fileName: string): boolean {
  return CONFIG_FILE.test(fileName) && !fileName.startsWith('.');
}

/**
 * Builds the configuration in force from its files: every file parsed, every domain defined once. Throws
 * EnvoyConfigError listing every problem of every file, so one reload reports all there is to fix.
 */
export function buildEnvoyConfig(files: readonly EnvoyConfigFile[]): EnvoyConfig {
  const problems: EnvoyConfigProblem[] = [];
  const domains = new Map<string, EnvoyDomain>();
  const ordered = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const file of ordered) {
    let domain: EnvoyDomain;
    try {
      domain = parseEnvoyConfigFile(file.text, file.name);
    } catch (error) {
      if (!(error instanceof EnvoyConfigError)) throw error;
      problems.push(...error.problems);
      continue;
    }
    const first = domains.get(domain.name);
    if (first) {
      problems.push({
        source: domain.place.source,
        line: domain.place.line,
        column: domain.place.column,
        path: 'domain',
        reason: `duplicate domain ${JSON.stringify(domain.name)}: ${first.place.source}:${first.place.line} defines it already`,
      });
      continue;
    }
    domains.set(domain.name, domain);
  }
  const [firstProblem, ...rest] = problems;
  if (firstProblem) throw new EnvoyConfigError([firstProblem, ...rest]);
  return { domains };
}

function unreadable(source: string, what: string, cause: unknown): EnvoyConfigError {
  const reason = `cannot read the ${what}: ${cause instanceof Error ? cause.message : String(cause)}`;
  return new EnvoyConfigError([{ source, line: undefined, column: undefined, path: '', reason }], { cause });
}

/**
 * The configuration files of a directory, by name. Not recursive; symbolic links are followed, so a
 * Kubernetes ConfigMap's mount reads as its files. An unreadable directory or file is an EnvoyConfigError.
 */
export async function readEnvoyConfigDirectory(directory: string): Promise<EnvoyConfigFile[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (cause) {
    throw unreadable(directory, 'Envoy configuration directory', cause);
  }
  const files: EnvoyConfigFile[] = [];
  for (const fileName of names.filter(isEnvoyConfigFileName).sort()) {
    const name = join(directory, fileName);
    try {
      if (!(await stat(name)).isFile()) continue;
      files.push({ name, text: await readFile(name, 'utf8') });
    } catch (cause) {
      throw unreadable(name, 'Envoy configuration file', cause);
    }
  }
  return files;
}

/** Reads and builds a directory's configuration; every failure is an EnvoyConfigError. */
export async function loadEnvoyConfigDirectory(directory: string): Promise<EnvoyConfig> {
  return buildEnvoyConfig(await readEnvoyConfigDirectory(directory));
}
