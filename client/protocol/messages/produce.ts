import { bin, fields, int, list } from '../shape.js';
import { optError, topicPartition, type MaybeError, type TopicPartition } from './common.js';

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
  return {
    batches: list(fields(body, 'Produce'), 'batches', 'Produce', (v, path) => {
      const o = fields(v, path);
      return { ...topicPartition(o, path), batch: bin(o, 'batch', path) };
    }, 4_096),
  };
}

export function parseProduceResponse(body: unknown): ProduceResponse {
  return {
    results: list(fields(body, 'ProduceResponse'), 'results', 'ProduceResponse', (v, path) => {
      const o = fields(v, path);
      const error = optError(o, path);
      return {
        ...topicPartition(o, path),
        baseOffset: int(o, 'baseOffset', path),
        lastOffset: int(o, 'lastOffset', path),
        ...(error ? { error } : {}),
        ...(o['duplicate'] === true ? { duplicate: true } : {}),
      };
    }, 4_096),
  };
}
