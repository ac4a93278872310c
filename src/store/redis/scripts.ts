import { readFileSync } from 'node:fs';
import type { RedisConnection } from './connection.js';

const INCLUDE = /^--- @include "([\w/-]+)"\s*$/m;

/** Reads a script from lua/, splicing in its `--- @include "name"` pieces (each once). */
export function readScript(name: string): string {
  const read = (file: string) => readFileSync(new URL(`./lua/${file}.lua`, import.meta.url), 'utf8');
  let source = read(name);
  for (let match = INCLUDE.exec(source); match; match = INCLUDE.exec(source)) {
    // A function, not a string: `$'` or `$&` in Lua (a pattern's anchor before a quote) is no substitution.
    const piece = read(match[1] as string);
    source = source.replace(match[0], () => piece);
  }
  return source;
}

type ScriptArg = string | number;

/** The decision scripts as commands on an ioredis client (EVALSHA, falling back to EVAL on NOSCRIPT). */
export interface QuotaScripts {
  quotadReserve(numKeys: number, ...keysAndArgs: ScriptArg[]): Promise<number[]>;
  quotadSettle(numKeys: number, ...keysAndArgs: ScriptArg[]): Promise<number[]>;
}

/** The API key registry's scripts, likewise. */
export interface KeyScripts {
  quotadPutKey(numKeys: number, ...keysAndArgs: ScriptArg[]): Promise<[number, number]>;
  quotadFindKey(secretKey: string, recordPrefix: string): Promise<[string, string, string] | null>;
  quotadListKeys(idsKey: string, after: string, limit: number, recordPrefix: string): Promise<string[]>;
  quotadTouchKey(recordKey: string, usedMs: number): Promise<number>;
  quotadConfirmChanges(registryKey: string, channel: string, token: string): Promise<number>;
  quotadCheckMarker(
    marker: string,
    pending: string,
    confirmed: string,
    known: string,
    fresh: string,
    ttlMs: number,
    refuse: 0 | 1,
  ): Promise<[number, string, number, string]>;
  quotadConfirmStore(
    marker: string,
    pending: string,
    confirmed: string,
    fresh: string,
    ttlMs: number,
  ): Promise<[number, string]>;
}

/** Defines the decision scripts on a client; the key count varies with the number of limits, so it is passed per call. */
export function defineQuotaScripts<R extends RedisConnection>(redis: R): R & QuotaScripts {
  redis.defineCommand('quotadReserve', { lua: readScript('reserve') });
  redis.defineCommand('quotadSettle', { lua: readScript('settle') });
  return redis as R & QuotaScripts;
}

/** Defines the key registry's scripts on a client; put-key's key count varies with the secrets. */
export function defineKeyScripts<R extends RedisConnection>(redis: R): R & KeyScripts {
  redis.defineCommand('quotadPutKey', { lua: readScript('put-key') });
  redis.defineCommand('quotadFindKey', { lua: readScript('find-key'), numberOfKeys: 1 });
  redis.defineCommand('quotadListKeys', { lua: readScript('list-keys'), numberOfKeys: 1 });
  redis.defineCommand('quotadTouchKey', { lua: readScript('touch-key'), numberOfKeys: 1 });
  redis.defineCommand('quotadConfirmChanges', { lua: readScript('confirm-changes'), numberOfKeys: 1 });
  redis.defineCommand('quotadCheckMarker', { lua: readScript('check-marker'), numberOfKeys: 3 });
  redis.defineCommand('quotadConfirmStore', { lua: readScript('confirm-store'), numberOfKeys: 3 });
  return redis as R & KeyScripts;
}
