import { parseArgs } from 'node:util';
import { parseDuration } from '../core/duration.js';
import type { RedisTarget } from '../store/redis/connection.js';
import { parseRedisTarget, REDIS_PASSWORD_ENV, waitReplicasSetting } from './redis-target.js';

/** A setting given badly, on the command line or in the environment. The CLI prints it and exits with 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface Setting {
  flag: string;
  env: string;
  default: string | undefined;
  help: string;
}

/** Every setting of `quotad serve`: a flag, or else an environment variable, or else the default. */
export const SERVE_SETTINGS = {
  redisUrl: {
    flag: 'redis-url',
    env: 'REDIS_URL',
    default: undefined,
    help: 'Redis to share counters through (redis://, rediss://). Unset (and no cluster or sentinels): in-process store, single instance only.',
  },
  redisCluster: {
    flag: 'redis-cluster',
    env: 'QUOTAD_REDIS_CLUSTER',
    default: undefined,
    help: 'Seed nodes of a Redis Cluster, host:port,host:port,… (rediss://host:port for TLS). Instead of --redis-url.',
  },
  redisSentinels: {
    flag: 'redis-sentinels',
    env: 'QUOTAD_REDIS_SENTINELS',
    default: undefined,
    help: 'Sentinels of a Redis Sentinel group, host:port,… (rediss://host:port for TLS), with --redis-sentinel-name. Instead of --redis-url.',
  },
  redisSentinelName: {
    flag: 'redis-sentinel-name',
    env: 'QUOTAD_REDIS_SENTINEL_NAME',
    default: undefined,
    help: 'The master name the sentinels monitor (sentinel monitor <name> …); needs --redis-sentinels.',
  },
  redisWaitReplicas: {
    flag: 'redis-wait-replicas',
    env: 'QUOTAD_REDIS_WAIT_REPLICAS',
    default: 'auto',
    help: 'Replicas that must confirm an admin key change (Redis WAIT, within --redis-timeout) before it is acknowledged. auto: 1 on Cluster and Sentinel, 0 on REDIS_URL.',
  },
  policy: {
    flag: 'policy',
    env: 'QUOTAD_POLICY',
    default: 'config/policy.yaml',
    help: 'The policy file; its directory is watched and valid edits apply live.',
  },
  grpcAddr: {
    flag: 'grpc-addr',
    env: 'QUOTAD_GRPC_ADDR',
    default: '0.0.0.0:8081',
    help: 'host:port for the gRPC API, health and reflection.',
  },
  metricsAddr: {
    flag: 'metrics-addr',
    env: 'QUOTAD_METRICS_ADDR',
    default: '0.0.0.0:9464',
    help: 'host:port for /metrics and /healthz.',
  },
  logLevel: {
    flag: 'log-level',
    env: 'LOG_LEVEL',
    default: 'info',
    help: 'fatal, error, warn, info, debug (one line per decision), trace or silent.',
  },
  redisTimeout: {
    flag: 'redis-timeout',
    env: 'QUOTAD_REDIS_TIMEOUT',
    default: '1s',
    help: 'The longest one Redis command is waited for, and all it gets in a call without a deadline; a call with one waits only what remains of it. Past that, on_store_failure decides.',
  },
  shutdownDelay: {
    flag: 'shutdown-delay',
    env: 'QUOTAD_SHUTDOWN_DELAY',
    default: '0s',
    help: 'After SIGTERM, how long to keep serving while health says NOT_SERVING, so clients move away.',
  },
  shutdownGrace: {
    flag: 'shutdown-grace',
    env: 'QUOTAD_SHUTDOWN_GRACE',
    default: '10s',
    help: 'After the delay, how long in-flight calls may take before they are cut.',
  },
  maxConnectionAge: {
    flag: 'max-connection-age',
    env: 'QUOTAD_MAX_CONNECTION_AGE',
    default: '5m',
    help: 'Ask each client connection to reconnect (GOAWAY) after this long, so gateways re-resolve and spread over new replicas. 0s: never.',
  },
  keyCacheTtl: {
    flag: 'key-cache-ttl',
    env: 'QUOTAD_KEY_CACHE_TTL',
    default: '1s',
    help: 'The most a cached API key may lag a change on another replica: older entries are kept only while the change channel is confirmed live. 0s: no cache.',
  },
  memoryMaxEntries: {
    flag: 'memory-max-entries',
    env: 'QUOTAD_MEMORY_MAX_ENTRIES',
    default: '1000000',
    help: 'Most entries (counters, leases, reservations: ~650 bytes each) an in-process store holds; past it, RESOURCE_EXHAUSTED.',
  },
  tlsCert: {
    flag: 'tls-cert',
    env: 'QUOTAD_TLS_CERT',
    default: undefined,
    help: 'PEM certificate (chain) for TLS on the gRPC port, with --tls-key. Unset: plaintext.',
  },
  tlsKey: {
    flag: 'tls-key',
    env: 'QUOTAD_TLS_KEY',
    default: undefined,
    help: 'PEM private key of --tls-cert.',
  },
  tlsClientCa: {
    flag: 'tls-client-ca',
    env: 'QUOTAD_TLS_CLIENT_CA',
    default: undefined,
    help: 'PEM CA bundle: with it, every gRPC client must present a certificate it signed (mutual TLS).',
  },
  demoKey: {
    flag: 'demo-key',
    env: 'QUOTAD_DEMO_KEY',
    default: 'off',
    help: 'on: when the store holds no API key, create a demo key (free tier) and print it once on stderr.',
  },
  demoGateway: {
    flag: 'demo-gateway',
    env: 'QUOTAD_DEMO_GATEWAY',
    default: 'http://127.0.0.1:8080',
    help: "The gateway's base URL in the demo key's curl line (make run sets it from QUOTAD_GATEWAY_ADDR).",
  },
  envoyConfig: {
    flag: 'envoy-config',
    env: 'QUOTAD_ENVOY_CONFIG',
    default: undefined,
    help: "A directory of envoyproxy/ratelimit config files (*.yaml): serve Envoy's RateLimitService for their domains; watched, valid edits apply live. Unset: not served.",
  },
  envoyOnStoreFailure: {
    flag: 'envoy-on-store-failure',
    env: 'QUOTAD_ENVOY_ON_STORE_FAILURE',
    default: 'open',
    help: 'What Envoy domains answer while the store is out: open (OK), closed (OVER_LIMIT), local (in-process counters at limit ÷ replicas).',
  },
  adminTokensFile: {
    flag: 'admin-tokens-file',
    env: 'QUOTAD_ADMIN_TOKENS_FILE',
    default: undefined,
    help: 'Named admin tokens (YAML: tokens: [{name, role: admin|read-only, sha256}]), never a token itself; re-read on change. With or without QUOTAD_ADMIN_TOKEN, which is the token named admin.',
  },
  signatureMaxAge: {
    flag: 'signature-max-age',
    env: 'QUOTAD_SIGNATURE_MAX_AGE',
    default: '300s',
    help: "How far a signed request's X-Quotad-Timestamp may be from the authority's clock, either way (signature_expired past it).",
  },
  auditRetention: {
    flag: 'audit-retention',
    env: 'QUOTAD_AUDIT_RETENTION',
    default: '90d',
    help: 'How long audit records (admin changes and refused admin calls) are kept.',
  },
  auditMaxRecords: {
    flag: 'audit-max-records',
    env: 'QUOTAD_AUDIT_MAX_RECORDS',
    default: '100000',
    help: 'The most audit records kept; the oldest go first.',
  },
} as const satisfies Record<string, Setting>;

export interface HostPort {
  host: string;
  port: number;
}

export interface ServeConfig {
  redisUrl: string | undefined;
  /** Where the shared store is: REDIS_URL, a Cluster or a Sentinel group; unset: the in-process store. */
  redis: RedisTarget | undefined;
  /** Replicas that must confirm each admin key write (WAIT) before it is acknowledged. */
  redisWaitReplicas: number;
  policyPath: string;
  grpcAddress: HostPort;
  metricsAddress: HostPort;
  logLevel: string;
  redisTimeoutMs: number;
  shutdownDelayMs: number;
  shutdownGraceMs: number;
  /** A client connection is asked to reconnect after this long (0: never), so clients re-resolve. */
  maxConnectionAgeMs: number;
  keyCacheTtlMs: number;
  /** The most entries the in-process store, and the store-failure fallback, each hold. */
  memoryMaxEntries: number;
  /** TLS on the gRPC port: files of the certificate, its key, and the CA that client certificates need. */
  tls: { certPath: string; keyPath: string; clientCaPath?: string } | undefined;
  demoKey: boolean;
  /** Where the demo banner's curl line sends its request. */
  demoGateway: string;
  /** The envoyproxy/ratelimit config directory; unset: RateLimitService is not served. */
  envoyConfigDir: string | undefined;
  envoyOnStoreFailure: 'open' | 'closed' | 'local';
  /** From QUOTAD_ADMIN_TOKEN only (never a flag, which `ps` would show): the token named admin. */
  adminToken: string | undefined;
  /** Named admin tokens by SHA-256. Neither this nor adminToken: no AdminService. */
  adminTokensFile: string | undefined;
  /** How long, and how many, audit records are kept. */
  audit: { retentionMs: number; maxRecords: number };
  /** From QUOTAD_AUTHORITY_TOKEN only. Set: QuotaService calls must carry it. */
  authorityToken: string | undefined;
  /** From QUOTAD_SIGNING_KEY only: the master secret signing secrets derive from. Unset: no signing. */
  signingKey: string | undefined;
  signatureMaxAgeMs: number;
}

/** A shorter master secret for signing would weaken every key's signing secret. */
export const MIN_SIGNING_KEY_LENGTH = 32;

function signingKeySetting(env: NodeJS.ProcessEnv): string | undefined {
  const key = env.QUOTAD_SIGNING_KEY;
  if (key === undefined || key === '') return undefined;
  if (key.length < MIN_SIGNING_KEY_LENGTH || /\s/.test(key)) {
    throw new ConfigError(
      `QUOTAD_SIGNING_KEY: must be at least ${MIN_SIGNING_KEY_LENGTH} characters without spaces (try: openssl rand -hex 32)`,
    );
  }
  return key;
}

/** Shorter admin (and authority) tokens are refused: they could be guessed. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

/** A bearer token from the environment only (a flag would show in `ps`): QUOTAD_ADMIN_TOKEN, QUOTAD_AUTHORITY_TOKEN. */
export function tokenSetting(
  env: NodeJS.ProcessEnv,
  name: 'QUOTAD_ADMIN_TOKEN' | 'QUOTAD_AUTHORITY_TOKEN',
): string | undefined {
  const token = env[name];
  if (token === undefined || token === '') return undefined;
  if (token.length < MIN_ADMIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new ConfigError(
      `${name}: must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters without spaces (try: openssl rand -hex 32)`,
    );
  }
  return token;
}

export function onOffSetting(name: string, text: string): boolean {
  if (text === 'on' || text === 'off') return text === 'on';
  throw new ConfigError(`${name}: expected on or off, got '${text}'`);
}

/** An http(s) URL without a trailing slash. */
export function urlSetting(name: string, text: string): string {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (!url || !['http:', 'https:'].includes(url.protocol)) {
    throw new ConfigError(`${name}: expected an http:// or https:// URL, got '${text}'`);
  }
  return text.replace(/\/+$/, '');
}

export function failureModeSetting(name: string, text: string): 'open' | 'closed' | 'local' {
  if (text === 'open' || text === 'closed' || text === 'local') return text;
  throw new ConfigError(`${name}: expected open, closed or local, got '${text}'`);
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/;

export function parseHostPort(name: string, text: string): HostPort {
  const match = HOST_PORT.exec(text);
  const port = Number(match?.[2]);
  if (!match || port > 65_535) throw new ConfigError(`${name}: expected host:port, got '${text}'`);
  return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port };
}

export function durationSetting(name: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined)
    throw new ConfigError(`${name}: expected a duration like 50ms, 2s or 1m, got '${text}'`);
  return ms;
}

/** A duration that must be more than zero: a timeout of 0 would mean none. */
export function positiveDurationSetting(name: string, text: string): number {
  const ms = durationSetting(name, text);
  if (ms <= 0) throw new ConfigError(`${name}: must be more than 0, got '${text}'`);
  return ms;
}

/** A whole number from 1 to `max`. */
export function countSetting(name: string, text: string, max: number): number {
  const count = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(count >= 1 && count <= max)) {
    throw new ConfigError(`${name}: expected a whole number from 1 to ${max}, got '${text}'`);
  }
  return count;
}

/** Reads settings: each flag, or else its environment variable, or else its default. */
export function settingsReader(
  settings: Record<string, Setting>,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  command: string,
): { read(setting: Setting): string | undefined; required(setting: Setting): string } {
  const options = Object.fromEntries(
    Object.values(settings).map((setting) => [setting.flag, { type: 'string' as const }]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError(
      `${argumentProblem(error as NodeJS.ErrnoException, args)}; quotad ${command} --help lists the flags`,
    );
  }
  const read = (setting: Setting): string | undefined => {
    const fromFlag = values[setting.flag];
    if (typeof fromFlag === 'string') return fromFlag;
    const fromEnv = env[setting.env];
    return fromEnv === undefined || fromEnv === '' ? setting.default : fromEnv;
  };
  return { read, required: (setting) => read(setting) as string };
}

/** What is wrong with the command line, in one sentence (node's parseArgs messages run on about '--'). */
function argumentProblem(error: NodeJS.ErrnoException, args: readonly string[]): string {
  const flag = /'(-[^']*)'/.exec(error.message)?.[1];
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag ?? ''}`.trimEnd();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `${flag ?? 'a flag'} needs a value (--flag value or --flag=value)`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(args.find((a) => !a.startsWith('-')) ?? '')}: every setting is a --flag`;
    default:
      return error.message;
  }
}

export const settingName = (setting: Setting) => `--${setting.flag} (${setting.env})`;

/** The in-process store's bound: past ten million entries (several GB) a bound protects nothing. */
const MAX_MEMORY_ENTRIES = 10_000_000;

function tlsSetting(
  read: (setting: Setting) => string | undefined,
  s: typeof SERVE_SETTINGS,
): ServeConfig['tls'] {
  const [certPath, keyPath, clientCaPath] = [read(s.tlsCert), read(s.tlsKey), read(s.tlsClientCa)];
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new ConfigError(`${settingName(s.tlsCert)} and ${settingName(s.tlsKey)}: set both, or neither`);
  }
  if (certPath === undefined || keyPath === undefined) {
    if (clientCaPath !== undefined) {
      throw new ConfigError(
        `${settingName(s.tlsClientCa)}: needs ${settingName(s.tlsCert)} and ${settingName(s.tlsKey)}`,
      );
    }
    return undefined;
  }
  return { certPath, keyPath, ...(clientCaPath === undefined ? {} : { clientCaPath }) };
}

/** Reads `quotad serve`'s settings from its arguments and the environment. */
export function parseServeConfig(args: readonly string[], env: NodeJS.ProcessEnv): ServeConfig {
  const { read, required } = settingsReader(SERVE_SETTINGS, args, env, 'serve');
  const name = settingName;
  const s = SERVE_SETTINGS;
  return {
    redisUrl: read(s.redisUrl),
    redis: parseRedisTarget(read, env),
    redisWaitReplicas: waitReplicasSetting(read, env),
    policyPath: required(s.policy),
    grpcAddress: parseHostPort(name(s.grpcAddr), required(s.grpcAddr)),
    metricsAddress: parseHostPort(name(s.metricsAddr), required(s.metricsAddr)),
    logLevel: required(s.logLevel),
    redisTimeoutMs: durationSetting(name(s.redisTimeout), required(s.redisTimeout)),
    shutdownDelayMs: durationSetting(name(s.shutdownDelay), required(s.shutdownDelay)),
    shutdownGraceMs: durationSetting(name(s.shutdownGrace), required(s.shutdownGrace)),
    maxConnectionAgeMs: durationSetting(name(s.maxConnectionAge), required(s.maxConnectionAge)),
    keyCacheTtlMs: durationSetting(name(s.keyCacheTtl), required(s.keyCacheTtl)),
    memoryMaxEntries: countSetting(
      name(s.memoryMaxEntries),
      required(s.memoryMaxEntries),
      MAX_MEMORY_ENTRIES,
    ),
    tls: tlsSetting(read, s),
    demoKey: onOffSetting(name(s.demoKey), required(s.demoKey)),
    demoGateway: urlSetting(name(s.demoGateway), required(s.demoGateway)),
    envoyConfigDir: read(s.envoyConfig),
    envoyOnStoreFailure: failureModeSetting(name(s.envoyOnStoreFailure), required(s.envoyOnStoreFailure)),
    adminToken: tokenSetting(env, 'QUOTAD_ADMIN_TOKEN'),
    adminTokensFile: read(s.adminTokensFile),
    audit: {
      retentionMs: positiveDurationSetting(name(s.auditRetention), required(s.auditRetention)),
      maxRecords: countSetting(name(s.auditMaxRecords), required(s.auditMaxRecords), 10_000_000),
    },
    authorityToken: tokenSetting(env, 'QUOTAD_AUTHORITY_TOKEN'),
    signingKey: signingKeySetting(env),
    signatureMaxAgeMs: positiveDurationSetting(name(s.signatureMaxAge), required(s.signatureMaxAge)),
  };
}

/** Help text is wrapped to this many columns. */
export const HELP_WIDTH = 100;

/** `text` wrapped at word boundaries to `width` columns, every line indented by `indent` spaces. */
export function wrapText(text: string, indent: number, width = HELP_WIDTH): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l) => ' '.repeat(indent) + l).join('\n');
}

/** Each setting as a help entry: its flag, variable and default on one line, its meaning wrapped under it. */
export function settingLines(settings: Record<string, Setting>): string {
  return Object.values(settings)
    .map((s: Setting) => {
      const head = `  --${s.flag} <value>, ${s.env}${s.default ? ` (default ${s.default})` : ''}`;
      return `${head}\n${wrapText(s.help, 6)}`;
    })
    .join('\n');
}

/** The exit codes of a long-running command (serve, gateway). */
export const SERVICE_EXIT_CODES = `Exit codes:
  0  stopped by SIGTERM or SIGINT, after draining
  1  could not run: an address in use, the store unreachable at start, an unexpected error
  2  usage: an unknown flag, a bad setting, an invalid policy file or --envoy-config directory`;

/** A long-running command's help: usage line, its settings, notes on environment-only secrets, exit codes. */
export function commandHelp(
  command: string,
  settings: Record<string, Setting>,
  environmentOnly: string,
): string {
  return (
    [
      `Usage: quotad ${command} [flags]`,
      wrapText('Each flag may also be set by its environment variable; the flag wins.', 0),
      settingLines(settings),
      wrapText(environmentOnly, 0),
      SERVICE_EXIT_CODES,
    ].join('\n\n') + '\n'
  );
}

/** The settings as a help text: flag, variable, default, meaning. */
export function serveUsage(): string {
  return commandHelp(
    'serve',
    SERVE_SETTINGS,
    `QUOTAD_ADMIN_TOKEN (environment only; at least ${MIN_ADMIN_TOKEN_LENGTH} characters) turns on AdminService, as the token named admin (QUOTAD_ADMIN_TOKENS_FILE names more). QUOTAD_AUTHORITY_TOKEN (environment only; likewise) makes every QuotaService call carry it. ${REDIS_PASSWORD_ENV} (environment only) is the password of the Cluster nodes or of the Sentinel-managed master (REDIS_URL carries its own). QUOTAD_SIGNING_KEY (environment only; at least ${MIN_SIGNING_KEY_LENGTH} characters) is the master secret API keys' signing secrets derive from; unset, no key can have signing on.`,
  );
}
