import { timingSafeEqual } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { parse } from 'yaml';
import { sha256 } from '../keys/api-key.js';

export type AdminRole = 'admin' | 'read-only';

/** Who made an admin call: the name of the token it carried, and what that token may do. */
export interface AdminIdentity {
  name: string;
  role: AdminRole;
}

export interface AdminTokenEntry extends AdminIdentity {
  /** SHA-256 of the token; the token itself is never configured in a file. */
  sha256: Buffer;
}

/** The name the single QUOTAD_ADMIN_TOKEN goes by. */
export const ENV_ADMIN_TOKEN_NAME = 'admin';

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A tokens file that cannot be used, with where and why. */
export class AdminTokensError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdminTokensError';
  }
}

/**
 * Parses a QUOTAD_ADMIN_TOKENS_FILE: YAML (or JSON) `tokens:`, a list of `{name, role, sha256}`, where
 * `sha256` is the lowercase hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
 */
export function parseAdminTokens(text: string, path: string): AdminTokenEntry[] {
  let document: unknown;
  try {
    document = parse(text);
  } catch (error) {
    throw new AdminTokensError(`${path}: not YAML: ${(error as Error).message}`);
  }
  const list = (document as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list))
    throw new AdminTokensError(`${path}: tokens: expected a list of {name, role, sha256}`);
  const entries: AdminTokenEntry[] = [];
  list.forEach((item: unknown, i) => {
    const where = `${path}: tokens[${i}]`;
    const { name, role, sha256: hash, ...rest } = (item ?? {}) as Record<string, unknown>;
    const unknown = Object.keys(rest)[0];
    if (unknown !== undefined) throw new AdminTokensError(`${where}.${unknown}: unknown field`);
    if (typeof name !== 'string' || !NAME.test(name))
      throw new AdminTokensError(`${where}.name: 1 to 64 of [A-Za-z0-9._-]`);
    if (role !== 'admin' && role !== 'read-only')
      throw new AdminTokensError(`${where}.role: expected admin or read-only`);
    if (typeof hash !== 'string' || !SHA256_HEX.test(hash))
      throw new AdminTokensError(`${where}.sha256: expected the token's SHA-256, 64 lowercase hex digits`);
    if (entries.some((entry) => entry.name === name))
      throw new AdminTokensError(`${where}.name: '${name}' is named twice`);
    if (entries.some((entry) => entry.sha256.toString('hex') === hash))
      throw new AdminTokensError(
        `${where}.sha256: the same token as '${entries.find((e) => e.sha256.toString('hex') === hash)?.name}'`,
      );
    entries.push({ name, role, sha256: Buffer.from(hash, 'hex') });
  });
  return entries;
}

/**
 * The admin tokens in force: the file's entries plus QUOTAD_ADMIN_TOKEN (as `admin`, role admin). A call
 * is matched by the SHA-256 of its bearer token against every entry, each compared in constant time.
 */
export class AdminTokens {
  readonly #envToken: AdminTokenEntry | undefined;
  #entries: AdminTokenEntry[] = [];

  constructor(envToken: string | undefined, fileEntries: AdminTokenEntry[] = []) {
    this.#envToken =
      envToken === undefined
        ? undefined
        : { name: ENV_ADMIN_TOKEN_NAME, role: 'admin', sha256: sha256(envToken) };
    this.replace(fileEntries);
  }

  /** Puts a (re)loaded file's entries in force. */
  replace(fileEntries: AdminTokenEntry[]): void {
    if (this.#envToken && fileEntries.some((entry) => entry.name === ENV_ADMIN_TOKEN_NAME)) {
      throw new AdminTokensError(
        `the name '${ENV_ADMIN_TOKEN_NAME}' is QUOTAD_ADMIN_TOKEN's; give the file's token another name`,
      );
    }
    this.#entries = this.#envToken ? [this.#envToken, ...fileEntries] : [...fileEntries];
  }

  get size(): number {
    return this.#entries.length;
  }

  /** The identity whose token the call carries as `authorization: Bearer <token>`, if any. */
  identify(metadata: grpc.Metadata): AdminIdentity | undefined {
    const [header] = metadata.get('authorization');
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return undefined;
    const presented = sha256(header.slice('Bearer '.length));
    let found: AdminTokenEntry | undefined;
    // Every entry is compared, so the time taken does not say which one matched.
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.sha256) && !found) found = entry;
    }
    return found ? { name: found.name, role: found.role } : undefined;
  }
}

/**
 * Reads the tokens file now, then again whenever it changes (polled by stat, which follows the symlinks
 * Kubernetes swaps for a Secret). A bad edit is reported and the tokens in force stay.
 */
export function watchAdminTokensFile(
  path: string,
  tokens: AdminTokens,
  events: { loaded(count: number): void; rejected(error: Error): void },
  intervalMs = 1_000,
): { stop(): void } {
  const load = () => tokens.replace(parseAdminTokens(readFileSync(path, 'utf8'), path));
  load();
  const listener = () => {
    try {
      load();
      events.loaded(tokens.size);
    } catch (error) {
      events.rejected(error as Error);
    }
  };
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  return { stop: () => unwatchFile(path, listener) };
}
