import { isIP } from 'node:net';
import {
  ConfigError,
  countSetting,
  tokenSetting,
  durationSetting,
  onOffSetting,
  parseHostPort,
  positiveDurationSetting,
  commandHelp,
  settingName,
  settingsReader,
  type HostPort,
  type Setting,
} from './config.js';
import type { JwtConfig } from '../gateway/auth.js';
import type { FailMode } from '../gateway/model-call.js';
import type { ConnectionLimits } from '../gateway/server.js';
import { authorityTlsSetting, type AuthorityTls } from './tls.js';
import { REQUEST_LOG_FORMATS, type RequestLogFormat } from '../gateway/request-log.js';

/** Every setting of `quotad gateway`: a flag, or else an environment variable, or else the default. */
export const GATEWAY_SETTINGS = {
  addr: {
    flag: 'addr',
    env: 'QUOTAD_GATEWAY_ADDR',
    default: '0.0.0.0:8080',
    help: 'host:port for the OpenAI-compatible API, /healthz, /readyz and /metrics.',
  },
  authority: {
    flag: 'authority',
    env: 'QUOTAD_AUTHORITY',
    default: '127.0.0.1:8081',
    help: 'The authority, as a gRPC target: host:port, or dns:///name:port to balance over every address.',
  },
  authorityTimeout: {
    flag: 'authority-timeout',
    env: 'QUOTAD_AUTHORITY_TIMEOUT',
    default: '2s',
    help: 'Deadline of each CheckQuota (half of it for the ListModels confirming a key new to the gateway); past it (or with the authority down) --fail-mode decides. Long enough for a burst to queue.',
  },
  authorityCa: {
    flag: 'authority-ca',
    env: 'QUOTAD_AUTHORITY_CA',
    default: undefined,
    help: "PEM CA bundle that signed the authority's certificate: set, the gateway speaks TLS to it.",
  },
  authorityCert: {
    flag: 'authority-cert',
    env: 'QUOTAD_AUTHORITY_CERT',
    default: undefined,
    help: 'PEM client certificate for an authority that requires one (mutual TLS), with --authority-key.',
  },
  authorityKey: {
    flag: 'authority-key',
    env: 'QUOTAD_AUTHORITY_KEY',
    default: undefined,
    help: 'PEM private key of --authority-cert.',
  },
  maxPendingChecks: {
    flag: 'max-pending-checks',
    env: 'QUOTAD_MAX_PENDING_CHECKS',
    default: '2000',
    help: "Requests waiting for the authority (their check or their key's confirmation) at most; a request beyond them gets 503 server_overloaded at once, with Retry-After.",
  },
  authorityBatch: {
    flag: 'authority-batch',
    env: 'QUOTAD_AUTHORITY_BATCH',
    default: 'on',
    help: 'on: coalesce the checks and settlements of one event-loop turn into one batch call to the authority.',
  },
  failMode: {
    flag: 'fail-mode',
    env: 'QUOTAD_FAIL_MODE',
    default: 'closed',
    help: 'closed: answer 503 while the authority cannot decide. open: let requests through, unmetered, and log each.',
  },
  upstreamUrl: {
    flag: 'upstream-url',
    env: 'OPENAI_BASE_URL',
    default: 'https://api.openai.com/v1',
    help: 'The model API (any OpenAI-compatible server: vLLM, Ollama, ...). Its key: OPENAI_API_KEY.',
  },
  upstreamTimeout: {
    flag: 'upstream-timeout',
    env: 'QUOTAD_UPSTREAM_TIMEOUT',
    default: '10m',
    help: 'How long the upstream may take to start answering (a whole answer, or the first bytes of a stream).',
  },
  maxBody: {
    flag: 'max-body',
    env: 'QUOTAD_MAX_BODY',
    default: '4mb',
    help: 'Largest request body (b, kb, mb); larger ones get 413 before anything is read or charged.',
  },
  headerTimeout: {
    flag: 'header-timeout',
    env: 'QUOTAD_HEADER_TIMEOUT',
    default: '10s',
    help: "A request's headers must all arrive within this of its first byte, or it gets 408 and its connection is closed.",
  },
  bodyTimeout: {
    flag: 'body-timeout',
    env: 'QUOTAD_BODY_TIMEOUT',
    default: '60s',
    help: 'A whole request, body included, must arrive within this of its first byte (4mb at 560 kbit/s), or 408 and closed.',
  },
  idleTimeout: {
    flag: 'idle-timeout',
    env: 'QUOTAD_IDLE_TIMEOUT',
    default: '75s',
    help: 'A connection with no request in flight (before its first or between two) is closed after this long idle.',
  },
  maxConnections: {
    flag: 'max-connections',
    env: 'QUOTAD_MAX_CONNECTIONS',
    default: '4096',
    help: "Open client connections at most; a connection past it is closed at once. Keep it under the process's open-files limit.",
  },
  trustedProxies: {
    flag: 'trusted-proxies',
    env: 'QUOTAD_TRUSTED_PROXIES',
    default: '',
    help: 'Comma-separated addresses or CIDRs whose X-Forwarded-For is believed. Empty: the socket address.',
  },
  jwtJwksFile: {
    flag: 'jwt-jwks-file',
    env: 'QUOTAD_JWT_JWKS_FILE',
    default: undefined,
    help: "A JWKS file of public keys for internal callers' JWTs (claims sub, org, tier). Or QUOTAD_JWT_SECRET.",
  },
  jwtIssuer: {
    flag: 'jwt-issuer',
    env: 'QUOTAD_JWT_ISSUER',
    default: undefined,
    help: 'When set, a JWT must carry this iss.',
  },
  jwtAudience: {
    flag: 'jwt-audience',
    env: 'QUOTAD_JWT_AUDIENCE',
    default: undefined,
    help: 'When set, a JWT must carry this aud.',
  },
  jwtMaxLifetime: {
    flag: 'jwt-max-lifetime',
    env: 'QUOTAD_JWT_MAX_LIFETIME',
    default: '24h',
    help: 'A JWT must carry exp, at most this long after its iat (or after now, without iat); an iat over 60s ahead is refused.',
  },
  demoUpstream: {
    flag: 'demo-upstream',
    env: 'QUOTAD_DEMO_UPSTREAM',
    default: 'off',
    help: 'on: when OPENAI_API_KEY is unset, answer from a built-in demo upstream (canned text, real token counts).',
  },
  logLevel: {
    flag: 'log-level',
    env: 'LOG_LEVEL',
    default: 'info',
    help: 'fatal, error, warn, info (one line per request), debug, trace or silent.',
  },
  requestLog: {
    flag: 'request-log',
    env: 'QUOTAD_REQUEST_LOG',
    default: undefined,
    help: 'Also append one line per request to this file (written once its cost is settled); reopened on SIGHUP, for logrotate. Unset: no file.',
  },
  requestLogFormat: {
    flag: 'request-log-format',
    env: 'QUOTAD_REQUEST_LOG_FORMAT',
    default: 'jsonl',
    help: 'jsonl (one JSON object a line) or csv (time, request_id, key_id, client, model, status, input_tokens, output_tokens, cost_usd, latency_ms; a header line when the file starts).',
  },
  shutdownGrace: {
    flag: 'shutdown-grace',
    env: 'QUOTAD_SHUTDOWN_GRACE',
    default: '30s',
    help: 'After SIGTERM, how long in-flight requests and pending settlements may take.',
  },
} as const satisfies Record<string, Setting>;

export interface GatewayConfig {
  address: HostPort;
  authorityTarget: string;
  /** TLS to the authority; plaintext when unset. */
  authorityTls: AuthorityTls | undefined;
  /** From QUOTAD_AUTHORITY_TOKEN only: sent with every QuotaService call. */
  authorityToken: string | undefined;
  authorityTimeoutMs: number;
  /** Checks waiting for the authority at most; more are shed (503 server_overloaded). */
  maxPendingChecks: number;
  /** Coalesce concurrent CheckQuota and RecordUsage calls into CheckQuotaBatch and RecordUsageBatch. */
  authorityBatch: boolean;
  failMode: FailMode;
  upstreamUrl: string;
  /** From OPENAI_API_KEY only. Unset: no Authorization sent upstream (a local vLLM or Ollama needs none). */
  upstreamApiKey: string | undefined;
  upstreamTimeoutMs: number;
  maxBodyBytes: number;
  /** Timeouts and the cap on client connections. */
  connections: ConnectionLimits;
  /** Addresses and CIDRs of proxies whose X-Forwarded-For is believed. */
  trustedProxies: string[];
  /** Unset: JWTs are refused with 401. */
  jwt: JwtConfig | undefined;
  demoUpstream: boolean;
  logLevel: string;
  /** The per-request lines also go to this file, in this format; unset: no file. */
  requestLog: { path: string; format: RequestLogFormat } | undefined;
  shutdownGraceMs: number;
}

/** Node keeps connections in a list; past this the cap protects nothing (a process has fewer open files). */
const MAX_CONNECTIONS_CAP = 10_000_000;

function connectionLimits(
  required: (setting: Setting) => string,
  s: typeof GATEWAY_SETTINGS,
): ConnectionLimits {
  const name = settingName;
  const limits = {
    headerTimeoutMs: positiveDurationSetting(name(s.headerTimeout), required(s.headerTimeout)),
    bodyTimeoutMs: positiveDurationSetting(name(s.bodyTimeout), required(s.bodyTimeout)),
    idleTimeoutMs: positiveDurationSetting(name(s.idleTimeout), required(s.idleTimeout)),
    maxConnections: countSetting(name(s.maxConnections), required(s.maxConnections), MAX_CONNECTIONS_CAP),
  };
  // The body timeout counts from the same first byte as the header timeout, so it cannot be shorter.
  if (limits.bodyTimeoutMs < limits.headerTimeoutMs) {
    throw new ConfigError(`${name(s.bodyTimeout)}: must be at least ${name(s.headerTimeout)}`);
  }
  return limits;
}

/** HMAC secrets shorter than this could be brute-forced from one token. */
export const MIN_JWT_SECRET_LENGTH = 32;

const SIZE = /^(\d+)(b|kb|mb)$/i;
const SIZE_UNIT: Record<string, number> = { b: 1, kb: 1024, mb: 1024 * 1024 };

function parseSize(name: string, text: string): number {
  const match = SIZE.exec(text.trim());
  const bytes = match ? Number(match[1]) * (SIZE_UNIT[(match[2] as string).toLowerCase()] as number) : 0;
  if (bytes <= 0) throw new ConfigError(`${name}: expected a size like 512kb or 4mb, got '${text}'`);
  return bytes;
}

function proxiesSetting(name: string, text: string): string[] {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const maxBits = family === 6 ? 128 : 32;
    const validBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= maxBits);
    if (family === 0 || !validBits || extra !== undefined) {
      throw new ConfigError(`${name}: '${entry}' is not an IP address or CIDR`);
    }
  }
  return entries;
}

function jwtSetting(
  env: NodeJS.ProcessEnv,
  jwksFile: string | undefined,
  claims: { issuer?: string; audience?: string; maxLifetimeMs: number },
): JwtConfig | undefined {
  const secret = env.QUOTAD_JWT_SECRET;
  if (secret && jwksFile) {
    throw new ConfigError('QUOTAD_JWT_SECRET and --jwt-jwks-file (QUOTAD_JWT_JWKS_FILE): set one, not both');
  }
  if (jwksFile) return { kind: 'jwks', path: jwksFile, ...claims };
  if (!secret) return undefined;
  if (secret.length < MIN_JWT_SECRET_LENGTH) {
    throw new ConfigError(
      `QUOTAD_JWT_SECRET: must be at least ${MIN_JWT_SECRET_LENGTH} characters (try: openssl rand -hex 32)`,
    );
  }
  return { kind: 'secret', secret: new TextEncoder().encode(secret), ...claims };
}

function requestLogSetting(
  path: string | undefined,
  format: string,
): { path: string; format: RequestLogFormat } | undefined {
  const formatName = settingName(GATEWAY_SETTINGS.requestLogFormat);
  if (!(REQUEST_LOG_FORMATS as readonly string[]).includes(format)) {
    throw new ConfigError(`${formatName}: expected jsonl or csv, got '${format}'`);
  }
  return path ? { path, format: format as RequestLogFormat } : undefined;
}

/** Reads `quotad gateway`'s settings from its arguments and the environment. */
export function parseGatewayConfig(args: readonly string[], env: NodeJS.ProcessEnv): GatewayConfig {
  const { read, required } = settingsReader(GATEWAY_SETTINGS, args, env, 'gateway');
  const name = settingName;
  const s = GATEWAY_SETTINGS;
  const failMode = required(s.failMode);
  if (failMode !== 'closed' && failMode !== 'open') {
    throw new ConfigError(`${name(s.failMode)}: expected closed or open, got '${failMode}'`);
  }
  const upstreamUrl = required(s.upstreamUrl);
  if (!URL.canParse(upstreamUrl)) {
    throw new ConfigError(`${name(s.upstreamUrl)}: expected a URL, got '${upstreamUrl}'`);
  }
  const issuer = read(s.jwtIssuer);
  const audience = read(s.jwtAudience);
  const claims = {
    ...(issuer ? { issuer } : {}),
    ...(audience ? { audience } : {}),
    maxLifetimeMs: positiveDurationSetting(name(s.jwtMaxLifetime), required(s.jwtMaxLifetime)),
  };
  return {
    address: parseHostPort(name(s.addr), required(s.addr)),
    authorityTarget: required(s.authority),
    authorityTls: authorityTlsSetting(
      { ca: name(s.authorityCa), cert: name(s.authorityCert), key: name(s.authorityKey) },
      { ca: read(s.authorityCa), cert: read(s.authorityCert), key: read(s.authorityKey) },
    ),
    authorityToken: tokenSetting(env, 'QUOTAD_AUTHORITY_TOKEN'),
    authorityTimeoutMs: durationSetting(name(s.authorityTimeout), required(s.authorityTimeout)),
    maxPendingChecks: countSetting(name(s.maxPendingChecks), required(s.maxPendingChecks), 1_000_000),
    authorityBatch: onOffSetting(name(s.authorityBatch), required(s.authorityBatch)),
    failMode,
    upstreamUrl,
    upstreamApiKey: env.OPENAI_API_KEY || undefined,
    upstreamTimeoutMs: durationSetting(name(s.upstreamTimeout), required(s.upstreamTimeout)),
    maxBodyBytes: parseSize(name(s.maxBody), required(s.maxBody)),
    connections: connectionLimits(required, s),
    trustedProxies: proxiesSetting(name(s.trustedProxies), required(s.trustedProxies)),
    jwt: jwtSetting(env, read(s.jwtJwksFile), claims),
    demoUpstream: onOffSetting(name(s.demoUpstream), required(s.demoUpstream)),
    logLevel: required(s.logLevel),
    requestLog: requestLogSetting(read(s.requestLog), required(s.requestLogFormat)),
    shutdownGraceMs: durationSetting(name(s.shutdownGrace), required(s.shutdownGrace)),
  };
}

/** `quotad gateway --help`. */
export function gatewayUsage(): string {
  return commandHelp(
    'gateway',
    GATEWAY_SETTINGS,
    `OPENAI_API_KEY (environment only) authenticates to the upstream. QUOTAD_JWT_SECRET (environment only; at least ${MIN_JWT_SECRET_LENGTH} characters) verifies HS256 JWTs from internal callers. QUOTAD_AUTHORITY_TOKEN (environment only) is sent to an authority that requires it.`,
  );
}
