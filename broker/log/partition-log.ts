/**
 * The log of one partition: an append-only sequence of record batches in segment files, with
 * group commit, a high watermark, reads by offset and time, retention and crash recovery.
 * Knows nothing of sockets or of the metadata store. docs/storage.md has the format and the
 * promises; the invariants this file keeps:
 *
 * - Offsets are assigned in append() call order, contiguously, and never reused or renumbered.
 * - Bytes reach the file in offset order (one commit at a time, see group-commit.ts).
 * - highWatermark <= the end of what is written; under fsync=always, <= the end of what is
 *   durable. Readers never see past it, so under `always` no consumer reads what a power cut
 *   could take back.
 * - An append is acknowledged only after its commit: written (interval, never) or written
 *   durably (always: an O_DSYNC write, or a write and an fdatasync). After the first failed
 *   write or fsync every pending and later append fails with STORAGE_ERROR and onFatal runs
 *   once: a write that may be half on disk is never retried and acknowledged.
 */
import { SluiceError, isSluiceError } from '../../client/protocol/errors.js';
import { setBaseOffset, verifyBatch, type BatchHeader } from '../../client/protocol/record-batch.js';
import { writeCleanShutdown, writeRecoveryPoint } from './checkpoint.js';
import { type CommitItem, CommitQueue } from './group-commit.js';
import { type FsyncMode, type PartitionLogConfig, type PartitionLogOptions, parsePartitionLogOptions } from './options.js';
import { recoverLog } from './recovery.js';
import { RecentBatches } from './recent-batches.js';
import { findOffsetByTimestamp, readFromSegment } from './segment-reader.js';
import { Segment, type SegmentContext, type WriteEntry } from './segment.js';

export type { FsyncMode, PartitionLogOptions, LogSink } from './options.js';

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
}

/** One queued append: what the commit writes, and how to settle the caller's promise. */
class PendingAppend implements CommitItem, WriteEntry {
  constructor(
    readonly batch: Buffer,
    readonly baseOffset: number,
    readonly lastOffset: number,
    readonly maxTimestamp: number,
    private readonly settle: (result: AppendResult) => void,
    readonly reject: (err: Error) => void,
  ) {}

  resolve(): void {
    this.settle({ baseOffset: this.baseOffset, lastOffset: this.lastOffset });
  }
}

// Relative offsets in the index are uint32; roll well before a segment could span more.
const MAX_RELATIVE_OFFSET = 0x7fff_ffff;
// A read is one buffer; bound it whatever a client asks for (the wire caps fetches far lower).
const MAX_READ_BYTES = 64 * 1024 * 1024;

type State = 'open' | 'closing' | 'closed';

export class PartitionLog {
  readonly #config: PartitionLogConfig;
  readonly #ctx: SegmentContext;
  readonly #segments: Segment[];
  #nextOffset: number;
  #highWatermark: number;
  #state: State = 'open';
  /** Sealed segments whose indexes and fdatasync are still being written (retention waits for them). */
  readonly #sealing = new Set<Segment>();
  #fatal: SluiceError | undefined;
  readonly #queue: CommitQueue<PendingAppend>;
  /** What the last commits wrote, for reads at the end of the log. */
  readonly #recent: RecentBatches;
  readonly #listeners = new Set<(highWatermark: number) => void>();
  readonly #retentionListeners = new Set<(startOffset: number) => void>();
  /** Sealing of rolled segments and recovery-point updates, one after another, off the append path. */
  #background: Promise<void> = Promise.resolve();
  #intervalTimer: NodeJS.Timeout | undefined;
  #intervalSync: Promise<void> = Promise.resolve();
  #dirty = false;
  #retention: Promise<number> = Promise.resolve(0);
  #closing: Promise<void> | undefined;

  private constructor(config: PartitionLogConfig, segments: Segment[]) {
    this.#config = config;
    this.#ctx = { io: config.io, dir: config.dir, indexIntervalBytes: config.indexIntervalBytes, logger: config.logger, durableWrites: config.fsync === 'always' };
    this.#segments = segments;
    this.#nextOffset = this.#active.endOffset;
    this.#highWatermark = this.#nextOffset;
    this.#queue = new CommitQueue((items) => this.#commit(items));
    this.#recent = new RecentBatches(config.recentBatchBytes);
    if (config.fsync === 'interval') {
      this.#intervalTimer = setInterval(() => this.#periodicSync(), config.fsyncIntervalMs);
      this.#intervalTimer.unref();
    }
  }

  /** Opens (creating if needed) and recovers the log in `options.dir`. */
  static async open(options: PartitionLogOptions): Promise<PartitionLog> {
    const config = parsePartitionLogOptions(options);
    try {
      const { segments } = await recoverLog(config);
      return new PartitionLog(config, segments);
    } catch (err) {
      if (isSluiceError(err)) throw err;
      throw new SluiceError('STORAGE_ERROR', `cannot open the log in ${config.dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  get dir(): string {
    return this.#config.dir;
  }

  get fsyncMode(): FsyncMode {
    return this.#config.fsync;
  }

  /** The first offset still in the log. */
  get startOffset(): number {
    return this.#segments[0]!.baseOffset;
  }

  /** The offset the next append gets (includes appends not yet acknowledged). */
  get endOffset(): number {
    return this.#nextOffset;
  }

  /** One past the last offset readers may see (durable under fsync=always). */
  get highWatermark(): number {
    return this.#highWatermark;
  }

  /** Total bytes of all segment files. */
  get sizeBytes(): number {
    let total = 0;
    for (const s of this.#segments) total += s.size;
    return total;
  }

  get segmentCount(): number {
    return this.#segments.length;
  }

  get #active(): Segment {
    return this.#segments[this.#segments.length - 1]!;
  }

  /**
   * Appends one record batch. Verifies it (CRC, shape), writes its base offset into `batch` in
   * place (the caller's buffer is modified) and resolves once it is durable per the fsync mode.
   * The log may keep `batch` after that, to answer reads at the end of the log from memory
   * (recent-batches.ts): the caller must not change it afterwards.
   * A caller that verified the batch already (the broker checks every produced batch at the
   * edge) passes the header verifyBatch returned, so the CRC is not computed twice.
   */
  append(batch: Buffer, verified?: BatchHeader): Promise<AppendResult> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    if (this.#state !== 'open') return Promise.reject(new SluiceError('SHUTTING_DOWN', `the log in ${this.#config.dir} is closed`));
    if (batch.length > this.#config.maxBatchBytes) {
      return Promise.reject(
        new SluiceError('RECORD_TOO_LARGE', `batch of ${batch.length} bytes exceeds ${this.#config.maxBatchBytes}`, {
          details: { size: batch.length, max: this.#config.maxBatchBytes },
        }),
      );
    }
    let header = verified;
    if (header === undefined) {
      try {
        header = verifyBatch(batch, 0);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (header.batchLength + 12 !== batch.length) {
      return Promise.reject(new SluiceError('INVALID_RECORD', `${batch.length - header.batchLength - 12} bytes after the batch`));
    }
    const baseOffset = this.#nextOffset;
    const lastOffset = baseOffset + header.lastOffsetDelta;
    setBaseOffset(batch, baseOffset);
    this.#nextOffset = lastOffset + 1;
    return new Promise<AppendResult>((resolve, reject) => {
      this.#queue.push(new PendingAppend(batch, baseOffset, lastOffset, header.maxTimestamp, resolve, reject));
    });
  }

  /** One commit of the group-commit queue: roll as needed, writev, fsync per mode, advance. */
  async #commit(items: PendingAppend[]): Promise<void> {
    let phase = 'roll';
    try {
      const touched: Segment[] = [];
      for (let i = 0; i < items.length; ) {
        if (this.#shouldRoll(this.#active, this.#active.size, items[i]!)) await this.#roll(items[i]!.baseOffset);
        const seg = this.#active;
        let size = seg.size + items[i]!.batch.length;
        let end = i + 1;
        while (end < items.length && !this.#shouldRoll(seg, size, items[end]!)) size += items[end++]!.batch.length;
        // One writev per segment; normally the whole group, passed as it is. A sync failure of
        // an O_DSYNC write fails the write, so the error names both.
        phase = seg.durableWrites ? 'write (O_DSYNC)' : 'write';
        await seg.write(i === 0 && end === items.length ? items : items.slice(i, end));
        touched.push(seg);
        i = end;
      }
      if (this.#config.fsync === 'always') {
        phase = 'fdatasync';
        // Segments opened with O_DSYNC are durable already: their write was the sync.
        for (const seg of touched) if (!seg.durableWrites) await seg.sync();
      } else {
        this.#dirty = true;
      }
    } catch (err) {
      throw this.#fail(err, phase);
    }
    for (const item of items) this.#recent.add(item.batch, item.baseOffset, item.lastOffset);
    this.#advance(items[items.length - 1]!.lastOffset + 1);
  }

  #shouldRoll(seg: Segment, size: number, item: PendingAppend): boolean {
    if (size === 0) return false;
    if (size + item.batch.length > this.#config.segmentBytes) return true;
    if (item.lastOffset - seg.baseOffset > MAX_RELATIVE_OFFSET) return true;
    // Age in record time, as Kafka does: producer clocks older than the segment cannot cause a
    // roll per batch, and a restart does not reset the age.
    const first = seg.firstTimestamp;
    return first !== undefined && item.maxTimestamp - first >= this.#config.segmentMs;
  }

  /**
   * Starts a new active segment at `baseOffset`. The new files and their directory entries are
   * durable before anything is written to them; the old segment's indexes are written and it is
   * fdatasynced in the background, then the recovery point moves past it.
   */
  async #roll(baseOffset: number): Promise<void> {
    const old = this.#active;
    const seg = await Segment.create(this.#ctx, baseOffset);
    await this.#config.io.fsyncDir(this.#config.dir);
    old.markSealed();
    this.#sealing.add(old);
    this.#segments.push(seg);
    this.#background = this.#background.then(async () => {
      try {
        await old.persist();
        await writeRecoveryPoint(this.#config.io, this.#config.dir, baseOffset);
      } catch (err) {
        this.#fail(err, 'seal');
      } finally {
        this.#sealing.delete(old);
      }
    });
  }

  #periodicSync(): void {
    if (!this.#dirty || this.#fatal || this.#state === 'closed') return;
    this.#dirty = false;
    const seg = this.#active;
    this.#intervalSync = this.#intervalSync.then(() =>
      seg.sync().catch((err: unknown) => {
        this.#fail(err, 'fsync');
      }),
    );
  }

  #advance(highWatermark: number): void {
    if (highWatermark <= this.#highWatermark) return;
    this.#highWatermark = highWatermark;
    this.#notify(this.#listeners, highWatermark, 'onVisible');
  }

  #notify(listeners: ReadonlySet<(offset: number) => void>, offset: number, what: string): void {
    for (const listener of listeners) {
      try {
        listener(offset);
      } catch (err) {
        this.#config.logger.warn({ err }, `${what} listener threw`);
      }
    }
  }

  /** Enters the failed state (once), fails queued appends, calls onFatal; returns the error. */
  #fail(err: unknown, during: string): SluiceError {
    if (this.#fatal) return this.#fatal;
    const cause = err instanceof Error ? err : new Error(String(err));
    this.#fatal = new SluiceError('STORAGE_ERROR', `log ${this.#config.dir}: ${during} failed: ${cause.message}`, { cause });
    this.#queue.fail(this.#fatal);
    try {
      this.#config.onFatal(this.#fatal);
    } catch (e) {
      this.#config.logger.warn({ err: e }, 'onFatal threw');
    }
    return this.#fatal;
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (at least one batch), never
   * past the high watermark, from one segment. Empty at the high watermark.
   * OFFSET_OUT_OF_RANGE outside [startOffset, highWatermark]; CORRUPT_RECORD for damaged data.
   */
  async read(offset: number, maxBytes: number): Promise<Buffer> {
    if (this.#state === 'closed') throw new SluiceError('SHUTTING_DOWN', `the log in ${this.#config.dir} is closed`);
    const hw = this.#highWatermark;
    if (!Number.isSafeInteger(offset) || offset < this.startOffset || offset > hw) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${offset} is outside [${this.startOffset}, ${hw}]`, {
        details: { offset, start: this.startOffset, end: hw },
      });
    }
    if (offset === hw) return Buffer.alloc(0);
    const limit = Number.isFinite(maxBytes) && maxBytes > 0 ? Math.min(maxBytes, MAX_READ_BYTES) : 0;
    const recent = this.#recent.read(offset, limit, hw);
    if (recent !== undefined) return recent;
    const seg = this.#segmentFor(offset);
    seg.acquire();
    try {
      return await readFromSegment(seg, offset, limit, hw, this.#config.indexIntervalBytes);
    } catch (err) {
      if (isSluiceError(err)) throw err;
      // An I/O error on the read path (EIO from a bad sector, a file removed behind our back):
      // this read fails; appends are unaffected, so the log is not failed.
      this.#config.logger.warn({ dir: this.#config.dir, offset, err }, 'read failed');
      throw new SluiceError('STORAGE_ERROR', `reading offset ${offset} from ${this.#config.dir}: ${(err as Error).message}`, {
        cause: err,
        details: { offset },
      });
    } finally {
      seg.release();
    }
  }

  /** The segment holding `offset` (binary search on base offsets). */
  #segmentFor(offset: number): Segment {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#segments[mid]!.baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return this.#segments[lo]!;
  }

  /**
   * The base offset of the first visible batch whose maxTimestamp >= `timestamp`, or null.
   * Batch granularity: records inside it may be older (a consumer skips them by timestamp).
   */
  async offsetForTimestamp(timestamp: number): Promise<number | null> {
    const hw = this.#highWatermark;
    for (const seg of [...this.#segments]) {
      if (seg.baseOffset >= hw) break;
      seg.acquire();
      try {
        if ((await seg.maxTimestamp()) < timestamp) continue;
        const found = await findOffsetByTimestamp(seg, timestamp, hw);
        if (found !== undefined) return found;
      } finally {
        seg.release();
      }
    }
    return null;
  }

  /**
   * Deletes whole closed segments, oldest first, while the oldest is past retention by age
   * (its newest record older than retentionMs before `now`) or by size (the rest still holds
   * retentionBytes). Never the active segment, never past the high watermark. Returns the count.
   */
  enforceRetention(now: number = this.#config.now()): Promise<number> {
    this.#retention = this.#retention.then(() => this.#enforceRetention(now));
    return this.#retention;
  }

  async #enforceRetention(now: number): Promise<number> {
    const { retentionMs, retentionBytes } = this.#config;
    if (this.#state !== 'open' || (retentionMs === null && retentionBytes === null)) return 0;
    // Let the seals already queued finish, so their segments can go now; one queued meanwhile
    // is skipped below rather than waited for (rolls can outpace seals).
    await this.#background;
    let total = this.sizeBytes;
    let count = 0;
    while (this.#segments.length - count > 1) {
      const seg = this.#segments[count]!;
      // Never delete a segment whose sealing (index writes, fdatasync) is still running: that
      // write would then fail and stop the broker. The next run gets it.
      if (!seg.sealed || this.#sealing.has(seg) || seg.endOffset > this.#highWatermark) break;
      const bySize = retentionBytes !== null && total - seg.size >= retentionBytes;
      const byAge = retentionMs !== null && !bySize && (await seg.maxTimestamp()) < now - retentionMs;
      if (this.#sealing.has(seg) || (!bySize && !byAge)) break;
      total -= seg.size;
      count++;
    }
    if (count === 0 || this.#state !== 'open') return 0;
    const doomed = this.#segments.splice(0, count);
    for (const seg of doomed) await seg.remove();
    await this.#config.io.fsyncDir(this.#config.dir);
    this.#config.logger.info({ dir: this.#config.dir, segments: count, startOffset: this.startOffset }, 'retention deleted segments');
    this.#notify(this.#retentionListeners, this.startOffset, 'onRetention');
    return count;
  }

  /** Calls `listener` with the new high watermark each time it advances. Returns an unsubscribe. */
  onVisible(listener: (highWatermark: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Calls `listener` with the new start offset each time retention deletes segments, so readers
   * that track positions (push subscriptions) learn of messages that are gone without waiting
   * for their next wake-up. Returns an unsubscribe.
   */
  onRetention(listener: (startOffset: number) => void): () => void {
    this.#retentionListeners.add(listener);
    return () => this.#retentionListeners.delete(listener);
  }

  /**
   * Waits for pending appends, syncs everything, writes indexes, the recovery point and the
   * clean-shutdown marker. Appends after close reject with SHUTTING_DOWN.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close(true);
    return this.#closing;
  }

  /**
   * Closes the files and writes nothing more: no sync, no indexes, no recovery point, no
   * clean-shutdown marker, so the next open recovers as after a crash (Broker.halt).
   */
  abandon(): Promise<void> {
    this.#closing ??= this.#close(false);
    return this.#closing;
  }

  async #close(clean: boolean): Promise<void> {
    this.#state = 'closing';
    await this.#queue.whenIdle();
    if (this.#intervalTimer) clearInterval(this.#intervalTimer);
    await this.#intervalSync;
    await this.#background;
    await this.#retention.catch(() => 0);
    try {
      if (!this.#fatal && clean) {
        const active = this.#active;
        await active.persist();
        await writeRecoveryPoint(this.#config.io, this.#config.dir, active.baseOffset);
        await writeCleanShutdown(this.#config.io, this.#config.dir);
      }
    } catch (err) {
      throw this.#fail(err, 'close');
    } finally {
      this.#state = 'closed';
      this.#listeners.clear();
      this.#retentionListeners.clear();
      for (const seg of this.#segments) await seg.close().catch(() => {});
    }
  }
}
