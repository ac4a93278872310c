import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadQuotaPackage } from '../authority/proto.js';
import { formatDuration, parseDuration } from '../core/duration.js';
import { formatUsd } from '../core/money.js';
import type { ApiKey__Output } from '../gen/quotad/v1/ApiKey.js';
import type { CreateKeyRequest } from '../gen/quotad/v1/CreateKeyRequest.js';
import type { CreateKeyResponse__Output } from '../gen/quotad/v1/CreateKeyResponse.js';
import type { GetKeyRequest } from '../gen/quotad/v1/GetKeyRequest.js';
import type { GetKeyUsageRequest } from '../gen/quotad/v1/GetKeyUsageRequest.js';
import type { GetKeyUsageResponse__Output } from '../gen/quotad/v1/GetKeyUsageResponse.js';
import type { Event__Output } from '../gen/quotad/v1/Event.js';
import type { LimitOverride } from '../gen/quotad/v1/LimitOverride.js';
import type { ListEventsRequest } from '../gen/quotad/v1/ListEventsRequest.js';
import type { ListEventsResponse__Output } from '../gen/quotad/v1/ListEventsResponse.js';
import type { LimitStatus__Output } from '../gen/quotad/v1/LimitStatus.js';
import type { ListKeysRequest } from '../gen/quotad/v1/ListKeysRequest.js';
import type { ListKeysResponse__Output } from '../gen/quotad/v1/ListKeysResponse.js';
import type { RevokeKeyRequest } from '../gen/quotad/v1/RevokeKeyRequest.js';
import type { RotateKeyRequest } from '../gen/quotad/v1/RotateKeyRequest.js';
import type { RotateKeyResponse__Output } from '../gen/quotad/v1/RotateKeyResponse.js';
import type { SetKeyLimitsRequest } from '../gen/quotad/v1/SetKeyLimitsRequest.js';
import { ConfigError, parseHostPort } from './config.js';
import { authorityCredentials, authorityTlsSetting, type AuthorityTls } from './tls.js';

/** Exit codes a script can rely on (listed in ADMIN_USAGE, so keep the two in step). */
export const EXIT = { ok: 0, failure: 1, usage: 2, unreachable: 3, unauthorized: 4, notFound: 5 } as const;

const DEFAULT_AUTHORITY = '127.0.0.1:8081';
const DEFAULT_TIMEOUT_MS = 5_000;

export const ADMIN_USAGE = `Usage: quotad keys <command> [flags]
       quotad usage ID [flags]
       quotad events [--org G] [--type T] [--limit N] [flags]

Manages API keys through the authority's AdminService (gRPC).

Commands:
  keys create --name N --owner O --org G --tier T [--expires-in 90d]
                            issue a key; its secret is printed once and cannot be recovered
  keys list [--org G] [--page-size N]
                            every key (all pages), never a secret
  keys show ID              a key's fields, limit overrides and secret hints
  keys revoke ID            refuse the key from now on, on every replica
  keys rotate ID [--overlap 24h]
                            issue a new secret; the old one works for the overlap (0s: stops at once)
  keys limits ID [--set NAME=VALUE]... [--unset NAME]...
                            override the tier's limits for this key alone; NAME is a limit of the
                            tier or rpm, tpm, tpd, usd_per_day; VALUE a count, or dollars ("5.00")
  usage ID                  the key's limits: used, remaining, limit and when each resets
  events [--org G] [--type budget.threshold|usage.anomaly] [--limit 50]
                            recent spend alerts and anomalies, newest first, and their delivery

Flags of every command:
  --authority host:port     the authority's gRPC address (else QUOTAD_AUTHORITY, else ${DEFAULT_AUTHORITY})
  --authority-ca FILE       PEM CA that signed the authority's certificate: speak TLS (else QUOTAD_AUTHORITY_CA)
  --authority-cert FILE     PEM client certificate, for mutual TLS (else QUOTAD_AUTHORITY_CERT)
  --authority-key FILE      its PEM private key (else QUOTAD_AUTHORITY_KEY)
  --json                    print the authority's answer as JSON, for scripts
  --timeout DURATION        how long to wait for each answer (default ${formatDuration(DEFAULT_TIMEOUT_MS)})
  --help                    print this text

Environment:
  QUOTAD_ADMIN_TOKEN        required: the admin token the authority was started with (never a flag,
                            which ps would show to every user)
  QUOTAD_AUTHORITY          the authority's gRPC address, as --authority

Exit codes:
  0  done
  1  unexpected failure
  2  usage error, or the authority refused the input (INVALID_ARGUMENT)
  3  the authority could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
  4  the admin token is missing or wrong (UNAUTHENTICATED), or the authority has no admin API (UNIMPLEMENTED)
  5  no such key (NOT_FOUND)
`;

/** A failure explained for the operator, with the exit code a script can branch on. */
class CliError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode: number) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

function usageError(message: string): CliError {
  return new CliError(`${message} (see quotad keys --help)`, EXIT.usage);
}

type Unary<Req, Res> = (request: Req) => Promise<Res>;
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<Res>,
) => grpc.ClientUnaryCall;

/** AdminService with promise methods whose failures are already CliErrors. */
interface AdminApi {
  createKey: Unary<CreateKeyRequest, CreateKeyResponse__Output>;
  listKeys: Unary<ListKeysRequest, ListKeysResponse__Output>;
  getKey: Unary<GetKeyRequest, ApiKey__Output>;
  revokeKey: Unary<RevokeKeyRequest, ApiKey__Output>;
  rotateKey: Unary<RotateKeyRequest, RotateKeyResponse__Output>;
  setKeyLimits: Unary<SetKeyLimitsRequest, ApiKey__Output>;
  getKeyUsage: Unary<GetKeyUsageRequest, GetKeyUsageResponse__Output>;
  listEvents: Unary<ListEventsRequest, ListEventsResponse__Output>;
}

/** Where to call and with what, from the flags and the environment. */
interface Settings {
  authority: string;
  /** TLS to the authority; plaintext when unset. */
  tls: AuthorityTls | undefined;
  token: string;
  timeoutMs: number;
  json: boolean;
}

/** Turns a gRPC failure into what the operator should do about it; the status decides the exit code. */
function explainStatus(error: grpc.ServiceError, authority: string): CliError {
  const details = error.details || error.message;
  switch (error.code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
      return new CliError(
        `the authority at ${authority} did not answer (${details}); is it running there? ` +
          'Point to it with --authority or QUOTAD_AUTHORITY',
        EXIT.unreachable,
      );
    case grpc.status.UNAUTHENTICATED:
      return new CliError(
        `the authority at ${authority} refused the admin token (missing or wrong): ` +
          'set QUOTAD_ADMIN_TOKEN to the token the authority was started with',
        EXIT.unauthorized,
      );
    case grpc.status.UNIMPLEMENTED:
      return new CliError(
        `the authority at ${authority} has no admin API: start it with QUOTAD_ADMIN_TOKEN set`,
        EXIT.unauthorized,
      );
    case grpc.status.INVALID_ARGUMENT:
      return new CliError(`the authority refused the request: ${details}`, EXIT.usage);
    case grpc.status.NOT_FOUND:
      return new CliError(details, EXIT.notFound);
    default:
      return new CliError(`${grpc.status[error.code] ?? error.code}: ${details}`, EXIT.failure);
  }
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}

/** One AdminService client for the command: the token in every call's metadata, a deadline on each call. */
function connect(settings: Settings): { api: AdminApi; close: () => void } {
  const { proto } = loadQuotaPackage();
  const client = new proto.quotad.v1.AdminService(settings.authority, authorityCredentials(settings.tls));
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${settings.token}`);
  function unary<Req, Res>(method: UnaryMethod<Req, Res>): Unary<Req, Res> {
    return (request) =>
      new Promise((resolve, reject) => {
        method(request, metadata, { deadline: Date.now() + settings.timeoutMs }, (error, response) => {
          if (!error) resolve(response as Res);
          else reject(isServiceError(error) ? explainStatus(error, settings.authority) : error);
        });
      });
  }
  const api: AdminApi = {
    createKey: unary(client.createKey.bind(client)),
    listKeys: unary(client.listKeys.bind(client)),
    getKey: unary(client.getKey.bind(client)),
    revokeKey: unary(client.revokeKey.bind(client)),
    rotateKey: unary(client.rotateKey.bind(client)),
    setKeyLimits: unary(client.setKeyLimits.bind(client)),
    getKeyUsage: unary(client.getKeyUsage.bind(client)),
    listEvents: unary(client.listEvents.bind(client)),
  };
  return { api, close: () => client.close() };
}

/** ISO 8601 in UTC to the second, or '-' for the protocol's 0 ("never" / "not set"). */
function isoTime(ms: number, none = '-'): string {
  return ms > 0 ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : none;
}

/** Columns padded to their widest cell, two spaces apart, so the table lines up in a terminal. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [header, ...rows].map(line).join('\n') + '\n';
}

/** `label: value` lines; a list value continues on indented lines under its first item. */
function fields(entries: [string, string | string[]][]): string {
  const width = Math.max(...entries.map(([label]) => label.length)) + 2;
  return entries
    .map(([label, value]) => {
      const [first = '-', ...rest] = typeof value === 'string' ? [value] : value;
      return [`${label}:`.padEnd(width) + first, ...rest.map((item) => ' '.repeat(width) + item)].join('\n');
    })
    .join('\n')
    .concat('\n');
}

function keyFields(key: ApiKey__Output): string {
  return fields([
    ['id', key.id],
    ['name', key.name],
    ['owner', key.owner],
    ['org', key.org],
    ['tier', key.tier],
    ['state', key.state],
    ['created', isoTime(key.createdAtMs)],
    ['expires', isoTime(key.expiresAtMs, 'never')],
    ['revoked', isoTime(key.revokedAtMs)],
    ['last used', isoTime(key.lastUsedAtMs, 'never')],
    ['limits', key.limits.length ? key.limits.map((l) => `${l.name} = ${l.value}`) : "the tier's"],
    [
      'secrets',
      key.secrets.map(
        (s) =>
          `${s.hint}  created ${isoTime(s.createdAtMs)}, ${s.expiresAtMs ? `expires ${isoTime(s.expiresAtMs)}` : 'lives with the key'}`,
      ),
    ],
  ]);
}

/** The secret alone on its line, so it can be copied whole, with the warning that this is the only chance. */
function secretBlock(secret: string): string {
  return `Secret (shown once, store it now: the authority keeps only its hash and cannot show it again):\n\n${secret}\n\n`;
}

function keyTable(keys: ApiKey__Output[]): string {
  if (keys.length === 0) return 'No keys.\n';
  return table(
    ['ID', 'NAME', 'OWNER', 'ORG', 'TIER', 'STATE', 'CREATED', 'EXPIRES', 'LAST USED'],
    keys.map((k) => [
      k.id,
      k.name,
      k.owner,
      k.org,
      k.tier,
      k.state,
      isoTime(k.createdAtMs),
      isoTime(k.expiresAtMs),
      isoTime(k.lastUsedAtMs),
    ]),
  );
}

function amount(status: LimitStatus__Output, value: number): string {
  return status.unit === 'USD_MICROS' ? formatUsd(value) : String(value);
}

function usageTable(response: GetKeyUsageResponse__Output): string {
  const { key, usage } = response;
  const title = key ? `Key ${key.id} (org ${key.org}, tier ${key.tier})\n\n` : '';
  const rows = (usage?.limits ?? []).map((status) => [
    status.shadow ? `${status.name} (shadow)` : status.name,
    status.kind.toLowerCase(),
    amount(status, status.used),
    amount(status, status.remaining),
    amount(status, status.limit),
    status.resetAfterMs > 0 ? formatDuration(status.resetAfterMs) : '-',
  ]);
  const totals = usage
    ? `\nTokens used: ${usage.tokensUsed}; spent: ${formatUsd(usage.usdMicrosSpent)}\n`
    : '';
  return title + table(['NAME', 'KIND', 'USED', 'REMAINING', 'LIMIT', 'RESETS IN'], rows) + totals;
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function eventTable(events: Event__Output[]): string {
  if (events.length === 0) return 'No events.\n';
  const rows = events.map((event) => [
    isoTime(Number(event.createdAtMs)),
    event.type,
    event.org,
    event.subject,
    event.keyId || '-',
    event.limit,
    String(event.threshold),
    event.type === 'budget.threshold' ? `${event.used}/${event.limitAmount}` : String(event.used),
    event.delivery,
    String(event.attempts),
  ]);
  const header = [
    'CREATED',
    'TYPE',
    'ORG',
    'SUBJECT',
    'KEY',
    'LIMIT',
    'THRESHOLD',
    'USED',
    'DELIVERY',
    'ATTEMPTS',
  ];
  return table(header, rows);
}

/** What a command hands back: the message for --json, and the text for a human. */
interface Output {
  message: object;
  text: string;
}

interface Command {
  /** Flags beyond those of every command. */
  options: Options;
  /** Whether the command takes a key id as its one positional argument. */
  takesId: boolean;
  run(api: AdminApi, values: Values, id: string): Promise<Output>;
}

const COMMON_OPTIONS = {
  authority: { type: 'string' },
  'authority-ca': { type: 'string' },
  'authority-cert': { type: 'string' },
  'authority-key': { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies Options;

function stringFlag(values: Values, flag: string): string | undefined {
  const value = values[flag];
  return typeof value === 'string' ? value : undefined;
}

function requiredFlag(values: Values, flag: string): string {
  const value = stringFlag(values, flag);
  if (value === undefined || value === '') throw usageError(`--${flag} is required`);
  return value;
}

function listFlag(values: Values, flag: string): string[] {
  const value = values[flag];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

function durationFlag(values: Values, flag: string): number | undefined {
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
async function listAll(api: AdminApi, request: ListKeysRequest): Promise<ApiKey__Output[]> {
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

const KEY_COMMANDS: Record<string, Command> = {
  create: {
    options: {
      name: { type: 'string' },
      owner: { type: 'string' },
      org: { type: 'string' },
      tier: { type: 'string' },
      'expires-in': { type: 'string' },
    },
    takesId: false,
    async run(api, values) {
      const request: CreateKeyRequest = {
        name: requiredFlag(values, 'name'),
        owner: requiredFlag(values, 'owner'),
        org: requiredFlag(values, 'org'),
        tier: requiredFlag(values, 'tier'),
        expiresInMs: durationFlag(values, 'expires-in') ?? 0,
      };
      const created = await api.createKey(request);
      const key = created.key ? keyFields(created.key) : '';
      return { message: created, text: secretBlock(created.secret) + key };
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
      return { message: rotated, text: secretBlock(rotated.secret) + previous + key };
    },
  },
  limits: {
    options: { set: { type: 'string', multiple: true }, unset: { type: 'string', multiple: true } },
    takesId: true,
    async run(api, values, id) {
      const set = listFlag(values, 'set').map(limitOverride);
      const key = await api.setKeyLimits({ id, set, unset: listFlag(values, 'unset') });
      return { message: key, text: keyFields(key) };
    },
  },
};

const USAGE_COMMAND: Command = {
  options: {},
  takesId: true,
  async run(api, _values, id) {
    const usage = await api.getKeyUsage({ id });
    return { message: usage, text: usageTable(usage) };
  },
};

const EVENTS_COMMAND: Command = {
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

function parseCommandLine(command: Command, args: string[]): { values: Values; positionals: string[] } {
  try {
    return parseArgs({
      args,
      options: { ...COMMON_OPTIONS, ...command.options },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code.startsWith('ERR_PARSE_ARGS')) throw usageError((error as Error).message);
    throw error;
  }
}

function readId(name: string, command: Command, positionals: string[]): string {
  const expected = command.takesId ? 1 : 0;
  if (positionals.length !== expected) {
    throw usageError(
      command.takesId
        ? `${name}: expected one key id, as in quotad ${name} key_…`
        : `${name}: unexpected argument '${positionals[0]}'`,
    );
  }
  return positionals[0] ?? '';
}

function readSettings(values: Values, env: NodeJS.ProcessEnv): Settings {
  const flag = stringFlag(values, 'authority');
  const [source, authority] =
    flag !== undefined
      ? ['--authority', flag]
      : ['QUOTAD_AUTHORITY', env.QUOTAD_AUTHORITY || DEFAULT_AUTHORITY];
  try {
    parseHostPort(source, authority);
  } catch (error) {
    if (error instanceof ConfigError) throw usageError(error.message);
    throw error;
  }
  const timeoutMs = durationFlag(values, 'timeout') ?? DEFAULT_TIMEOUT_MS;
  if (timeoutMs === 0) throw usageError('--timeout: must be longer than 0');
  const token = env.QUOTAD_ADMIN_TOKEN;
  if (!token) {
    throw new CliError(
      'QUOTAD_ADMIN_TOKEN is not set: set it to the admin token the authority was started with',
      EXIT.unauthorized,
    );
  }
  const tlsValue = (flag: string, variable: string) =>
    stringFlag(values, flag) ?? (env[variable] || undefined);
  let tls: AuthorityTls | undefined;
  try {
    tls = authorityTlsSetting(
      { ca: '--authority-ca', cert: '--authority-cert', key: '--authority-key' },
      {
        ca: tlsValue('authority-ca', 'QUOTAD_AUTHORITY_CA'),
        cert: tlsValue('authority-cert', 'QUOTAD_AUTHORITY_CERT'),
        key: tlsValue('authority-key', 'QUOTAD_AUTHORITY_KEY'),
      },
    );
  } catch (error) {
    if (error instanceof ConfigError) throw usageError(error.message);
    throw error;
  }
  return { authority, tls, token, timeoutMs, json: values.json === true };
}

/** Parses, calls the authority once (or once a page), prints; a CliError becomes its message and code. */
async function runCommand(name: string, command: Command, args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { values, positionals } = parseCommandLine(command, args);
    if (values.help) {
      process.stdout.write(ADMIN_USAGE);
      return EXIT.ok;
    }
    const id = readId(name, command, positionals);
    const settings = readSettings(values, env);
    const { api, close } = connect(settings);
    try {
      const output = await command.run(api, values, id);
      process.stdout.write(settings.json ? `${JSON.stringify(output.message, null, 2)}\n` : output.text);
    } finally {
      close();
    }
    return EXIT.ok;
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    process.stderr.write(`quotad: ${error.message}\n`);
    return error.exitCode;
  }
}

function isHelp(arg: string): boolean {
  return arg === '--help' || arg === '-h' || arg === 'help';
}

/** `quotad keys <command> ...`: the exit code to end with. */
export async function keysCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || isHelp(name)) {
    (name === undefined ? process.stderr : process.stdout).write(ADMIN_USAGE);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = Object.hasOwn(KEY_COMMANDS, name) ? KEY_COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`quotad: unknown keys command '${name}' (see quotad keys --help)\n`);
    return EXIT.usage;
  }
  return runCommand(`keys ${name}`, command, rest, env);
}

/** `quotad usage ID`: the exit code to end with. */
export function usageCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runCommand('usage', USAGE_COMMAND, args, env);
}

/** `quotad events`: the exit code to end with. */
export function eventsCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runCommand('events', EVENTS_COMMAND, args, env);
}
