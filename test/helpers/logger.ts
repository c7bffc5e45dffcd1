import type { Logger } from '../../broker/logger.js';

/** A logger that keeps records in memory, so tests stay quiet and can assert on what was logged. */
export class MemoryLogger implements Logger {
  readonly records: Array<{ level: string; fields: object; message: string | undefined }> = [];
  debug(fields: object, message?: string): void {
    this.records.push({ level: 'debug', fields, message });
  }
  info(fields: object, message?: string): void {
    this.records.push({ level: 'info', fields, message });
  }
  warn(fields: object, message?: string): void {
    this.records.push({ level: 'warn', fields, message });
  }
  error(fields: object, message?: string): void {
    this.records.push({ level: 'error', fields, message });
  }
}
