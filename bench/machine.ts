/** The machine a benchmark ran on, for the report: CPU, memory, OS, versions, commit and load. */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import { REPO_ROOT } from '../harness/authority-process.js';

const require = createRequire(import.meta.url);
const versionOf = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version;
export const autocannonVersion = () => versionOf('autocannon');

function sh(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', cwd: REPO_ROOT }).trim();
  } catch {
    return 'unknown';
  }
}

export function machine(outputs: readonly string[]): Record<string, string | number> {
  const cpus = os.cpus();
  // What make bench writes does not count: the code measured is the commit's.
  const excluded = outputs.map((f) => `:(exclude)${f}`);
  const dirty = sh('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ...excluded]) !== '';
  return {
    cpu: `${cpus.length} × ${cpus[0]?.model ?? 'unknown'}`,
    nproc: sh('nproc', []),
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: sh('redis-server', ['--version']).replace(/^Redis server v=(\S+).*$/, '$1'),
    grpcJs: versionOf('@grpc/grpc-js'),
    protoLoader: versionOf('@grpc/proto-loader'),
    ioredis: versionOf('ioredis'),
    rateLimiterFlexible: versionOf('rate-limiter-flexible'),
    autocannon: autocannonVersion(),
    commit: `${sh('git', ['rev-parse', '--short', 'HEAD'])}${dirty ? ' (with uncommitted changes)' : ''}`,
    branch: sh('git', ['rev-parse', '--abbrev-ref', 'HEAD']),
    loadBefore: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
}
