/**
 * PartitionLog options: the user-facing `PartitionLogOptions` and the parsed, frozen,
 * fully defaulted `PartitionLogConfig` (style note 8: parse once at the boundary).
 */
import { SluiceError } from '../../client/protocol/errors.js';
import { type FileIO, nodeFileIO } from './file-io.js';

export type FsyncMode = 'always' | 'interval' | 'never';

/** Where the log reports recoveries and corruption. The broker's pino logger fits. */
export interface LogSink {
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
}

export interface PartitionLogOptions {
  /** The partition's directory; created if missing. */
  dir: string;
  /** When an append is acknowledged and becomes visible; see docs/storage.md. Default 'always'. */
  fsync?: FsyncMode;
  /** Period of the background fdatasync under fsync='interval'. Default 1000. */
  fsyncIntervalMs?: number;
  /** Roll to a new segment before one would grow past this. Default 128 MiB, at most 1 GiB. */
  segmentBytes?: number;
  /** Roll when a batch is this much newer (record time) than the segment's first. Default 7 days. */
  segmentMs?: number;
  /** Bytes of log between sparse index entries. Default 4096. */
  indexIntervalBytes?: number;
  /** Delete closed segments whose newest record is older than this. null (default): keep. */
  retentionMs?: number | null;
  /** Delete the oldest closed segments while the rest still holds this many bytes. null: keep. */
  retentionBytes?: number | null;
  /** Largest batch `append` accepts (RECORD_TOO_LARGE above). Default 1 MiB. */
  maxBatchBytes?: number;
  /** Newest committed batches kept in memory to answer reads at the end of the log without the file. Default 32 KiB; 0: none. */
  recentBatchBytes?: number;
  /** File system; default the real one. Tests pass CrashFS. */
  io?: FileIO;
  /** Clock for retention. Default Date.now. */
  now?: () => number;
  /** Called once when a write or fsync fails; the log then refuses appends. */
  onFatal?: (err: Error) => void;
  /** Recovery notes (info) and corruption (warn). Default: warnings to console.warn. */
  logger?: LogSink;
}

export interface PartitionLogConfig {
  readonly dir: string;
  readonly fsync: FsyncMode;
  readonly fsyncIntervalMs: number;
  readonly segmentBytes: number;
  readonly segmentMs: number;
  readonly indexIntervalBytes: number;
  readonly retentionMs: number | null;
  readonly retentionBytes: number | null;
  readonly maxBatchBytes: number;
  readonly recentBatchBytes: number;
  readonly io: FileIO;
  readonly now: () => number;
  readonly onFatal: (err: Error) => void;
  readonly logger: LogSink;
}

// Index positions are uint32; 1 GiB keeps every position (and a batch past it) far inside that.
export const MAX_SEGMENT_BYTES = 1024 * 1024 * 1024;

const consoleSink: LogSink = {
  info: () => {},
  warn: (fields, message) => console.warn(`sluice log: ${message ?? ''}`, fields),
};

function bad(path: string, value: unknown, rule: string): SluiceError {
  return new SluiceError('INVALID_CONFIG', `log option ${path} = ${String(value)}: ${rule}`, { details: { path } });
}

function int(options: PartitionLogOptions, key: keyof PartitionLogOptions, fallback: number, min: number, max: number): number {
  const value = options[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw bad(key, value, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function nullableInt(options: PartitionLogOptions, key: 'retentionMs' | 'retentionBytes'): number | null {
  const value = options[key];
  if (value === undefined || value === null) return null;
  if (!Number.isSafeInteger(value) || value < 0) throw bad(key, value, 'must be null or a non-negative integer');
  return value;
}

export function parsePartitionLogOptions(options: PartitionLogOptions): PartitionLogConfig {
  if (typeof options !== 'object' || options === null) throw bad('options', options, 'must be an object');
  if (typeof options.dir !== 'string' || options.dir.length === 0) throw bad('dir', options.dir, 'must be a non-empty string');
  const fsync = options.fsync ?? 'always';
  if (fsync !== 'always' && fsync !== 'interval' && fsync !== 'never') {
    throw bad('fsync', fsync, "must be 'always', 'interval' or 'never'");
  }
  const maxBatchBytes = int(options, 'maxBatchBytes', 1024 * 1024, 61, MAX_SEGMENT_BYTES);
  return Object.freeze({
    dir: options.dir,
    fsync,
    fsyncIntervalMs: int(options, 'fsyncIntervalMs', 1000, 1, 24 * 3600 * 1000),
    segmentBytes: int(options, 'segmentBytes', 128 * 1024 * 1024, 1, MAX_SEGMENT_BYTES),
    segmentMs: int(options, 'segmentMs', 7 * 24 * 3600 * 1000, 1, Number.MAX_SAFE_INTEGER),
    indexIntervalBytes: int(options, 'indexIntervalBytes', 4096, 1, MAX_SEGMENT_BYTES),
    retentionMs: nullableInt(options, 'retentionMs'),
    retentionBytes: nullableInt(options, 'retentionBytes'),
    maxBatchBytes,
    // Small on purpose: batches held longer than a scavenge or two are promoted to V8's old space,
    // which made young-generation pauses longer (docs/performance.md, fourth pass).
    recentBatchBytes: int(options, 'recentBatchBytes', 32 * 1024, 0, MAX_SEGMENT_BYTES),
    io: options.io ?? nodeFileIO,
    now: options.now ?? Date.now,
    onFatal: options.onFatal ?? (() => {}),
    logger: options.logger ?? consoleSink,
  });
}
