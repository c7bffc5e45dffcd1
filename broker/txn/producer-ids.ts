/**
 * Producer ids and epochs, broker-wide: InitProducer hands them out (durably, before replying)
 * and produce asks whether a batch's producer id and epoch are current.
 *
 * - Without a transactional id: a fresh producer id at epoch 0, every time.
 * - With one: the producer id that transactional id always had (a fresh one the first time) at
 *   an epoch one higher than before; after epoch 32767, a fresh producer id at epoch 0 (Kafka's
 *   rule). The new epoch fences every older instance: their batches get PRODUCER_FENCED.
 *
 * Which ids exist is in SQLite (broker/meta/producer-store.ts): producer_ids.next_id (every id
 * below it was handed out) and transactional_ids. The registry keeps the transactional ones in
 * memory, so produce never touches SQLite.
 *
 * Known gap: a producer id retired when its transactional id ran out of epochs is remembered as
 * fenced only until a restart; afterwards it reads as a plain idempotent id, so an instance still
 * at its epoch 0 (fenced 32767 InitProducers ago) would be accepted again. Per-partition state
 * still fences it on every partition where a later epoch of that id wrote.
 */
import { SluiceError } from '../../client/protocol/errors.js';
import type { InitProducerRequest, InitProducerResponse } from '../../client/protocol/messages/producer.js';
import type { ProducerStore, TransactionalIdRecord } from '../meta/producer-store.js';

/** Kafka's transaction.timeout.ms default. */
export const DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000;

interface Owner {
  readonly transactionalId: string;
  readonly epoch: number;
}

export class ProducerIds {
  readonly #store: ProducerStore;
  readonly #now: () => number;
  #nextProducerId: number;
  /** Producer ids bound to a transactional id, with their current epoch. */
  readonly #transactional = new Map<number, Owner>();
  /** Producer ids a transactional id left behind at its last epoch: always fenced. */
  readonly #retired = new Set<number>();

  constructor(store: ProducerStore, now: () => number = Date.now) {
    this.#store = store;
    this.#now = now;
    this.#nextProducerId = store.nextProducerId();
    for (const r of store.listTransactionalIds()) this.#transactional.set(r.producerId, { transactionalId: r.transactionalId, epoch: r.producerEpoch });
  }

  /** InitProducer: the reply is durable in SQLite before this returns. */
  init(request: InitProducerRequest): InitProducerResponse {
    const { transactionalId } = request;
    if (transactionalId === undefined) {
      const producerId = this.#store.allocateProducerId();
      this.#nextProducerId = Math.max(this.#nextProducerId, producerId + 1);
      return { producerId, producerEpoch: 0 };
    }
    if (transactionalId.length === 0) throw new SluiceError('INVALID_REQUEST', 'transactionalId must not be empty');
    const { record, previous } = this.#store.initTransactionalId(
      transactionalId,
      request.transactionTimeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS,
      this.#now(),
    );
    if (previous !== undefined && previous.producerId !== record.producerId) {
      this.#transactional.delete(previous.producerId);
      this.#retired.add(previous.producerId);
    }
    this.#transactional.set(record.producerId, { transactionalId, epoch: record.producerEpoch });
    this.#nextProducerId = Math.max(this.#nextProducerId, record.producerId + 1);
    return { producerId: record.producerId, producerEpoch: record.producerEpoch };
  }

  /**
   * Throws unless `producerId` at `epoch` may write: UNKNOWN_PRODUCER for an id this broker never
   * handed out or an epoch it never issued, PRODUCER_FENCED for an epoch a later InitProducer of
   * the same transactional id replaced.
   */
  validate(producerId: number, epoch: number): void {
    if (producerId >= this.#nextProducerId) {
      throw new SluiceError('UNKNOWN_PRODUCER', `producer id ${producerId} was never handed out by this broker; call InitProducer`, {
        details: { producerId },
      });
    }
    if (this.#retired.has(producerId)) throw fenced(producerId, epoch, undefined);
    const current = this.#transactional.get(producerId)?.epoch ?? 0;
    if (epoch < current) throw fenced(producerId, epoch, current);
    if (epoch > current) {
      throw new SluiceError('UNKNOWN_PRODUCER', `producer ${producerId} has epoch ${current}; epoch ${epoch} was never issued`, {
        details: { producerId, epoch, currentEpoch: current },
      });
    }
  }

  /** The transactional id `producerId` is bound to now, if any (a plain idempotent id has none). */
  transactionalIdOf(producerId: number): string | undefined {
    return this.#transactional.get(producerId)?.transactionalId;
  }

  /**
   * The transaction coordinator moved a transactional id to a new producer id or epoch (the bump
   * that ends each transaction), already durable in SQLite: from now on only that pair may write.
   */
  rebound(transactionalId: string, previousProducerId: number, producerId: number, producerEpoch: number): void {
    if (previousProducerId !== producerId) {
      this.#transactional.delete(previousProducerId);
      this.#retired.add(previousProducerId);
    }
    this.#transactional.set(producerId, { transactionalId, epoch: producerEpoch });
    this.#nextProducerId = Math.max(this.#nextProducerId, producerId + 1);
  }

  /** The current binding of a transactional id (for the transaction coordinator). */
  transactionalId(transactionalId: string): TransactionalIdRecord | undefined {
    return this.#store.getTransactionalId(transactionalId);
  }
}

function fenced(producerId: number, epoch: number, current: number | undefined): SluiceError {
  return new SluiceError(
    'PRODUCER_FENCED',
    current === undefined
      ? `producer id ${producerId} was retired; a newer producer with its transactional id took over`
      : `producer ${producerId} epoch ${epoch} is fenced: a newer producer (epoch ${current}) with the same transactional id took over`,
    { details: { producerId, epoch, ...(current === undefined ? {} : { currentEpoch: current }) } },
  );
}
