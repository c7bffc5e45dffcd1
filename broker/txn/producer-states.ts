/**
 * Producer state for every open partition. The topic registry calls `opened` for each partition
 * log before the topic is served (so no produce ever sees a partition whose state is still being
 * rebuilt) and `deleting` before a topic's logs are removed; the broker calls `close` after the
 * logs closed, which writes a final snapshot per partition.
 *
 * A periodic tick expires idle producers and snapshots every partition appended to since its
 * last snapshot.
 */
import { type FileIO, type PartitionLog, nodeFileIO } from '../log/index.js';
import type { Logger } from '../logger.js';
import { PartitionProducers, noProducerState } from './partition-producers.js';

export interface ProducerStateOptions {
  readonly logger: Logger;
  readonly io?: FileIO;
  /** Periodic snapshot (and expiry) interval; default 30 s. */
  readonly snapshotIntervalMs?: number;
  /** Snapshot a partition after this many bytes appended since its last one; default 64 MiB. */
  readonly snapshotBytes?: number;
  /**
   * Forget a producer's state in a partition after this long without a batch there and no open
   * transaction (Kafka's producer.id.expiration.ms, default 1 day there); default 7 days.
   */
  readonly producerExpirationMs?: number;
  readonly now?: () => number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export class ProducerStateManager {
  readonly #partitions = new Map<PartitionLog, PartitionProducers>();
  readonly #opening = new Map<PartitionLog, Promise<PartitionProducers>>();
  readonly #config: { io: FileIO; logger: Logger; snapshotBytes: number; now: () => number };
  readonly #expirationMs: number;
  readonly #timer: NodeJS.Timeout;
  #tick: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: ProducerStateOptions) {
    this.#config = {
      io: options.io ?? nodeFileIO,
      logger: options.logger,
      snapshotBytes: options.snapshotBytes ?? 64 * 1024 * 1024,
      now: options.now ?? Date.now,
    };
    this.#expirationMs = options.producerExpirationMs ?? 7 * DAY_MS;
    this.#timer = setInterval(() => {
      this.#tick = this.#tick.then(() => this.maintain());
    }, options.snapshotIntervalMs ?? 30_000);
    this.#timer.unref();
  }

  /** Rebuilds the producer state of a newly opened partition log (idempotent per log). */
  async opened(_topic: string, _partition: number, log: PartitionLog): Promise<void> {
    if (this.#partitions.has(log)) return;
    let opening = this.#opening.get(log);
    if (opening === undefined) {
      opening = PartitionProducers.open(log, this.#config);
      this.#opening.set(log, opening);
    }
    try {
      const producers = await opening;
      this.#partitions.set(log, producers);
    } finally {
      this.#opening.delete(log);
    }
  }

  /** The topic is being deleted: its partitions' state goes, and no snapshot is written into them again. */
  async deleting(_topic: string, logs: readonly PartitionLog[]): Promise<void> {
    await Promise.all(
      logs.map(async (log) => {
        const producers = this.#partitions.get(log);
        this.#partitions.delete(log);
        await producers?.discard();
      }),
    );
  }

  /** The producer state of an open partition log. */
  forLog(log: PartitionLog): PartitionProducers {
    const producers = this.#partitions.get(log);
    if (producers === undefined) throw noProducerState(log.dir);
    return producers;
  }

  /** One pass of expiry and snapshots over every partition; the periodic tick runs this. */
  async maintain(): Promise<void> {
    if (this.#closed) return;
    const now = this.#config.now();
    for (const producers of [...this.#partitions.values()]) await producers.maintain(now, this.#expirationMs);
  }

  /** After the logs closed: final snapshots (none with `snapshot: false`, a crash). */
  async close({ snapshot = true }: { snapshot?: boolean } = {}): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    const all = [...this.#partitions.values()];
    this.#partitions.clear();
    // Closing a partition first stops its pending snapshot, which a running tick may be awaiting.
    await Promise.all(all.map((p) => p.close({ snapshot })));
    await this.#tick;
  }
}
