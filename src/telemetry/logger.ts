import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Fields that may carry credentials; callers log request context freely and these never leave the process. */
export const REDACTED_PATHS: readonly string[] = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  'apiKey',
  '*.apiKey',
  'api_key',
  '*.api_key',
  'token',
  '*.token',
  'adminToken',
  'secret',
  '*.secret',
];

/** What a scrubbed secret becomes. */
export const REDACTED = '[redacted]';

/** Shorter values are not treated as secrets: scrubbing them would mangle ordinary words (`ollama`). */
export const MIN_SECRET_LENGTH = 8;

/** Credentials recognisable by their shape, whoever's they are: quotad keys, OpenAI-style keys, JWTs. */
const CREDENTIAL_SHAPES: readonly RegExp[] = [
  /\bqd_(?:live|demo)_[0-9A-Za-z]{20,}/g,
  /\bqd_sign_[0-9a-f]{20,}/g,
  /(?<![\w-])sk-[\w-]{20,}/g,
  /\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*/g,
];

/**
 * A function that replaces, in any text, each of `secrets` (as written, and as escaped inside a JSON
 * string or a URL) and anything shaped like a credential with REDACTED.
 */
export function secretScrubber(secrets: readonly (string | undefined)[]): (text: string) => string {
  const literals = new Set<string>();
  for (const secret of secrets) {
    if (secret === undefined || secret.length < MIN_SECRET_LENGTH) continue;
    literals.add(secret);
    literals.add(JSON.stringify(secret).slice(1, -1));
    literals.add(encodeURIComponent(secret));
  }
  // Longest first, so a secret that contains another goes whole.
  const ordered = [...literals].sort((a, b) => b.length - a.length);
  return (text) => {
    let scrubbed = text;
    for (const literal of ordered) {
      if (scrubbed.includes(literal)) scrubbed = scrubbed.split(literal).join(REDACTED);
    }
    for (const shape of CREDENTIAL_SHAPES) scrubbed = scrubbed.replace(shape, REDACTED);
    return scrubbed;
  };
}

export interface LoggerOptions {
  /** One of fatal, error, warn, info, debug, trace, silent; usually straight from config or the environment. */
  level: string;
  /** Becomes the `service` field on every line. */
  name: string;
  /** Where lines go; stdout when omitted. Tests pass a collecting stream. */
  destination?: DestinationStream;
  /**
   * The process's own secrets (upstream key, admin and authority tokens, JWT secret, Redis password):
   * scrubbed from every line written, whichever field or message carries them.
   */
  secrets?: readonly (string | undefined)[];
}

function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/**
 * A JSON logger with ISO timestamps, level names and credentials redacted: by field name, and in the
 * finished line (so a secret echoed inside an upstream's error message is caught too, at any call site).
 */
export function createLogger(options: LoggerOptions): Logger {
  if (!isLogLevel(options.level)) {
    throw new Error(`unknown log level '${options.level}': expected one of ${LOG_LEVELS.join(', ')}`);
  }
  return pino(
    {
      level: options.level,
      base: { service: options.name },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names, not pino's numbers, so log queries read `level="error"`.
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACTED_PATHS], censor: REDACTED },
      hooks: { streamWrite: secretScrubber(options.secrets ?? []) },
    },
    options.destination ?? pino.destination(1),
  );
}
