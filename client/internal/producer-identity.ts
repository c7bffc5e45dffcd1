import type { Connection, RequestOptions } from '../connection.js';
import type { ErrorName, SluiceError } from '../protocol/errors.js';
import { retrying, type ProducerIdentity } from '../transaction.js';
import { advanceSequence } from './accumulator.js';
import type { Batch } from './produce-batch.js';
import type { ProducerConfig } from './producer-options.js';

/**
 * Errors the broker answers for a batch it refused before writing any of it: the batch's
 * sequence numbers were not used, so the partition's next batch takes them. Any other final
 * failure of an idempotent batch leaves the broker's sequence unknown (it may have been written
 * with its reply lost, or refused for a reason that concerns the sequence itself), so the
 * producer takes a fresh producer id for its next batches.
 */
const NOT_WRITTEN: ReadonlySet<ErrorName> = new Set(['TOPIC_NOT_FOUND', 'PARTITION_NOT_FOUND', 'INVALID_RECORD', 'CORRUPT_RECORD', 'RECORD_TOO_LARGE', 'INVALID_TXN_STATE', 'INVALID_REQUEST']);

/**
 * The producer's identity (docs/semantics.md, "The idempotent producer"): the producer id and
 * epoch from InitProducer that batches are stamped with, the generation counter that restarts
 * every partition's sequence when the identity changes, and the fence that ends the producer.
 */
export class ProducerIdentityKeeper {
  readonly #connection: Connection;
  readonly #config: ProducerConfig;
  readonly #requestOptions: RequestOptions;
  /** The producer id and epoch batches are stamped with; undefined before InitProducer answered, and after a reset. */
  #identity: ProducerIdentity | undefined;
  /** The InitProducer on its way, if any. */
  #initializing: Promise<ProducerIdentity> | undefined;
  /** Counts identity changes: each partition's sequence starts at 0 again in a new generation. */
  #generation = 0;
  /** Set once the broker fenced this producer (PRODUCER_FENCED): everything fails with it. */
  #fatal: SluiceError | undefined;

  constructor(connection: Connection, config: ProducerConfig, requestOptions: RequestOptions) {
    this.#connection = connection;
    this.#config = config;
    this.#requestOptions = requestOptions;
  }

  /** The producer id and epoch the next batch is stamped with. */
  get current(): ProducerIdentity | undefined {
    return this.#identity;
  }

  get generation(): number {
    return this.#generation;
  }

  get fatal(): SluiceError | undefined {
    return this.#fatal;
  }

  /** Records PRODUCER_FENCED; false when the producer was fenced already. */
  fence(error: SluiceError): boolean {
    if (this.#fatal !== undefined) return false;
    this.#fatal = error;
    return true;
  }

  /** How long InitProducer, EndTxn and the transaction stagings are retried on retriable errors. */
  retryBudgetMs(): number {
    return Math.max(this.#config.requestTimeoutMs ?? 30_000, 30_000);
  }

  /** The current identity, after an InitProducer if there is none (one at a time; retried on retriable errors). */
  ensure(): Promise<ProducerIdentity> {
    if (this.#fatal !== undefined) return Promise.reject(this.#fatal);
    if (this.#identity !== undefined) return Promise.resolve(this.#identity);
    this.#initializing ??= this.#initProducer().finally(() => {
      this.#initializing = undefined;
    });
    return this.#initializing;
  }

  async #initProducer(): Promise<ProducerIdentity> {
    const { transactionalId, transactionTimeoutMs } = this.#config;
    const body = transactionalId === undefined ? {} : { transactionalId, transactionTimeoutMs };
    const identity = await retrying(this.#connection, this.retryBudgetMs(), () => this.#connection.request('InitProducer', body, this.#requestOptions));
    if (this.#fatal !== undefined) throw this.#fatal;
    this.adopt(identity);
    return identity;
  }

  /** A new producer id or epoch (InitProducer, EndTxn): every partition's sequence starts at 0 again. */
  adopt(identity: ProducerIdentity): void {
    this.#identity = { producerId: identity.producerId, producerEpoch: identity.producerEpoch };
    this.#generation++;
  }

  /** The identity can no longer be trusted: the next batch (or transaction) gets a new one first. */
  forget(): void {
    if (this.#identity === undefined) return;
    this.#identity = undefined;
    this.#generation++;
  }

  /**
   * The bytes of a batch going on the wire for the first time: stamped with the producer's id
   * and epoch and its partition's next sequence number. Called in partition order with nothing
   * of the partition in flight, so sequences follow the order batches are written in.
   */
  encode(batch: Batch): Buffer {
    const identity = this.#identity;
    if (identity === undefined) return batch.builder.build();
    const queue = batch.queue;
    if (queue.generation !== this.#generation) {
      queue.generation = this.#generation;
      queue.sequence = 0;
    }
    const baseSequence = queue.sequence;
    queue.sequence = advanceSequence(baseSequence, batch.builder.count);
    batch.generation = this.#generation;
    batch.baseSequence = baseSequence;
    const { producerId, producerEpoch } = identity;
    return batch.builder.build({ producerId, producerEpoch, baseSequence, transactional: this.#config.transactionalId !== undefined });
  }

  /**
   * What the final failure of a stamped batch means for the identity (see NOT_WRITTEN): its
   * sequence numbers are given back, or the producer id is dropped. True when the producer is
   * fenced (PRODUCER_FENCED outside a transaction).
   */
  batchFailed(batch: Batch, error: SluiceError, answered: boolean): boolean {
    const transactional = this.#config.transactionalId !== undefined;
    let fence = false;
    if (batch.generation >= 0 && batch.generation === this.#generation && this.#fatal === undefined) {
      const queue = batch.queue;
      if (error.code === 'PRODUCER_FENCED') {
        // A transaction's batch is fenced also when the broker aborted the transaction on its
        // timeout: runTransaction tells the two apart with EndTxn(abort).
        fence = !transactional;
      } else if (answered && NOT_WRITTEN.has(error.code)) {
        // Refused before any of it was written, and the last batch of its partition stamped:
        // its sequence numbers go to the next batch.
        if (queue.generation === batch.generation) queue.sequence = batch.baseSequence;
      } else if (!transactional) {
        // Written or not, nobody knows: a fresh producer id, so that no later batch of the
        // partition is refused for a gap. (A transaction aborts instead; its epoch bump resets.)
        this.forget();
      }
    }
    return fence;
  }
}
