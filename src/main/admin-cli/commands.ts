/** The admin CLI's commands: the flags each takes and the AdminService calls each makes. */
import { usageBody } from '../../api/report-bodies.js';
import type { ParseArgsConfig } from 'node:util';
import { parseDuration } from '../../core/duration.js';
import type { ApiKey__Output } from '../../gen/quotad/v1/ApiKey.js';
import type { AuditRecord__Output } from '../../gen/quotad/v1/AuditRecord.js';
import type { CreateKeyRequest } from '../../gen/quotad/v1/CreateKeyRequest.js';
import type { LimitOverride } from '../../gen/quotad/v1/LimitOverride.js';
import type { ListKeysRequest } from '../../gen/quotad/v1/ListKeysRequest.js';
import { usageError, type AdminCalls } from './client.js';
import {
  auditTable,
  eventTable,
  isoTime,
  keyFields,
  keyTable,
  secretBlock,
  signingBlock,
  usageTable,
} from './render.js';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** What a command hands back: the message for --json, and the text for a human. */
export interface Output {
  message: object;
  text: string;
}

export interface Command {
  /** Flags beyond those of every command. */
  options: Options;
  /** Whether the command takes a key id as its one positional argument. */
  takesId: boolean;
  /** Whether a signing mode (off, optional, required) follows the id. */
  takesMode?: boolean;
  run(api: AdminCalls, values: Values, id: string, mode?: string): Promise<Output>;
}

export const COMMON_OPTIONS = {
  authority: { type: 'string' },
  'authority-ca': { type: 'string' },
  'authority-cert': { type: 'string' },
  'authority-key': { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies Options;

export function stringFlag(values: Values, flag: string): string | undefined {
  const value = values[flag];
  return typeof value === 'string' ? value : undefined;
}

export function requiredFlag(values: Values, flag: string): string {
  const value = stringFlag(values, flag);
  if (value === undefined || value === '') throw usageError(`--${flag} is required`);
  return value;
}

export function listFlag(values: Values, flag: string): string[] {
  const value = values[flag];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

export function durationFlag(values: Values, flag: string): number | undefined {
  const text = stringFlag(values, flag);
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined)
    throw usageError(`--${flag}: expected a duration like 30s, 24h or 90d, got '${text}'`);
  return ms;
}

/** `NAME=VALUE` split at the first '='; the value goes to the authority as written. */
function limitOverride(text: string): LimitOverride {
  const at = text.indexOf('=');
  if (at <= 0 || at === text.length - 1) throw usageError(`--set: expected NAME=VALUE, got '${text}'`);
  return { name: text.slice(0, at), value: text.slice(at + 1) };
}

/** Every page of ListKeys, following next_page_token, so the list is never silently cut short. */
async function listAll(api: AdminCalls, request: ListKeysRequest): Promise<ApiKey__Output[]> {
  const keys: ApiKey__Output[] = [];
  let pageToken = '';
  do {
    const page = await api.listKeys({ ...request, pageToken });
    keys.push(...page.keys);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return keys;
}

function pageSize(values: Values): number {
  const text = stringFlag(values, 'page-size');
  if (text === undefined) return 0;
  if (!/^[1-9]\d{0,3}$/.test(text)) throw usageError(`--page-size: expected a whole number, got '${text}'`);
  return Number(text);
}

export const KEY_COMMANDS: Record<string, Command> = {
  create: {
    options: {
      name: { type: 'string' },
      owner: { type: 'string' },
      org: { type: 'string' },
      tier: { type: 'string' },
      'expires-in': { type: 'string' },
      signing: { type: 'string' },
    },
    takesId: false,
    async run(api, values) {
      const request: CreateKeyRequest = {
        name: requiredFlag(values, 'name'),
        owner: requiredFlag(values, 'owner'),
        org: requiredFlag(values, 'org'),
        tier: requiredFlag(values, 'tier'),
        expiresInMs: durationFlag(values, 'expires-in') ?? 0,
        signing: stringFlag(values, 'signing') ?? 'off',
      };
      const created = await api.createKey(request);
      const key = created.key ? keyFields(created.key) : '';
      return {
        message: created,
        text: secretBlock(created.secret) + signingBlock(created.signingSecret) + key,
      };
    },
  },
  list: {
    options: { org: { type: 'string' }, 'page-size': { type: 'string' } },
    takesId: false,
    async run(api, values) {
      const keys = await listAll(api, { org: stringFlag(values, 'org') ?? '', pageSize: pageSize(values) });
      return { message: { keys }, text: keyTable(keys) };
    },
  },
  show: {
    options: {},
    takesId: true,
    async run(api, _values, id) {
      const key = await api.getKey({ id });
      return { message: key, text: keyFields(key) };
    },
  },
  revoke: {
    options: {},
    takesId: true,
    async run(api, _values, id) {
      const key = await api.revokeKey({ id });
      return { message: key, text: keyFields(key) };
    },
  },
  rotate: {
    options: { overlap: { type: 'string' } },
    takesId: true,
    async run(api, values, id) {
      const overlapMs = durationFlag(values, 'overlap');
      // Unset and 0 differ: unset is the authority's default overlap, 0 stops the old secret at once.
      const rotated = await api.rotateKey(overlapMs === undefined ? { id } : { id, overlapMs });
      const until = rotated.previousSecretExpiresAtMs;
      const previous =
        until > Date.now()
          ? `The previous secret works until ${isoTime(until)}.\n\n`
          : 'The previous secret no longer works.\n\n';
      const key = rotated.key ? keyFields(rotated.key) : '';
      return {
        message: rotated,
        text: secretBlock(rotated.secret) + signingBlock(rotated.signingSecret) + previous + key,
      };
    },
  },
  signing: {
    options: {},
    takesId: true,
    takesMode: true,
    async run(api, _values, id, mode) {
      const answer = await api.setKeySigning({ id, signing: mode ?? '' });
      const key = answer.key ? keyFields(answer.key) : '';
      return { message: answer, text: signingBlock(answer.signingSecret) + key };
    },
  },
  limits: {
    options: { set: { type: 'string', multiple: true }, unset: { type: 'string', multiple: true } },
    takesId: true,
    async run(api, values, id) {
      const set = listFlag(values, 'set').map(limitOverride);
      const unset = listFlag(values, 'unset');
      // Neither flag: a question, not a change. Show the key with its overrides.
      const key =
        set.length === 0 && unset.length === 0
          ? await api.getKey({ id })
          : await api.setKeyLimits({ id, set, unset });
      return { message: key, text: keyFields(key) };
    },
  },
};

export const USAGE_COMMAND: Command = {
  options: {},
  takesId: true,
  async run(api, _values, id) {
    const usage = await api.getKeyUsage({ id });
    // The JSON is GET /v1/usage's shape, so a script reads one shape from either.
    const json = usage.usage ? usageBody(usage.usage, usage.usage.key ?? usage.key) : {};
    return { message: json, text: usageTable(usage) };
  },
};

export const EVENTS_COMMAND: Command = {
  options: { org: { type: 'string' }, type: { type: 'string' }, limit: { type: 'string' } },
  takesId: false,
  async run(api, values) {
    const text = stringFlag(values, 'limit') ?? '50';
    if (!/^[1-9]\d{0,3}$/.test(text)) throw usageError(`--limit: expected a whole number, got '${text}'`);
    const { events } = await api.listEvents({
      org: stringFlag(values, 'org') ?? '',
      type: stringFlag(values, 'type') ?? '',
      limit: Number(text),
    });
    return { message: { events }, text: eventTable(events) };
  },
};

/** `--since`: a duration back from now (24h), or an ISO 8601 time. */
function sinceFlag(values: Values): number {
  const text = stringFlag(values, 'since');
  if (text === undefined) return 0;
  const ago = parseDuration(text);
  if (ago !== undefined) return Date.now() - ago;
  const at = Date.parse(text);
  if (Number.isNaN(at))
    throw usageError(
      `--since: expected a duration like 24h or a time like 2026-12-01T00:00:00Z, got '${text}'`,
    );
  return at;
}

export const AUDIT_COMMAND: Command = {
  options: {
    key: { type: 'string' },
    actor: { type: 'string' },
    action: { type: 'string' },
    since: { type: 'string' },
    limit: { type: 'string' },
  },
  takesId: false,
  async run(api, values) {
    const limitText = stringFlag(values, 'limit') ?? '100';
    if (!/^[1-9]\d{0,5}$/.test(limitText))
      throw usageError(`--limit: expected a whole number, got '${limitText}'`);
    const limit = Number(limitText);
    const filter = {
      keyId: stringFlag(values, 'key') ?? '',
      actor: stringFlag(values, 'actor') ?? '',
      action: stringFlag(values, 'action') ?? '',
      sinceMs: sinceFlag(values),
    };
    const records: AuditRecord__Output[] = [];
    let pageToken = '';
    do {
      const page = await api.listAuditRecords({
        ...filter,
        pageSize: Math.min(1_000, limit - records.length),
        pageToken,
      });
      records.push(...page.records);
      pageToken = page.nextPageToken;
    } while (pageToken && records.length < limit);
    return { message: { records }, text: auditTable(records) };
  },
};

/** `quotad store confirm-reset`: the store as it is now is the one to serve from (after a reset). */
export const STORE_COMMANDS: Record<string, Command> = {
  'confirm-reset': {
    options: {},
    takesId: false,
    async run(api) {
      const answer = await api.confirmStoreReset({});
      const text =
        answer.store === 'memory'
          ? 'The authority runs on its in-process store: it has no store marker, nothing to confirm.\n'
          : answer.wasPending
            ? 'Store reset confirmed: every authority serves from the store as it is now (keys, budgets and reservations from before it was emptied or replaced are gone).\n'
            : 'No store reset was awaiting confirmation; the store marker was rewritten as confirmed.\n';
      return { message: answer, text };
    },
  },
};
