import { bin, fields, int, list, oneOf } from '../shape.js';
import { offsetSpec, optError, partitionOf, topicOf, topicPartition, type MaybeError, type OffsetSpec, type TopicPartition, type Writable } from './common.js';

/**
 * Fetch (0x21): a long poll over one or more partitions.
 *
 *   request  = { maxWaitMs: int, minBytes: int, maxBytes: int, isolation?: 'read_uncommitted' | 'read_committed',
 *                partitions: [{ topic, partition, offset, maxBytes? }] }
 *   response = { partitions: [{ topic, partition, highWatermark, lastStableOffset, logStartOffset,
 *                               nextOffset, records: bin, error?: Error }] }
 *
 * The broker answers at once when the partitions together have at least `minBytes` readable at
 * the given offsets; otherwise it parks the request until an append (or a transaction marker)
 * makes that true or `maxWaitMs` passes, then answers with whatever there is (possibly nothing).
 * `records` holds whole record batches back to back, as stored; the first may begin before
 * `offset` (skip records below it). Each partition returns at least one whole batch if any is
 * readable, even one larger than its `maxBytes`, so a big batch can never wedge a consumer.
 *
 * Control batches (transaction markers) are never returned. `read_committed` (default
 * `read_uncommitted`) reads only below `lastStableOffset` (the first offset of the oldest open
 * transaction, else the high watermark) and leaves out batches of aborted transactions.
 * `nextOffset` is where the next Fetch of the partition continues: past the last batch the
 * broker examined, returned or left out, so a consumer moves past left-out batches even when
 * `records` is empty.
 *
 * ListOffsets (0x22): where a position is.
 *
 *   request  = { isolation?, partitions: [{ topic, partition, at: 'earliest' | 'latest' | timestampMs }] }
 *   response = { partitions: [{ topic, partition, offset, error?: Error }] }
 *
 * `latest` is the offset the next message will get (read_committed: the last stable offset); a
 * timestamp gives the first offset whose batch has a timestamp at or after it, or the latest
 * offset if there is none.
 */
export type IsolationLevel = 'read_uncommitted' | 'read_committed';

export const ISOLATION_LEVELS: readonly IsolationLevel[] = ['read_uncommitted', 'read_committed'];

export interface FetchPartition extends TopicPartition {
  readonly offset: number;
  readonly maxBytes?: number;
}

export interface FetchRequest {
  readonly maxWaitMs: number;
  readonly minBytes: number;
  readonly maxBytes: number;
  /** Default read_uncommitted. */
  readonly isolation?: IsolationLevel;
  readonly partitions: readonly FetchPartition[];
}

export interface FetchedPartition extends TopicPartition, MaybeError {
  readonly highWatermark: number;
  /** read_committed readers see offsets below this only. -1 on error. */
  readonly lastStableOffset: number;
  readonly logStartOffset: number;
  /** Where the next Fetch of this partition continues (the requested offset when nothing was examined or on error). */
  readonly nextOffset: number;
  readonly records: Buffer;
}

export interface FetchResponse {
  readonly partitions: readonly FetchedPartition[];
}

export interface ListOffsetsRequest {
  /** Default read_uncommitted; read_committed makes `latest` the last stable offset. */
  readonly isolation?: IsolationLevel;
  readonly partitions: readonly (TopicPartition & { readonly at: OffsetSpec })[];
}

export interface ListedOffset extends TopicPartition, MaybeError {
  readonly offset: number;
}

export interface ListOffsetsResponse {
  readonly partitions: readonly ListedOffset[];
}

const MAX_WAIT_MS = 300_000;

const WAIT_RANGE = Object.freeze({ min: 0, max: MAX_WAIT_MS });
const NON_NEGATIVE = Object.freeze({ min: 0 });
const POSITIVE = Object.freeze({ min: 1 });

export function parseFetchRequest(body: unknown): FetchRequest {
  const o = fields(body, 'Fetch');
  const isolation = oneOf(o, 'isolation', 'Fetch', ISOLATION_LEVELS, 'read_uncommitted');
  const request: Writable<FetchRequest> = {
    maxWaitMs: int(o, 'maxWaitMs', 'Fetch', WAIT_RANGE),
    minBytes: int(o, 'minBytes', 'Fetch', NON_NEGATIVE),
    maxBytes: int(o, 'maxBytes', 'Fetch', POSITIVE),
    partitions: list(o, 'partitions', 'Fetch', fetchPartition, 4_096),
  };
  if (isolation === 'read_committed') request.isolation = isolation;
  return request;
}

// As in produce.ts: one literal per item, optional keys added after, no spread on this path.
function fetchPartition(v: unknown, path: string): FetchPartition {
  const p = fields(v, path);
  const partition: Writable<FetchPartition> = { topic: topicOf(p, path), partition: partitionOf(p, path), offset: int(p, 'offset', path, NON_NEGATIVE) };
  if (p['maxBytes'] !== undefined && p['maxBytes'] !== null) partition.maxBytes = int(p, 'maxBytes', path, POSITIVE);
  return partition;
}

export function parseFetchResponse(body: unknown): FetchResponse {
  return { partitions: list(fields(body, 'FetchResponse'), 'partitions', 'FetchResponse', fetchedPartition, 4_096) };
}

function fetchedPartition(v: unknown, path: string): FetchedPartition {
  const p = fields(v, path);
  const fetched: Writable<FetchedPartition> = {
    topic: topicOf(p, path),
    partition: partitionOf(p, path),
    highWatermark: int(p, 'highWatermark', path),
    lastStableOffset: int(p, 'lastStableOffset', path),
    logStartOffset: int(p, 'logStartOffset', path),
    nextOffset: int(p, 'nextOffset', path),
    records: bin(p, 'records', path),
  };
  const error = optError(p, path);
  if (error) fetched.error = error;
  return fetched;
}

export function parseListOffsetsRequest(body: unknown): ListOffsetsRequest {
  const o = fields(body, 'ListOffsets');
  const isolation = oneOf(o, 'isolation', 'ListOffsets', ISOLATION_LEVELS, 'read_uncommitted');
  return {
    ...(isolation === 'read_committed' ? { isolation } : {}),
    partitions: list(o, 'partitions', 'ListOffsets', (v, path) => {
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

