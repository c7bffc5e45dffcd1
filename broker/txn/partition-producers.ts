/**
 * The producer state of one open partition, tied to its log: the idempotent append path, the
 * rebuild at open (snapshot, then a header scan of the log written after it) and the snapshots.
 *
 * Ordering: append() runs check, log.append and apply with no await in between, so the state
 * changes in log order, when the append is issued. A concurrent retry of a batch still in flight
 * finds it and waits for that same append; it is never written twice.
 *
 * Snapshots: the state is copied (with its coveredOffset = the log end offset) synchronously, and
 * written once the log is readable up to that offset, so a snapshot never holds a batch a crash
 * could take back under fsync=always. Taken after every `snapshotBytes` appended, on the
 * manager's periodic tick when anything was appended, after a rebuild that read anything, and
 * at a clean close.
 */
import { SluiceError } from '../../client/protocol/errors.js';
import { ATTR_CONTROL, type BatchHeader } from '../../client/protocol/record-batch.js';
import { type FileIO, type PartitionLog, controlRecordKey, scanBatchHeaders } from '../log/index.js';
import type { Logger } from '../logger.js';
import { parseControlKey } from './control-record.js';
import { readProducerSnapshot, removeProducerSnapshot, writeProducerSnapshot } from './producer-snapshot.js';
import { type AppendOffsets, type CheckResult, ProducerStateTable } from './producer-state.js';

export interface PartitionProducersConfig {
  readonly io: FileIO;
  readonly logger: Logger;
  /** Snapshot once this many bytes were appended since the last one. */
  readonly snapshotBytes: number;
  readonly now: () => number;
}

export interface IdempotentAppendResult extends AppendOffsets {
  /** The batch was already in the log: these are its original offsets; nothing was written. */
  readonly duplicate?: true;
}

/**
 * The producer state of each open log, for readers handed only the log (the push feed,
 * broker/push/partition-feed.ts, which must read below the last stable offset and skip aborted
 * transactions). Weak: a log and its state go away together.
 */
const byLog = new WeakMap<PartitionLog, PartitionProducers>();

/** The producer state of an open log, if it has one (logs opened outside the broker have none). */
export function producerStateOf(log: PartitionLog): ProducerStateTable | undefined {
  return byLog.get(log)?.table;
}

export class PartitionProducers {
  readonly #log: PartitionLog;
  readonly #table: ProducerStateTable;
  readonly #config: PartitionProducersConfig;
  /** The log end offset the last snapshot written (or loaded) reflects; -1 for none. */
  #coveredOffset: number;
  #bytesSinceSnapshot = 0;
  #snapshotting: Promise<void> | undefined;
  readonly #stop = new AbortController();

  private constructor(log: PartitionLog, table: ProducerStateTable, config: PartitionProducersConfig, coveredOffset: number) {
    this.#log = log;
    this.#table = table;
    this.#config = config;
    this.#coveredOffset = coveredOffset;
    byLog.set(log, this);
  }

  /**
   * Rebuilds the state of an open log nobody appends to yet: loads the snapshot when it is
   * valid and not ahead of the log, then replays the batch headers from where it ends.
   */
  static async open(log: PartitionLog, config: PartitionProducersConfig): Promise<PartitionProducers> {
    const { logger } = config;
    const dir = log.dir;
    let table = new ProducerStateTable();
    let from = log.startOffset;
    let covered = -1;
    const loaded = await readProducerSnapshot(config.io, dir);
    if (loaded.status === 'invalid') {
      logger.warn({ dir, reason: loaded.reason }, 'producer-state snapshot ignored; rebuilding from the whole log');
    } else if (loaded.status === 'ok' && loaded.snapshot.coveredOffset > log.endOffset) {
      logger.warn({ dir, coveredOffset: loaded.snapshot.coveredOffset, endOffset: log.endOffset }, 'producer-state snapshot is ahead of the log (its tail was lost); rebuilding from the whole log');
      await removeProducerSnapshot(config.io, dir);
    } else if (loaded.status === 'ok') {
      table = ProducerStateTable.fromData(loaded.snapshot);
      covered = loaded.snapshot.coveredOffset;
      from = Math.max(covered, log.startOffset);
    }
    const now = config.now();
    const scan = await scanBatchHeaders(
      log,
      from,
      ({ header, lastOffset, controlKey }) => {
        const control = controlKey === null ? undefined : parseControlKey(controlKey);
        table.apply(header, { baseOffset: header.baseOffset, lastOffset }, control === undefined ? { now } : { control, now });
      },
      {
        onCorrupt: (fromOffset, resumeOffset, err) =>
          logger.warn({ dir, fromOffset, resumeOffset, err }, 'damaged log range skipped while rebuilding producer state; retries of batches in it may be written again'),
      },
    );
    table.pruneAbortedBefore(log.startOffset);
    const producers = new PartitionProducers(log, table, config, covered);
    if (scan.batches > 0) {
      logger.debug({ dir, from, batches: scan.batches, bytes: scan.bytes, producers: table.size }, 'producer state rebuilt');
      void producers.snapshot();
    }
    return producers;
  }

  get table(): ProducerStateTable {
    return this.#table;
  }

  get log(): PartitionLog {
    return this.#log;
  }

  /**
   * Appends `batch` (already verified; `header` is its header) unless the producer state says
   * otherwise: a duplicate resolves with the original offsets once they are acknowledged, a
   * fenced or out-of-sequence batch rejects. Batches without a producer id just append.
   */
  append(batch: Buffer, header: BatchHeader): Promise<IdempotentAppendResult> {
    const log = this.#log;
    if (header.producerId < 0) {
      // The common case, kept as lean as a plain append: no state to check or change.
      const appended = log.append(batch, header);
      this.#appended(batch.length);
      return appended;
    }
    let decision: CheckResult;
    try {
      decision = this.#table.check(header);
    } catch (err) {
      return Promise.reject(err);
    }
    if (decision.kind === 'duplicate') {
      const { baseOffset, lastOffset, pending } = decision;
      const answer = { baseOffset, lastOffset, duplicate: true } as const;
      return pending === undefined ? Promise.resolve(answer) : pending.then(() => answer);
    }
    const before = log.endOffset;
    const appended = log.append(batch, header);
    // The log assigns offsets synchronously; if it did not, it refused the batch (closed,
    // failed, too large) and the state must not record it.
    if (log.endOffset !== before) {
      const offsets = { baseOffset: before, lastOffset: log.endOffset - 1 };
      const control = (header.attributes & ATTR_CONTROL) !== 0 ? parseControlKey(controlRecordKey(batch)) : undefined;
      const now = this.#config.now();
      this.#table.apply(header, offsets, control === undefined ? { pending: appended, now } : { pending: appended, control, now });
      this.#appended(batch.length);
    }
    return appended;
  }

  /** Counts bytes towards the next snapshot (plain batches too: a newer snapshot shortens the next rescan). */
  #appended(bytes: number): void {
    this.#bytesSinceSnapshot += bytes;
    if (this.#bytesSinceSnapshot >= this.#config.snapshotBytes) void this.snapshot();
  }

  /** Expires idle producers, forgets aborted transactions below the log start, snapshots if anything changed. */
  maintain(now: number, producerExpirationMs: number): Promise<void> {
    const expired = this.#table.expire(now, producerExpirationMs);
    this.#table.pruneAbortedBefore(this.#log.startOffset);
    if (expired > 0) this.#config.logger.debug({ dir: this.#log.dir, expired }, 'expired idle producers');
    return expired > 0 || this.#log.endOffset !== this.#coveredOffset ? this.snapshot(expired > 0) : Promise.resolve();
  }

  /**
   * Writes a snapshot of the state as of now, once the log is readable up to here. One at a time:
   * a call while one is being written returns that one. Failures are logged: a snapshot only
   * saves work at the next open.
   */
  snapshot(force = false): Promise<void> {
    if (this.#snapshotting !== undefined) return this.#snapshotting;
    if (this.#stop.signal.aborted) return Promise.resolve();
    const coveredOffset = this.#log.endOffset;
    if (coveredOffset === this.#coveredOffset && !force) return Promise.resolve();
    const data = this.#table.toData();
    this.#bytesSinceSnapshot = 0;
    const run = async (): Promise<void> => {
      if (!(await waitVisible(this.#log, coveredOffset, this.#stop.signal))) return;
      await writeProducerSnapshot(this.#config.io, this.#log.dir, { coveredOffset, ...data });
      this.#coveredOffset = coveredOffset;
    };
    const snapshotting = run()
      .catch((err: unknown) => this.#config.logger.warn({ dir: this.#log.dir, err }, 'producer-state snapshot failed'))
      .finally(() => {
        if (this.#snapshotting === snapshotting) this.#snapshotting = undefined;
      });
    this.#snapshotting = snapshotting;
    return snapshotting;
  }

  /**
   * After the log closed: a last snapshot covering the whole log, if the log closed cleanly
   * (everything appended is readable) and `snapshot` (not after Broker.halt). Then nothing more
   * is written.
   */
  async close({ snapshot = true }: { snapshot?: boolean } = {}): Promise<void> {
    this.#stop.abort();
    await this.#snapshotting;
    const log = this.#log;
    if (!snapshot || log.highWatermark !== log.endOffset || log.endOffset === this.#coveredOffset) return;
    try {
      await writeProducerSnapshot(this.#config.io, log.dir, { coveredOffset: log.endOffset, ...this.#table.toData() });
      this.#coveredOffset = log.endOffset;
    } catch (err) {
      this.#config.logger.warn({ dir: log.dir, err }, 'producer-state snapshot at close failed');
    }
  }

  /** The partition is going away (topic deleted): stop, write nothing more. */
  async discard(): Promise<void> {
    if (byLog.get(this.#log) === this) byLog.delete(this.#log);
    this.#stop.abort();
    await this.#snapshotting;
  }
}

/** Resolves true once the log's high watermark reaches `offset`, false if `signal` aborts first. */
function waitVisible(log: PartitionLog, offset: number, signal: AbortSignal): Promise<boolean> {
  if (log.highWatermark >= offset) return Promise.resolve(true);
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      unsubscribe();
      signal.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = (): void => done(false);
    const unsubscribe = log.onVisible((hw) => {
      if (hw >= offset) done(true);
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** INTERNAL: a log the manager never opened producer state for. */
export function noProducerState(dir: string): SluiceError {
  return new SluiceError('UNKNOWN', `no producer state is open for the log in ${dir}`);
}
