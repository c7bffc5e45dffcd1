import { bin, fields, int, list } from '../shape.js';
import { optError, partitionOf, topicOf, type MaybeError, type TopicPartition, type Writable } from './common.js';

/**
 * Produce (0x20): record batches for one or more partitions, appended in request order.
 *
 *   request  = { batches: [{ topic, partition, batch: bin }] }
 *   response = { results: [{ topic, partition, baseOffset, lastOffset, error?: Error }] }
 *
 * `batch` is one RecordBatch v2 (docs/record-batch.md) exactly as it will be stored; the broker
 * verifies it and rewrites only its base offset. Each result answers the batch at the same index.
 * A result is sent once its batch is durable under the broker's fsync mode. A failed batch
 * carries `error` (e.g. TOPIC_NOT_FOUND, CORRUPT_RECORD) and does not fail the others.
 */
export interface ProduceBatch extends TopicPartition {
  readonly batch: Buffer;
}

export interface ProduceRequest {
  readonly batches: readonly ProduceBatch[];
}

export interface ProduceResult extends TopicPartition, MaybeError {
  readonly baseOffset: number;
  readonly lastOffset: number;
  /** An idempotent producer's retry of a batch already written: these are its original offsets. */
  readonly duplicate?: boolean;
}

export interface ProduceResponse {
  readonly results: readonly ProduceResult[];
}

export function parseProduceRequest(body: unknown): ProduceRequest {
  return { batches: list(fields(body, 'Produce'), 'batches', 'Produce', produceBatch, 4_096) };
}

// The parsers of the four hot messages (Produce and Fetch, both ways) build each item as one
// literal, with optional keys added after: object spread costs several times more per item.
function produceBatch(v: unknown, path: string): ProduceBatch {
  const o = fields(v, path);
  return { topic: topicOf(o, path), partition: partitionOf(o, path), batch: bin(o, 'batch', path) };
}

export function parseProduceResponse(body: unknown): ProduceResponse {
  return { results: list(fields(body, 'ProduceResponse'), 'results', 'ProduceResponse', produceResult, 4_096) };
}

function produceResult(v: unknown, path: string): ProduceResult {
  const o = fields(v, path);
  const result: Writable<ProduceResult> = {
    topic: topicOf(o, path),
    partition: partitionOf(o, path),
    baseOffset: int(o, 'baseOffset', path),
    lastOffset: int(o, 'lastOffset', path),
  };
  const error = optError(o, path);
  if (error) result.error = error;
  if (o['duplicate'] === true) result.duplicate = true;
  return result;
}
