import type { HostPort, Setting } from './config.js';

/**
 * A listening address the process could not take: in use by another process, or not allowed. Reported
 * as one line naming the address and the setting that moves it, never a stack trace.
 */
export class ListenError extends Error {
  constructor(
    readonly address: string,
    readonly setting: Setting,
    reason: string,
  ) {
    super(
      `cannot listen on ${address}: ${reason}. Choose another address with --${setting.flag} or ${setting.env} (e.g. ${setting.env}=127.0.0.1:0 for any free port).`,
    );
    this.name = 'ListenError';
  }
}

/** What the OS said, from a Node listen error (`code`) or grpc-js's bind message, which carries it. */
function reasonOf(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException).code;
  const text = error instanceof Error ? `${code ?? ''} ${error.message}` : String(error);
  if (text.includes('EADDRINUSE')) return 'the address is already in use (is another quotad running?)';
  if (text.includes('EACCES')) return 'permission denied (ports below 1024 need privileges)';
  if (text.includes('EADDRNOTAVAIL')) return 'no interface of this machine has that address';
  return undefined;
}

/** Runs `listen`, turning a refused address into a ListenError that names `setting`. */
export async function listenOn<T>(setting: Setting, address: HostPort, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    const reason = reasonOf(error);
    if (reason === undefined) throw error;
    const host = address.host.includes(':') ? `[${address.host}]` : address.host;
    throw new ListenError(`${host}:${address.port}`, setting, reason);
  }
}
