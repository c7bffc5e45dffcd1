import { pino } from 'pino';

/**
 * The logging surface the broker needs; pino's logger satisfies it, and tests pass a silent one.
 * Structured fields first, message second, as pino expects.
 */
export interface Logger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** JSON lines on stderr, so stdout stays free for the CLI's own output. */
export function createLogger(level: LogLevel): Logger {
  return pino({ name: 'sluice', level }, pino.destination(2));
}
