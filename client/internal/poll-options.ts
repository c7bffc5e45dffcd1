import type { PollConsumerOptions, PositionChange, StartFrom } from '../poll-consumer.js';
import { SluiceError } from '../protocol/errors.js';
import { ISOLATION_LEVELS, type IsolationLevel } from '../protocol/messages/fetch.js';

export interface PollConsumerConfig {
  readonly topics: readonly string[];
  readonly group: string | undefined;
  readonly from: StartFrom;
  readonly autoCommit: boolean;
  readonly autoCommitIntervalMs: number;
  readonly maxWaitMs: number;
  readonly maxBytes: number;
  readonly maxPartitionBytes: number;
  readonly isolation: IsolationLevel;
  readonly onPosition: ((changes: readonly PositionChange[]) => void) | undefined;
}

export function parsePollConsumerOptions(o: PollConsumerOptions): PollConsumerConfig {
  if (!Array.isArray(o.topics) || o.topics.length === 0 || o.topics.some((t) => typeof t !== 'string')) {
    throw new SluiceError('INVALID_CONFIG', 'consumer option topics must be a non-empty array of topic names');
  }
  const positive = (v: number | undefined, fallback: number, name: string): number => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v <= 0) throw new SluiceError('INVALID_CONFIG', `consumer option ${name} must be a positive integer, got ${v}`);
    return v;
  };
  return Object.freeze({
    topics: [...o.topics],
    group: o.group,
    from: parseStartFrom(o.from),
    autoCommit: o.group !== undefined && (o.autoCommit ?? true),
    autoCommitIntervalMs: positive(o.autoCommitIntervalMs, 1_000, 'autoCommitIntervalMs'),
    maxWaitMs: positive(o.maxWaitMs, 500, 'maxWaitMs'),
    maxBytes: positive(o.maxBytes, 4 << 20, 'maxBytes'),
    maxPartitionBytes: positive(o.maxPartitionBytes, 1 << 20, 'maxPartitionBytes'),
    isolation: parseIsolation(o.isolation),
    onPosition: parseCallback(o.onPosition, 'onPosition'),
  });
}

function parseCallback<T>(fn: T | undefined, name: string): T | undefined {
  if (fn !== undefined && typeof fn !== 'function') throw new SluiceError('INVALID_CONFIG', `consumer option ${name} must be a function`);
  return fn;
}

function parseIsolation(isolation: IsolationLevel | undefined): IsolationLevel {
  if (isolation === undefined) return 'read_committed';
  if (!ISOLATION_LEVELS.includes(isolation)) {
    throw new SluiceError('INVALID_CONFIG', `consumer option isolation must be 'read_committed' or 'read_uncommitted', got ${JSON.stringify(isolation)}`);
  }
  return isolation;
}

function parseStartFrom(from: StartFrom | undefined): StartFrom {
  if (from === undefined) return 'latest';
  if (from === 'earliest' || from === 'latest') return from;
  const n = typeof from === 'object' && from !== null ? ('offset' in from ? from.offset : 'timestamp' in from ? from.timestamp : NaN) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new SluiceError('INVALID_CONFIG', "consumer option from must be 'earliest', 'latest', { offset } or { timestamp } with a non-negative integer");
  }
  return from;
}
