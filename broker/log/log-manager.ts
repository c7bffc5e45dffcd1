/**
 * Owns DATA/topics/TOPIC/PARTITION and the PartitionLog open in each. The broker core asks it
 * for partitions; which topics exist is the metadata store's business, not this module's.
 *
 * Topic deletion renames the topic directory to `.deleting-TOPIC-N` (one atomic, fsynced step)
 * before removing the tree, so a crash half way through never leaves a half-deleted topic that
 * looks live; leftovers are swept on the first openPartition after a restart.
 */
import path from 'node:path';
import { SluiceError } from '../../client/protocol/errors.js';
import { type FileIO, ensureDir, nodeFileIO } from './file-io.js';
import type { PartitionLogOptions } from './options.js';
import { PartitionLog } from './partition-log.js';

export interface LogManagerOptions {
  /** The broker's data directory; partitions live under DATA/topics. */
  dataDir: string;
  /** Options for every partition (overridden per partition by openPartition). */
  defaults?: Partial<Omit<PartitionLogOptions, 'dir'>>;
  io?: FileIO;
  /** Called once per failing partition log; the broker stops. */
  onFatal?: (err: Error, topic: string, partition: number) => void;
}

const DELETING_PREFIX = '.deleting-';

/** Topic names become directory names: keep them to a safe, portable alphabet (as Kafka does). */
function checkTopic(topic: string): void {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(topic) || topic.startsWith('.')) {
    throw new SluiceError('INVALID_TOPIC', `topic name ${JSON.stringify(topic)} is not [A-Za-z0-9._-]{1,249} or starts with a dot`);
  }
}

function checkPartition(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0 || partition > 0x7fff_ffff) {
    throw new SluiceError('INVALID_CONFIG', `partition ${partition} must be a non-negative integer`, { details: { path: 'partition' } });
  }
}

export class LogManager {
  readonly #topicsDir: string;
  readonly #io: FileIO;
  readonly #defaults: Partial<Omit<PartitionLogOptions, 'dir'>>;
  readonly #onFatal: LogManagerOptions['onFatal'];
  readonly #logs = new Map<string, Map<number, PartitionLog>>();
  readonly #opening = new Map<string, Promise<PartitionLog>>();
  #swept: Promise<void> | undefined;
  #deleteSeq = 0;
  #closed = false;

  constructor(options: LogManagerOptions) {
    this.#topicsDir = path.join(options.dataDir, 'topics');
    this.#io = options.io ?? options.defaults?.io ?? nodeFileIO;
    this.#defaults = options.defaults ?? {};
    this.#onFatal = options.onFatal;
  }

  /** Opens (creating and recovering as needed) one partition's log; concurrent calls share it. */
  openPartition(topic: string, partition: number, overrides: Partial<Omit<PartitionLogOptions, 'dir'>> = {}): Promise<PartitionLog> {
    try {
      checkTopic(topic);
      checkPartition(partition);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed) return Promise.reject(new SluiceError('SHUTTING_DOWN', 'the log manager is closed'));
    const existing = this.get(topic, partition);
    if (existing) return Promise.resolve(existing);
    const key = `${topic}/${partition}`;
    let opening = this.#opening.get(key);
    if (!opening) {
      opening = this.#open(topic, partition, overrides).finally(() => this.#opening.delete(key));
      this.#opening.set(key, opening);
    }
    return opening;
  }

  async #open(topic: string, partition: number, overrides: Partial<Omit<PartitionLogOptions, 'dir'>>): Promise<PartitionLog> {
    this.#swept ??= this.#sweep();
    await this.#swept;
    const dir = path.join(this.#topicsDir, topic, String(partition));
    await ensureDir(this.#io, dir);
    const userFatal = overrides.onFatal ?? this.#defaults.onFatal;
    const log = await PartitionLog.open({
      ...this.#defaults,
      ...overrides,
      io: this.#io,
      dir,
      onFatal: (err) => {
        userFatal?.(err);
        this.#onFatal?.(err, topic, partition);
      },
    });
    if (this.#closed) {
      await log.close();
      throw new SluiceError('SHUTTING_DOWN', 'the log manager closed while the partition was opening');
    }
    let byPartition = this.#logs.get(topic);
    if (!byPartition) {
      byPartition = new Map();
      this.#logs.set(topic, byPartition);
    }
    byPartition.set(partition, log);
    return log;
  }

  /** Removes topic directories a crash left half deleted. */
  async #sweep(): Promise<void> {
    if ((await this.#io.stat(this.#topicsDir)) === undefined) return;
    for (const name of await this.#io.readdir(this.#topicsDir)) {
      if (name.startsWith(DELETING_PREFIX)) await this.#io.removeTree(path.join(this.#topicsDir, name));
    }
    await this.#io.fsyncDir(this.#topicsDir);
  }

  get(topic: string, partition: number): PartitionLog | undefined {
    return this.#logs.get(topic)?.get(partition);
  }

  /** Every open partition log, by topic and partition. */
  *entries(): IterableIterator<[topic: string, partition: number, log: PartitionLog]> {
    for (const [topic, byPartition] of this.#logs) {
      for (const [partition, log] of byPartition) yield [topic, partition, log];
    }
  }

  /** Closes the topic's partition logs and removes its directory. */
  async deleteTopic(topic: string): Promise<void> {
    checkTopic(topic);
    const inFlight = [...this.#opening.entries()].filter(([key]) => key.startsWith(`${topic}/`));
    await Promise.allSettled(inFlight.map(([, p]) => p));
    const byPartition = this.#logs.get(topic);
    this.#logs.delete(topic);
    if (byPartition) await Promise.all([...byPartition.values()].map((log) => log.close().catch(() => {})));
    const dir = path.join(this.#topicsDir, topic);
    if ((await this.#io.stat(dir)) === undefined) return;
    const tomb = path.join(this.#topicsDir, `${DELETING_PREFIX}${topic}-${Date.now()}-${this.#deleteSeq++}`);
    await this.#io.rename(dir, tomb);
    await this.#io.fsyncDir(this.#topicsDir);
    await this.#io.removeTree(tomb);
    await this.#io.fsyncDir(this.#topicsDir);
  }

  /** Runs retention on every open partition. */
  async enforceRetention(now?: number): Promise<void> {
    for (const [, , log] of [...this.entries()]) await log.enforceRetention(now);
  }

  /** Closes every log; `abandon` writes nothing more on the way (PartitionLog.abandon: a crash). */
  async close({ abandon = false }: { abandon?: boolean } = {}): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#opening.values()]);
    const logs = [...this.entries()].map(([, , log]) => log);
    this.#logs.clear();
    const results = await Promise.allSettled(logs.map((log) => (abandon ? log.abandon() : log.close())));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
