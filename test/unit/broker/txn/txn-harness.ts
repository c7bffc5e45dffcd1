import { SluiceError } from '../../../../client/protocol/errors.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_OVERHEAD, decodeRecords, encodeRecordBatch, readBatchHeader, verifyBatch } from '../../../../client/protocol/record-batch.js';
import type { IdempotentAppendResult } from '../../../../broker/txn/partition-producers.js';
import { GroupCoordinator } from '../../../../broker/groups/coordinator.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { LogManager, controlRecordKey } from '../../../../broker/log/index.js';
import type { MetaStore } from '../../../../broker/meta/meta-store.js';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';
import { TopicRegistry } from '../../../../broker/topics.js';
import { parseControlKey } from '../../../../broker/txn/control-record.js';
import { TransactionCoordinator, type TxnAcks, type TxnFailpoint } from '../../../../broker/txn/coordinator.js';
import { ProducerIds } from '../../../../broker/txn/producer-ids.js';
import { ProducerStateManager } from '../../../../broker/txn/producer-states.js';
import { MemoryLogger } from '../../../helpers/logger.js';

/** A settable clock. */
export class Clock {
  constructor(public t = 1_000_000) {}
  readonly now = (): number => this.t;
}

/** TxnAcks that records what it is asked and refuses the acks listed in `stale`. */
export class FakeAcks implements TxnAcks {
  readonly stale = new Set<string>();
  readonly applied: Array<[string, number, number, number]> = [];
  readonly settled: Array<[string, number, number, number]> = [];
  checkTxnAcks(subscription: string, items: readonly (readonly [number, number, number])[], _now?: number): void {
    for (const [p, o, a] of items) {
      if (this.stale.has(`${subscription}/${p}/${o}`)) throw new SluiceError('STALE_ACK', `attempt ${a} of ${o} superseded`);
    }
  }
  applyTxnAcks(subscription: string, items: readonly (readonly [number, number, number])[]): void {
    for (const [p, o, a] of items) this.applied.push([subscription, p, o, a]);
  }
  settleTxnAcks(subscription: string, items: readonly (readonly [number, number, number])[]): void {
    for (const [p, o, a] of items) this.settled.push([subscription, p, o, a]);
  }
}

export interface CoreOptions {
  readonly failpoint?: (point: TxnFailpoint, transactionalId: string) => void | Promise<void>;
  readonly recover?: boolean;
}

/** What a batch in a partition is, for assertions: data values, or a marker. */
export type Entry = { offset: number; producerId: number; epoch: number } & ({ kind: 'data'; values: string[] } | { kind: 'COMMIT' | 'ABORT' });

/**
 * The broker core without sockets, on a CrashFS and a SQLite database that survive a
 * simulated crash: topics, producer state, producer ids, groups and the coordinator, wired as
 * broker.ts does (the push service replaced by FakeAcks).
 */
export class Core {
  readonly acks = new FakeAcks();
  #closed = false;

  private constructor(
    readonly io: CrashFS,
    readonly meta: MetaStore,
    readonly clock: Clock,
    readonly topics: TopicRegistry,
    readonly producerStates: ProducerStateManager,
    readonly producerIds: ProducerIds,
    readonly groups: GroupCoordinator,
    readonly coordinator: TransactionCoordinator,
    readonly logger: MemoryLogger,
  ) {}

  static async open(io = new CrashFS(), meta: MetaStore = openMetaStore(':memory:'), clock = new Clock(), options: CoreOptions = {}): Promise<Core> {
    const logger = new MemoryLogger();
    const logs = new LogManager({ dataDir: '/data', io, defaults: { fsync: 'always', logger } });
    const producerStates = new ProducerStateManager({ logger, io, snapshotIntervalMs: 1 << 30, now: clock.now });
    const topics = new TopicRegistry(meta, logs, { partitions: 1, autoCreate: false }, producerStates);
    await topics.openAll((topic, err) => {
      throw new Error(`topic ${topic} did not open: ${String(err)}`);
    });
    const producerIds = new ProducerIds(meta.producers, clock.now);
    const groups = new GroupCoordinator({ store: meta, partitionsOf: (t) => topics.partitionsOf(t) });
    let core: Core | undefined;
    const coordinator = new TransactionCoordinator({
      store: meta.transactions,
      producerIds,
      producerStates,
      topics,
      groups,
      acks: { checkTxnAcks: (...a) => core!.acks.checkTxnAcks(...a), applyTxnAcks: (...a) => core!.acks.applyTxnAcks(...a), settleTxnAcks: (...a) => core!.acks.settleTxnAcks(...a) },
      logger,
      now: clock.now,
      ...(options.failpoint === undefined ? {} : { failpoint: options.failpoint }),
    });
    core = new Core(io, meta, clock, topics, producerStates, producerIds, groups, coordinator, logger);
    if (options.recover !== false) await coordinator.recover();
    return core;
  }

  /** Pulls the plug: unsynced bytes are lost, SQLite (synchronous=FULL) keeps what it committed. Returns the restarted core. */
  async crashAndRestart(options: CoreOptions = {}): Promise<Core> {
    this.#closed = true;
    const io = this.io.crash();
    void this.producerStates.close().catch(() => undefined);
    return Core.open(io, this.meta, this.clock, options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.coordinator.close();
    await this.producerStates.close();
    this.meta.close();
  }

  async createTopic(topic: string, partitions = 1): Promise<void> {
    await this.topics.create({ topic, partitions }, this.clock.t);
  }

  /** What the Produce handler does with one batch: validate, admit, append. */
  produce(topic: string, partition: number, batch: Buffer): Promise<IdempotentAppendResult> {
    try {
      const header = verifyBatch(batch);
      const log = this.topics.partition(topic, partition);
      if (header.producerId >= 0) {
        this.producerIds.validate(header.producerId, header.producerEpoch);
        this.coordinator.beforeAppend(header.producerId, header.producerEpoch, (header.attributes & ATTR_TRANSACTIONAL) !== 0, topic, partition);
      }
      return this.producerStates.forLog(log).append(Buffer.from(batch), header);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Every batch in the partition, markers included. */
  async entries(topic: string, partition = 0): Promise<Entry[]> {
    const log = this.topics.partition(topic, partition);
    if (log.highWatermark === log.startOffset) return [];
    const bytes = await log.read(log.startOffset, 1 << 24);
    const out: Entry[] = [];
    for (let pos = 0; pos < bytes.length; ) {
      const h = readBatchHeader(bytes, pos);
      const base = { offset: h.baseOffset, producerId: h.producerId, epoch: h.producerEpoch };
      if ((h.attributes & ATTR_CONTROL) !== 0) {
        out.push({ ...base, kind: parseControlKey(controlRecordKey(bytes, pos)) === 1 ? 'COMMIT' : 'ABORT' });
      } else {
        const batch = bytes.subarray(pos, pos + h.batchLength + BATCH_OVERHEAD);
        out.push({ ...base, kind: 'data', values: decodeRecords(batch).map((r) => r.value?.toString() ?? '') });
      }
      pos += h.batchLength + BATCH_OVERHEAD;
    }
    return out;
  }

  /** The partition's last stable offset and aborted transactions. */
  stability(topic: string, partition = 0): { lso: number; hw: number; aborted: number } {
    const log = this.topics.partition(topic, partition);
    const table = this.producerStates.forLog(log).table;
    return { lso: table.lastStableOffset(log.highWatermark), hw: log.highWatermark, aborted: table.abortedTransactions(0).length };
  }
}

/** A batch of `values` from a producer; transactional unless told otherwise. */
export function txBatch(producerId: number, producerEpoch: number, baseSequence: number, values: readonly string[], transactional = true): Buffer {
  return encodeRecordBatch(
    values.map((v) => ({ value: Buffer.from(v), timestamp: 1_000 })),
    { producerId, producerEpoch, baseSequence, ...(transactional ? { attributes: ATTR_TRANSACTIONAL } : {}) },
  );
}

/** The error a promise or function fails with. */
export async function failure(p: Promise<unknown> | (() => unknown)): Promise<SluiceError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return err as SluiceError;
  }
  throw new Error('expected a failure');
}
