import { parseArgs } from 'node:util';
import { parseDuration } from '../core/duration.js';

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
    help: 'Redis to share counters through (redis://, rediss://). Unset: in-process store, single instance only.',
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
  demoKey: {
    flag: 'demo-key',
    env: 'QUOTAD_DEMO_KEY',
    default: 'off',
    help: 'on: when the store holds no API key, create a demo key (free tier) and print it once on stderr.',
  },
} as const satisfies Record<string, Setting>;

export interface HostPort {
  host: string;
  port: number;
}

export interface ServeConfig {
  redisUrl: string | undefined;
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
  demoKey: boolean;
  /** From QUOTAD_ADMIN_TOKEN only (never a flag, which `ps` would show). Unset: no AdminService. */
  adminToken: string | undefined;
}

/** Shorter admin tokens are refused: they could be guessed. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

function adminTokenSetting(env: NodeJS.ProcessEnv): string | undefined {
  const token = env.QUOTAD_ADMIN_TOKEN;
  if (token === undefined || token === '') return undefined;
  if (token.length < MIN_ADMIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new ConfigError(
      `QUOTAD_ADMIN_TOKEN: must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters without spaces (try: openssl rand -hex 32)`,
    );
  }
  return token;
}

export function onOffSetting(name: string, text: string): boolean {
  if (text === 'on' || text === 'off') return text === 'on';
  throw new ConfigError(`${name}: expected on or off, got '${text}'`);
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

/** Reads settings: each flag, or else its environment variable, or else its default. */
export function settingsReader(
  settings: Record<string, Setting>,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): { read(setting: Setting): string | undefined; required(setting: Setting): string } {
  const options = Object.fromEntries(
    Object.values(settings).map((setting) => [setting.flag, { type: 'string' as const }]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const read = (setting: Setting): string | undefined => {
    const fromFlag = values[setting.flag];
    if (typeof fromFlag === 'string') return fromFlag;
    const fromEnv = env[setting.env];
    return fromEnv === undefined || fromEnv === '' ? setting.default : fromEnv;
  };
  return { read, required: (setting) => read(setting) as string };
}

export const settingName = (setting: Setting) => `--${setting.flag} (${setting.env})`;

/** Reads `quotad serve`'s settings from its arguments and the environment. */
export function parseServeConfig(args: readonly string[], env: NodeJS.ProcessEnv): ServeConfig {
  const { read, required } = settingsReader(SERVE_SETTINGS, args, env);
  const name = settingName;
  const s = SERVE_SETTINGS;
  return {
    redisUrl: read(s.redisUrl),
    policyPath: required(s.policy),
    grpcAddress: parseHostPort(name(s.grpcAddr), required(s.grpcAddr)),
    metricsAddress: parseHostPort(name(s.metricsAddr), required(s.metricsAddr)),
    logLevel: required(s.logLevel),
    redisTimeoutMs: durationSetting(name(s.redisTimeout), required(s.redisTimeout)),
    shutdownDelayMs: durationSetting(name(s.shutdownDelay), required(s.shutdownDelay)),
    shutdownGraceMs: durationSetting(name(s.shutdownGrace), required(s.shutdownGrace)),
    maxConnectionAgeMs: durationSetting(name(s.maxConnectionAge), required(s.maxConnectionAge)),
    keyCacheTtlMs: durationSetting(name(s.keyCacheTtl), required(s.keyCacheTtl)),
    demoKey: onOffSetting(name(s.demoKey), required(s.demoKey)),
    adminToken: adminTokenSetting(env),
  };
}

export function settingLines(settings: Record<string, Setting>): string {
  return Object.values(settings)
    .map(
      (s: Setting) =>
        `  --${s.flag.padEnd(18)} ${s.env.padEnd(25)} ${(s.default || '(unset)').padEnd(26)} ${s.help}`,
    )
    .join('\n');
}

/** The settings as a help text: flag, variable, default, meaning. */
export function serveUsage(): string {
  return `Usage: quotad serve [flags]\n\nEach flag may also be set by its environment variable.\n\n${settingLines(SERVE_SETTINGS)}\n\nQUOTAD_ADMIN_TOKEN (environment only; at least ${MIN_ADMIN_TOKEN_LENGTH} characters) turns on AdminService.\n`;
}
