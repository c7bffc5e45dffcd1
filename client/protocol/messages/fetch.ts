import { bin, fields, int, list } from '../shape.js';
import { offsetSpec, optError, topicPartition, type MaybeError, type OffsetSpec, type TopicPartition } from './common.js';

/**
 * Fetch (0x21): a long poll over one or more partitions.
 *
 *   request  = { maxWaitMs: int, minBytes: int, maxBytes: int,
 *                partitions: [{ topic, partition, offset, maxBytes? }] }
 *   response = { partitions: [{ topic, partition, highWatermark, logStartOffset, records: bin, error?: Error }] }
 *
 * The broker answers at once when the partitions together have at least `minBytes` readable at
 * the given offsets; otherwise it parks the request until an append makes that true or
 * `maxWaitMs` passes, then answers with whatever there is (possibly nothing). `records` holds
 * whole record batches back to back, as stored; the first may begin before `offset` (skip
 * records below it). Each partition returns at least one whole batch if any is readable, even
 * one larger than its `maxBytes`, so a big batch can never wedge a consumer.
 *
 * ListOffsets (0x22): where a position is.
 *
 *   request  = { partitions: [{ topic, partition, at: 'earliest' | 'latest' | timestampMs }] }
 *   response = { partitions: [{ topic, partition, offset, error?: Error }] }
 *
 * `latest` is the offset the next message will get; a timestamp gives the first offset whose
 * batch has a timestamp at or after it, or the latest offset if there is none.
 */
export interface FetchPartition extends TopicPartition {
  readonly offset: number;
  readonly maxBytes?: number;
}

export interface FetchRequest {
  readonly maxWaitMs: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  readonly partitions: readonly FetchPartition[];
}

export interface FetchedPartition extends TopicPartition, MaybeError {
  readonly highWatermark: number;
  readonly logStartOffset: number;
  readonly records: Buffer;
}

export interface FetchResponse {
  readonly partitions: readonly FetchedPartition[];
}

export interface ListOffsetsRequest {
  readonly partitions: readonly (TopicPartition & { readonly at: OffsetSpec })[];
}

export interface ListedOffset extends TopicPartition, MaybeError {
  readonly offset: number;
}

export interface ListOffsetsResponse {
  readonly partitions: readonly ListedOffset[];
}

const MAX_WAIT_MS = 300_000;

export function parseFetchRequest(body: unknown): FetchRequest {
  const o = fields(body, 'Fetch');
  return {
    maxWaitMs: int(o, 'maxWaitMs', 'Fetch', { min: 0, max: MAX_WAIT_MS }),
    minBytes: int(o, 'minBytes', 'Fetch', { min: 0 }),
    maxBytes: int(o, 'maxBytes', 'Fetch', { min: 1 }),
    partitions: list(o, 'partitions', 'Fetch', (v, path) => {
      const p = fields(v, path);
      const maxBytes = p['maxBytes'] === undefined || p['maxBytes'] === null ? undefined : int(p, 'maxBytes', path, { min: 1 });
      return { ...topicPartition(p, path), offset: int(p, 'offset', path, { min: 0 }), ...(maxBytes === undefined ? {} : { maxBytes }) };
    }, 4_096),
  };
}

export function parseFetchResponse(body: unknown): FetchResponse {
  return {
    partitions: list(fields(body, 'FetchResponse'), 'partitions', 'FetchResponse', (v, path) => {
      const p = fields(v, path);
      const error = optError(p, path);
      return {
        ...topicPartition(p, path),
        highWatermark: int(p, 'highWatermark', path),
        logStartOffset: int(p, 'logStartOffset', path),
        records: bin(p, 'records', path),
        ...(error ? { error } : {}),
      };
    }, 4_096),
  };
}

export function parseListOffsetsRequest(body: unknown): ListOffsetsRequest {
  return {
    partitions: list(fields(body, 'ListOffsets'), 'partitions', 'ListOffsets', (v, path) => {
      const p = fields(v, path);
      return { ...topicPartition(p, path), at: offsetSpec(p, 'at', path) };
    }, 4_096),
  };
}

export function parseListOffsetsResponse(body: unknown): ListOffsetsResponse {
  return {
    partitions: list(fields(body, 'ListOffsetsResponse'), 'partitions', 'ListOffsetsResponse', (v, path) => {
      const p = fields(v, path);
      const error = optError(p, path);
      return { ...topicPartition(p, path), offset: int(p, 'offset', path), ...(error ? { error } : {}) };
    }, 4_096),
  };
}

