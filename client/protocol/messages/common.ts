import type { ErrorBody } from './error.js';
import { errorNameOf } from '../errors.js';
import { fields, int, invalid, str, type Fields } from '../shape.js';

/** Topic names are checked for meaning by the broker; the codec only bounds their length. */
export const MAX_TOPIC_LENGTH = 249;

/** A message type with its readonly keys made assignable, for parsers that add optional keys after building it. */
export type Writable<T> = { -readonly [K in keyof T]: T[K] };

export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

const PARTITION_RANGE = Object.freeze({ min: 0, max: 0x7fffffff });

export function topicOf(o: Fields, path: string): string {
  return str(o, 'topic', path, MAX_TOPIC_LENGTH);
}

export function partitionOf(o: Fields, path: string): number {
  return int(o, 'partition', path, PARTITION_RANGE);
}

export function topicPartition(o: Fields, path: string): TopicPartition {
  return { topic: topicOf(o, path), partition: partitionOf(o, path) };
}

/** A per-partition error inside a response that succeeded as a whole (like Kafka's error codes). */
export function optError(o: Fields, path: string): ErrorBody | undefined {
  const v = o['error'];
  if (v === undefined || v === null) return undefined;
  const e = fields(v, `${path}.error`);
  const code = int(e, 'code', `${path}.error`, { min: 0, max: 0xffff });
  return { code, name: errorNameOf(code), message: str(e, 'message', `${path}.error`, 4096), ...(e['details'] ? { details: fields(e['details'], `${path}.error.details`) } : {}) };
}

export type MaybeError = { readonly error?: ErrorBody };

/** `earliest`, `latest`, or a timestamp in ms: where a position is looked up. */
export type OffsetSpec = 'earliest' | 'latest' | number;

export function offsetSpec(o: Fields, key: string, path: string): OffsetSpec {
  const v = o[key];
  if (v === 'earliest' || v === 'latest') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  return invalid(`${path}.${key}`, "'earliest', 'latest' or a timestamp in ms", v);
}
