/**
 * Writing transaction markers (control-record.ts) into partition logs, for the transaction
 * coordinator (coordinator.ts): the COMMIT or ABORT that ends a transaction in each of its
 * partitions, and, at startup, the marker of a transaction left open in a partition that no
 * coordinator record lists any more.
 *
 * A marker goes through the partition's producer state like any batch of its producer (so the
 * state closes the transaction, and an ABORT indexes its range for read_committed readers) and
 * is acknowledged once durable under the fsync mode. Writing one twice changes nothing.
 */
import { hasCode } from '../../client/protocol/errors.js';
import { readBatchHeader } from '../../client/protocol/record-batch.js';
import type { PartitionLog } from '../log/index.js';
import type { Logger } from '../logger.js';
import type { TxnPartition } from '../meta/transaction-store.js';
import { ControlType, encodeControlBatch } from './control-record.js';
import type { PartitionProducers } from './partition-producers.js';

/** What the coordinator needs of the topic registry. */
export interface TxnTopics {
  get(topic: string): { readonly partitions: number } | undefined;
  list(): readonly { readonly name: string; readonly partitions: number }[];
  /** TOPIC_NOT_FOUND or PARTITION_NOT_FOUND when there is no such partition. */
  partition(topic: string, partition: number): PartitionLog;
}

export interface MarkerWriterOptions {
  readonly topics: TxnTopics;
  readonly producerStates: { forLog(log: PartitionLog): PartitionProducers };
  readonly logger: Logger;
  readonly now: () => number;
}

export class MarkerWriter {
  readonly #topics: TxnTopics;
  readonly #producerStates: MarkerWriterOptions['producerStates'];
  readonly #log: Logger;
  readonly #now: () => number;

  constructor(options: MarkerWriterOptions) {
    this.#topics = options.topics;
    this.#producerStates = options.producerStates;
    this.#log = options.logger;
    this.#now = options.now;
  }

  /** One marker into each partition still there (a deleted topic has nothing left to mark); resolves once all are durable. */
  async write(producerId: number, producerEpoch: number, partitions: readonly TxnPartition[], type: ControlType): Promise<void> {
    const timestamp = this.#now();
    await Promise.all(
      partitions.map(async ([topic, partition]) => {
        const log = this.#logOf(topic, partition);
        if (log !== undefined) await this.#append(log, producerId, producerEpoch, type, timestamp);
      }),
    );
  }

  /**
   * Closes every transaction open in a partition that `isOpen` does not confirm: with a COMMIT
   * when `committed` says its transaction committed, else with an ABORT. Possible only when a
   * crash took the log tail holding its marker (fsync=interval or never) after the coordinator
   * recorded the outcome; left alone, it would hold the partition's last stable offset forever.
   */
  async closeHanging(
    isOpen: (producerId: number, epoch: number, topic: string, partition: number) => boolean,
    committed: (producerId: number, epoch: number) => boolean,
  ): Promise<void> {
    for (const topic of this.#topics.list()) {
      for (let partition = 0; partition < topic.partitions; partition++) {
        const log = this.#logOf(topic.name, partition);
        if (log === undefined) continue;
        const table = this.#producerStates.forLog(log).table;
        if (table.firstUnstableOffset() === undefined) continue;
        for (const p of table.producers()) {
          if (p.txnFirstOffset === null || isOpen(p.producerId, p.epoch, topic.name, partition)) continue;
          const type = committed(p.producerId, p.epoch) ? ControlType.COMMIT : ControlType.ABORT;
          this.#log.warn(
            { topic: topic.name, partition, producerId: p.producerId, producerEpoch: p.epoch, firstOffset: p.txnFirstOffset, marker: type === ControlType.COMMIT ? 'COMMIT' : 'ABORT' },
            'a transaction is open in a partition its coordinator does not list (its marker was lost with the log tail); closing it',
          );
          await this.#append(log, p.producerId, p.epoch, type, this.#now());
        }
      }
    }
  }

  async #append(log: PartitionLog, producerId: number, producerEpoch: number, type: ControlType, timestamp: number): Promise<void> {
    const batch = encodeControlBatch({ producerId, producerEpoch, type, timestamp });
    try {
      await this.#producerStates.forLog(log).append(batch, readBatchHeader(batch));
    } catch (err) {
      // A later epoch of the producer wrote here already: this transaction cannot be open here.
      if (!hasCode(err, 'PRODUCER_FENCED')) throw err;
      this.#log.warn({ dir: log.dir, producerId, producerEpoch, err }, 'transaction marker refused by a later epoch; nothing to mark');
    }
  }

  #logOf(topic: string, partition: number): PartitionLog | undefined {
    const record = this.#topics.get(topic);
    if (record === undefined || partition >= record.partitions) return undefined;
    return this.#topics.partition(topic, partition);
  }
}
