import { parseArgs } from 'node:util';
import { formatDuration } from '../core/duration.js';
import { CliError, connect, EXIT, usageError, type Settings } from './admin-cli/client.js';
import {
  AUDIT_COMMAND,
  COMMON_OPTIONS,
  durationFlag,
  EVENTS_COMMAND,
  KEY_COMMANDS,
  STORE_COMMANDS,
  stringFlag,
  USAGE_COMMAND,
  type Command,
  type Values,
} from './admin-cli/commands.js';
import { ConfigError, parseHostPort } from './config.js';
import { authorityTlsSetting, type AuthorityTls } from './tls.js';

export { EXIT };

const DEFAULT_AUTHORITY = '127.0.0.1:8081';
const DEFAULT_TIMEOUT_MS = 5_000;

/** `quotad usage --help`: the one command and the flags it shares with the key commands. */
export const USAGE_USAGE = `Usage: quotad usage ID [flags]

An API key's limits through the authority's AdminService: for each, used, remaining, the limit and when it
resets. With --json, the same fields as GET /v1/usage of the gateway.

Flags: --authority, --authority-ca, --authority-cert, --authority-key, --json, --timeout, as for
quotad keys (quotad keys --help lists them, the environment and the exit codes).
`;

export const ADMIN_USAGE = `Usage: quotad keys <command> [flags]
       quotad usage ID [flags]
       quotad events [--org G] [--type T] [--limit N] [flags]
       quotad audit [flags]
       quotad store confirm-reset [flags]

Manages API keys through the authority's AdminService (gRPC).

Commands:
  keys create --name N --owner O --org G --tier T [--expires-in 90d] [--signing off|optional|required]
                            issue a key; its secret (and signing secret) is printed once and cannot be recovered
  keys list [--org G] [--page-size N]
                            every key (all pages), never a secret
  keys show ID              a key's fields, limit overrides and secret hints
  keys revoke ID            refuse the key from now on, on every replica
  keys rotate ID [--overlap 24h]
                            issue a new secret (and signing secret); the old one works for the overlap (0s: stops at once)
  keys signing ID off|optional|required
                            whether the key's requests must be signed; turning it on prints the signing secret once
  keys limits ID [--set NAME=VALUE]... [--unset NAME]...
                            override the tier's limits for this key alone; NAME is a limit of the
                            tier or rpm, tpm, tpd, usd_per_day; VALUE a count, or dollars ("5.00");
                            with neither flag, show the key's overrides
  usage ID                  the key's limits: used, remaining, limit and when each resets
  events [--org G] [--type budget.threshold|usage.anomaly] [--limit 50]
                            recent spend alerts and anomalies, newest first, and their delivery
  audit [--key ID] [--actor NAME] [--action ACTION] [--since 24h|2026-12-01T00:00:00Z] [--limit 100]
                            the audit trail, newest first: every key change and every refused admin call
  store confirm-reset       after the store was emptied or replaced, let authorities started with
                            --on-store-reset refuse serve again from the store as it is now

Flags of every command:
  --authority host:port     the authority's gRPC address (else QUOTAD_AUTHORITY, else ${DEFAULT_AUTHORITY})
  --authority-ca FILE       PEM CA that signed the authority's certificate: speak TLS (else QUOTAD_AUTHORITY_CA)
  --authority-cert FILE     PEM client certificate, for mutual TLS (else QUOTAD_AUTHORITY_CERT)
  --authority-key FILE      its PEM private key (else QUOTAD_AUTHORITY_KEY)
  --json                    print the authority's answer as JSON, for scripts
  --timeout DURATION        how long to wait for each answer (default ${formatDuration(DEFAULT_TIMEOUT_MS)})
  --help                    print this text

Environment:
  QUOTAD_ADMIN_TOKEN        required: the admin token the authority was started with, or a named token
                            of its QUOTAD_ADMIN_TOKENS_FILE (never a flag, which ps would show to every user)
  QUOTAD_AUTHORITY          the authority's gRPC address, as --authority

Exit codes:
  0  done
  1  unexpected failure
  2  usage error, or the authority refused the input (INVALID_ARGUMENT)
  3  the authority could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
  4  the admin token is missing or wrong (UNAUTHENTICATED), read-only for a change (PERMISSION_DENIED),
     or the authority has no admin API (UNIMPLEMENTED)
  5  no such key (NOT_FOUND)
`;

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
  const expected = (command.takesId ? 1 : 0) + (command.takesMode ? 1 : 0);
  if (positionals.length !== expected) {
    throw usageError(
      command.takesMode
        ? `${name}: expected a key id and off, optional or required, as in quotad ${name} key_… required`
        : command.takesId
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
async function runCommand(
  name: string,
  command: Command,
  args: string[],
  env: NodeJS.ProcessEnv,
  help = ADMIN_USAGE,
) {
  try {
    const { values, positionals } = parseCommandLine(command, args);
    if (values.help) {
      process.stdout.write(help);
      return EXIT.ok;
    }
    const id = readId(name, command, positionals);
    const settings = readSettings(values, env);
    const { api, close } = connect(settings);
    try {
      const output = await command.run(api, values, id, positionals[1]);
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

/** `quotad audit`: the exit code to end with. */
export function auditCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runCommand('audit', AUDIT_COMMAND, args, env);
}

/** `quotad store <command>`: the exit code to end with. */
export async function storeCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || isHelp(name)) {
    (name === undefined ? process.stderr : process.stdout).write(ADMIN_USAGE);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = Object.hasOwn(STORE_COMMANDS, name) ? STORE_COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`quotad: unknown store command '${name}' (see quotad keys --help)\n`);
    return EXIT.usage;
  }
  return runCommand(`store ${name}`, command, rest, env);
}

/** `quotad usage ID`: the exit code to end with. */
export function usageCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runCommand('usage', USAGE_COMMAND, args, env, USAGE_USAGE);
}

/** `quotad events`: the exit code to end with. */
export function eventsCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runCommand('events', EVENTS_COMMAND, args, env);
}
