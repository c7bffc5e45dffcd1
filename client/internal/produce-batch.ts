import type { RecordMetadata } from '../producer.js';
import { SluiceError, isSluiceError } from '../protocol/errors.js';
import type { BatchBuilder } from './accumulator.js';

/**
 * A batch of one partition. It is OPEN (records append to it) until it is full or taken for a
 * request (sealed). Its bytes are encoded when it first goes on the wire, stamped then with the
 * producer id, epoch and the partition's next sequence number; retries resend them unchanged.
 */
export interface Batch {
  readonly queue: PartitionQueue;
  readonly builder: BatchBuilder;
  /** Each record's timestamp, for its RecordMetadata. */
  readonly timestamps: number[];
  /** Each record's resolve (a failure resolves them with a thenable that rejects). */
  readonly settlers: Resolve[];
  /** Record bytes, as counted against maxBufferedBytes. */
  bytes: number;
  /** When an open batch is due to be sent (0: at once); flush() sets it to 0. */
  deadline: number;
  encoded: Buffer | undefined;
  /** The producer generation (see ProducerIdentityKeeper.generation) it was stamped in, and its base sequence; -1 if not stamped. */
  generation: number;
  baseSequence: number;
  attempts: number;
  done: boolean;
}

/**
 * One topic-partition: the open batch, full or retried batches waiting in order ahead of it, and
 * the batch on the wire (at most one, so a partition's batches are written in order).
 */
export interface PartitionQueue {
  readonly topic: string;
  readonly partition: number;
  open: Batch | undefined;
  readonly sealed: Batch[];
  inFlight: Batch | undefined;
  retryAt: number;
  /** About the size of recent batches: the next open batch starts with room for that much. */
  sizeHint: number;
  /** The sequence number the next stamped batch starts at, valid while `generation` is the producer's. */
  sequence: number;
  generation: number;
}

export interface TopicQueues {
  readonly topic: string;
  readonly partitions: Map<number, PartitionQueue>;
  last: PartitionQueue | undefined;
}

/** A send's resolve: with its RecordMetadata, or with a thenable that rejects. */
export type Resolve = (value: RecordMetadata | PromiseLike<RecordMetadata>) => void;

export function toSluiceError(err: unknown): SluiceError {
  return isSluiceError(err) ? err : new SluiceError('UNKNOWN', String(err), { cause: err });
}

/** A thenable that rejects with `error`: resolving a promise with it rejects that promise. */
export function rejection(error: unknown): PromiseLike<never> {
  const thenable = {
    then(_onFulfilled: unknown, onRejected?: ((reason: unknown) => unknown) | null): PromiseLike<never> {
      onRejected?.(error);
      return thenable;
    },
  };
  return thenable as PromiseLike<never>;
}
