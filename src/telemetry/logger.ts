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

export interface LoggerOptions {
  /** One of fatal, error, warn, info, debug, trace, silent; usually straight from config or the environment. */
  level: string;
  /** Becomes the `service` field on every line. */
  name: string;
  /** Where lines go; stdout when omitted. Tests pass a collecting stream. */
  destination?: DestinationStream;
}

function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/** A JSON logger with ISO timestamps, level names and credentials redacted. */
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
      redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
    },
    options.destination ?? pino.destination(1),
  );
}
