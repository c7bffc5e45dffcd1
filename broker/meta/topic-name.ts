import { SluiceError } from '../../client/protocol/errors.js';
import type { TopicConfig } from './meta-store.js';

/** Kafka's limit: a topic name becomes a directory name, with room for a partition suffix. */
export const MAX_TOPIC_NAME_BYTES = 249;
export const MAX_PARTITIONS = 10_000;
/** A segment must hold at least a few batches; below this, rolling would dominate the work. */
export const MIN_SEGMENT_BYTES = 1024;
/** The storage engine's cap (broker/log/options.ts; a unit test keeps the two equal). */
export const MAX_SEGMENT_BYTES = 1024 * 1024 * 1024;

const LEGAL = /^[A-Za-z0-9._-]+$/;
const ILLEGAL_CHAR = /[^A-Za-z0-9._-]/u;

/**
 * Returns `name` if it is a legal topic name, else throws INVALID_TOPIC saying what is wrong.
 * Kafka's rules, because a topic name is also a directory name under DATA/topics/: 1 to 249
 * bytes of [A-Za-z0-9._-]. Unlike Kafka, a name may not start with `.`: such directories are
 * the storage engine's own (a topic being deleted is renamed `.deleting-...`).
 */
export function validateTopicName(name: unknown): string {
  if (typeof name !== 'string') {
    throw invalidTopic(`topic name must be a string, got ${describeType(name)}`, name);
  }
  if (name.length === 0) throw invalidTopic('topic name must not be empty', name);
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_TOPIC_NAME_BYTES) {
    throw invalidTopic(`topic name is ${bytes} bytes long; the limit is ${MAX_TOPIC_NAME_BYTES}`, name);
  }
  if (!LEGAL.test(name)) {
    const bad = ILLEGAL_CHAR.exec(name)?.[0] ?? '';
    throw invalidTopic(
      `topic name ${JSON.stringify(name)} contains ${JSON.stringify(bad)}; only ASCII letters, digits, '.', '_' and '-' are allowed`,
      name,
    );
  }
  if (name.startsWith('.')) {
    throw invalidTopic(`topic name ${JSON.stringify(name)} starts with '.'; such names are reserved for the broker's own files`, name);
  }
  return name;
}

/** Returns `n` if it is a legal partition count (an integer in 1..MAX_PARTITIONS), else INVALID_CONFIG. */
export function validatePartitionCount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_PARTITIONS) {
    throw new SluiceError('INVALID_CONFIG', `partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${describeValue(n)}`, {
      details: { field: 'partitions' },
    });
  }
  return n;
}

const CONFIG_FIELDS = ['retentionMs', 'retentionBytes', 'segmentBytes'] as const;

/**
 * Parses user input (`unknown`, e.g. a decoded request body) into a TopicConfig: every field
 * optional, `undefined` and `null` both mean "not set" (the broker default applies), numbers must
 * be positive safe integers, and unknown keys are refused so a typo is not silently ignored.
 * Throws INVALID_CONFIG naming the field.
 */
export function validateTopicConfig(input: unknown): TopicConfig {
  if (input === undefined || input === null) return { retentionMs: null, retentionBytes: null, segmentBytes: null };
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new SluiceError('INVALID_CONFIG', `topic config must be an object, got ${describeType(input)}`);
  }
  const record = input as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(CONFIG_FIELDS as readonly string[]).includes(key)) {
      throw new SluiceError('INVALID_CONFIG', `unknown topic config ${JSON.stringify(key)}; known: ${CONFIG_FIELDS.join(', ')}`, {
        details: { field: key },
      });
    }
  }
  const segmentBytes = optionalInteger(record, 'segmentBytes', MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
  return {
    retentionMs: optionalInteger(record, 'retentionMs', 1, Number.MAX_SAFE_INTEGER),
    retentionBytes: optionalInteger(record, 'retentionBytes', 1, Number.MAX_SAFE_INTEGER),
    segmentBytes,
  };
}

function optionalInteger(record: Record<string, unknown>, field: string, min: number, max: number): number | null {
  const value = record[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new SluiceError('INVALID_CONFIG', `${field} must be an integer from ${min} to ${max}, got ${describeValue(value)}`, {
      details: { field },
    });
  }
  return value;
}

function invalidTopic(message: string, name: unknown): SluiceError {
  return new SluiceError('INVALID_TOPIC', message, typeof name === 'string' ? { details: { topic: name.slice(0, 300) } } : {});
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

function describeValue(value: unknown): string {
  return typeof value === 'number' ? String(value) : describeType(value);
}
