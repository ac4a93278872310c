import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI, REPO_ROOT } from '../../harness/authority-process.js';

const execFileAsync = promisify(execFile);

/** How a CLI run ended: its exit code and everything it printed. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `quotad <args>` as a child process with `env` on top of a clean environment (no QUOTAD_* leaks in
 * from the shell running the tests). A non-zero exit is an answer to check, not a failure to throw.
 */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw error;
    return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}
