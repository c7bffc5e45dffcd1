import { SluiceError } from '../client/protocol/errors.js';
import type { LogLevel, Logger } from './logger.js';

import type { FsyncMode } from './log/options.js';

export type { FsyncMode };

/** What a caller may pass to `startBroker`; every field is optional and documented with its default. */
export interface BrokerOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** TCP port; 0 picks a free one. Default 7420. */
  port?: number;
  /** Data directory (created if missing). Default `./sluice-data`. */
  dataDir?: string;
  /** When appends reach the disk before they are acknowledged (docs/operations.md). Default `always`. */
  fsync?: FsyncMode;
  /** Sync period under `fsync=interval`. Default 1000 ms. */
  fsyncIntervalMs?: number;
  /** Largest frame after the handshake, length prefix included. Default 8 MiB. */
  maxFrameBytes?: number;
  /** Largest record batch a producer may send. Default 1 MiB. */
  maxBatchBytes?: number;
  /** Largest frame before the handshake completes. Default 8 KiB. */
  handshakeMaxFrameBytes?: number;
  /** A connection must send Hello within this time. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** A connection that sends nothing for this long is closed. Default 60 s. */
  idleTimeoutMs?: number;
  /** Unanswered requests per connection before the broker stops reading from it. Default 128. */
  maxInFlight?: number;
  /** Outbound bytes queued for a connection before it counts as a slow consumer and is cut. Default 64 MiB. */
  maxPendingBytes?: number;
  /** How long a graceful close waits for in-flight requests before cutting connections. Default 10 s. */
  shutdownTimeoutMs?: number;
  /** Create a topic on first produce instead of answering TOPIC_NOT_FOUND. Default false. */
  autoCreateTopics?: boolean;
  /** Partitions of an auto-created topic. Default 1. */
  defaultPartitions?: number;
  /** A consumer-group member not heard from for this long is removed. Default 30 s. */
  groupSessionTimeoutMs?: number;
  /** How often group members are told to heartbeat. Default 3 s (capped below the session timeout). */
  groupHeartbeatIntervalMs?: number;
  /** How often retention runs over every partition. Default 5 min. */
  retentionCheckIntervalMs?: number;
  /** Log level of the default logger. Default `info`. */
  logLevel?: LogLevel;
  /** A logger to use instead of the default pino logger on stderr. */
  logger?: Logger;
}

/** Parsed, fully defaulted and frozen broker settings. */
export interface BrokerConfig {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly fsync: FsyncMode;
  readonly fsyncIntervalMs: number;
  readonly maxFrameBytes: number;
  readonly maxBatchBytes: number;
  readonly handshakeMaxFrameBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly maxInFlight: number;
  readonly maxPendingBytes: number;
  readonly shutdownTimeoutMs: number;
  readonly autoCreateTopics: boolean;
  readonly defaultPartitions: number;
  readonly groupSessionTimeoutMs: number;
  readonly groupHeartbeatIntervalMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly logLevel: LogLevel;
  readonly logger: Logger | undefined;
}

const FSYNC_MODES: readonly FsyncMode[] = ['always', 'interval', 'never'];
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/** Turns untrusted options into a BrokerConfig, naming the first bad option in its error. */
export function parseBrokerConfig(input: unknown = {}): BrokerConfig {
  if (typeof input !== 'object' || input === null) bad('options', 'an object');
  const o = input as Record<string, unknown>;
  const idleTimeoutMs = intOpt(o, 'idleTimeoutMs', 60_000, 100, 86_400_000);
  const groupSessionTimeoutMs = intOpt(o, 'groupSessionTimeoutMs', 30_000, 100, 3_600_000);
  return Object.freeze({
    host: strOpt(o, 'host', '127.0.0.1'),
    port: intOpt(o, 'port', 7420, 0, 65_535),
    dataDir: strOpt(o, 'dataDir', './sluice-data'),
    fsync: enumOpt(o, 'fsync', 'always', FSYNC_MODES),
    fsyncIntervalMs: intOpt(o, 'fsyncIntervalMs', 1_000, 1, 3_600_000),
    maxFrameBytes: intOpt(o, 'maxFrameBytes', 8 << 20, 1 << 10, 1 << 30),
    maxBatchBytes: intOpt(o, 'maxBatchBytes', 1 << 20, 1 << 10, 64 << 20),
    handshakeMaxFrameBytes: intOpt(o, 'handshakeMaxFrameBytes', 8 << 10, 64, 1 << 20),
    handshakeTimeoutMs: intOpt(o, 'handshakeTimeoutMs', 10_000, 10, 600_000),
    idleTimeoutMs,
    // A third of the idle timeout leaves room for two lost heartbeats before the cut.
    heartbeatIntervalMs: Math.max(1, Math.floor(idleTimeoutMs / 3)),
    maxInFlight: intOpt(o, 'maxInFlight', 128, 1, 65_536),
    maxPendingBytes: intOpt(o, 'maxPendingBytes', 64 << 20, 1 << 10, 2 ** 31),
    shutdownTimeoutMs: intOpt(o, 'shutdownTimeoutMs', 10_000, 0, 600_000),
    autoCreateTopics: boolOpt(o, 'autoCreateTopics', false),
    defaultPartitions: intOpt(o, 'defaultPartitions', 1, 1, 10_000),
    groupSessionTimeoutMs,
    groupHeartbeatIntervalMs: Math.min(intOpt(o, 'groupHeartbeatIntervalMs', 3_000, 10, 3_600_000), Math.floor(groupSessionTimeoutMs / 3)),
    retentionCheckIntervalMs: intOpt(o, 'retentionCheckIntervalMs', 300_000, 10, 86_400_000),
    logLevel: enumOpt(o, 'logLevel', 'info', LOG_LEVELS),
    logger: loggerOpt(o),
  });
}

function bad(path: string, expected: string, got?: unknown): never {
  const suffix = arguments.length > 2 ? `, got ${JSON.stringify(got)}` : '';
  throw new SluiceError('INVALID_CONFIG', `broker option ${path} must be ${expected}${suffix}`, { details: { path } });
}

function intOpt(o: Record<string, unknown>, key: string, fallback: number, min: number, max: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(key, `an integer in [${min}, ${max}]`, v);
  return v;
}

function strOpt(o: Record<string, unknown>, key: string, fallback: string): string {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || v.length === 0) bad(key, 'a non-empty string', v);
  return v;
}

function boolOpt(o: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') bad(key, 'a boolean', v);
  return v;
}

function enumOpt<T extends string>(o: Record<string, unknown>, key: string, fallback: T, options: readonly T[]): T {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) bad(key, `one of ${options.join('|')}`, v);
  return v as T;
}

function loggerOpt(o: Record<string, unknown>): Logger | undefined {
  const v = o['logger'];
  if (v === undefined) return undefined;
  const l = v as Record<string, unknown>;
  if (typeof v !== 'object' || v === null || !['debug', 'info', 'warn', 'error'].every((m) => typeof l[m] === 'function')) {
    bad('logger', 'an object with debug, info, warn and error methods');
  }
  return v as Logger;
}
