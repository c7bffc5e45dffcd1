/**
 * One segment of a partition log: OFFSET20.log plus its two sparse indexes.
 *
 * .log format: record batches (Kafka RecordBatch v2, client/protocol/record-batch.ts) back to
 * back, exactly as producers sent them except for the base offset the log wrote into each.
 * Nothing else: no segment header, no padding. The first batch's base offset equals the
 * segment's base offset (its file name); each next batch starts at the previous one's last
 * offset + 1. The index formats are in offset-index.ts and time-index.ts.
 *
 * A segment is active (appended to, indexes in memory) until sealed. Sealed segments opened from
 * disk load their indexes lazily on first use, with a cheap check of the tail (see `#load`).
 */
import path from 'node:path';
import { type FrameHeader, scanBatches } from './batch-scan.js';
import { type FileHandle, type FileIO, readWholeFile } from './file-io.js';
import { IndexBuilder } from './index-builder.js';
import { OffsetIndex } from './offset-index.js';
import type { LogSink } from './options.js';
import { TimeIndex } from './time-index.js';
import { VerifiedRanges } from './verified-ranges.js';

export const LOG_SUFFIX = '.log';
export const INDEX_SUFFIX = '.index';
export const TIME_INDEX_SUFFIX = '.timeindex';

/** `00000000000000001234` for 1234: sorts like the number, as Kafka and tidwall/wal name files. */
export function segmentName(baseOffset: number): string {
  return String(baseOffset).padStart(20, '0');
}

/** The base offset a segment file name encodes, or undefined for other files. */
export function parseSegmentName(file: string): { baseOffset: number; suffix: string } | undefined {
  const m = /^(\d{20})(\.log|\.index|\.timeindex)$/.exec(file);
  if (!m) return undefined;
  const baseOffset = Number(m[1]);
  return Number.isSafeInteger(baseOffset) ? { baseOffset, suffix: m[2]! } : undefined;
}

export interface SegmentContext {
  readonly io: FileIO;
  readonly dir: string;
  readonly indexIntervalBytes: number;
  readonly logger: LogSink;
  /** Open segments for appending with O_DSYNC (fsync=always): a write is its own fdatasync. */
  readonly durableWrites: boolean;
}

/** A batch as the append path hands it to `write`. */
export interface WriteEntry {
  readonly batch: Buffer;
  readonly baseOffset: number;
  readonly lastOffset: number;
  readonly maxTimestamp: number;
}

export class Segment {
  readonly baseOffset: number;
  readonly #ctx: SegmentContext;
  /** Bytes in the .log file that belong to the log (written, possibly not yet synced). */
  size: number;
  /** The offset after the last batch. */
  endOffset: number;
  /** Byte ranges whose CRC is known good: written by this process or verified once on read. */
  readonly verified = new VerifiedRanges();
  #sealed: boolean;
  #fh: FileHandle | undefined;
  #opening: Promise<FileHandle> | undefined;
  #indexes: IndexBuilder | undefined;
  #loading: Promise<IndexBuilder> | undefined;
  #rebuilt = false;
  #reported = new Set<number>();
  #readers = 0;
  #removed = false;
  #closing: Promise<void> | undefined;

  private constructor(ctx: SegmentContext, baseOffset: number, size: number, endOffset: number, sealed: boolean) {
    this.#ctx = ctx;
    this.baseOffset = baseOffset;
    this.size = size;
    this.endOffset = endOffset;
    this.#sealed = sealed;
  }

  static paths(dir: string, baseOffset: number): { log: string; index: string; timeIndex: string } {
    const base = path.join(dir, segmentName(baseOffset));
    return { log: base + LOG_SUFFIX, index: base + INDEX_SUFFIX, timeIndex: base + TIME_INDEX_SUFFIX };
  }

  /** A new, empty active segment. The caller fsyncs the directory. */
  static async create(ctx: SegmentContext, baseOffset: number): Promise<Segment> {
    const p = Segment.paths(ctx.dir, baseOffset);
    const fh = await ctx.io.open(p.log, 'create', { durableWrites: ctx.durableWrites });
    for (const file of [p.index, p.timeIndex]) await (await ctx.io.open(file, 'create')).close();
    const seg = new Segment(ctx, baseOffset, 0, baseOffset, false);
    seg.#fh = fh;
    seg.#indexes = new IndexBuilder(baseOffset, ctx.indexIntervalBytes);
    return seg;
  }

  /** A sealed segment trusted from a previous run: nothing is read until it is used. */
  static sealedOnDisk(ctx: SegmentContext, baseOffset: number, size: number, endOffset: number): Segment {
    return new Segment(ctx, baseOffset, size, endOffset, true);
  }

  /**
   * An active segment whose end and indexes recovery has established; its batches from
   * `verifiedFrom` on passed their CRC during recovery.
   */
  static recovered(
    ctx: SegmentContext,
    fh: FileHandle,
    where: { baseOffset: number; size: number; endOffset: number; verifiedFrom: number },
    indexes: IndexBuilder,
  ): Segment {
    const seg = new Segment(ctx, where.baseOffset, where.size, where.endOffset, false);
    seg.#fh = fh;
    seg.#indexes = indexes;
    seg.verified.add(where.verifiedFrom, where.size);
    return seg;
  }

  get sealed(): boolean {
    return this.#sealed;
  }

  /** maxTimestamp of the first batch, for time-based rolling (active segments only). */
  get firstTimestamp(): number | undefined {
    return this.#indexes?.firstTimestamp;
  }

  // ---- append path ---------------------------------------------------------------------------

  /** Appends batches with one writev. Index entries are recorded in memory only. */
  async write(entries: readonly WriteEntry[]): Promise<void> {
    const fh = this.#fh;
    const indexes = this.#indexes;
    if (!fh || !indexes || this.#sealed) throw new Error(`segment ${this.baseOffset} is not active`);
    const buffers: Buffer[] = new Array<Buffer>(entries.length);
    let bytes = 0;
    for (let i = 0; i < entries.length; i++) {
      buffers[i] = entries[i]!.batch;
      bytes += entries[i]!.batch.length;
    }
    const start = this.size;
    await fh.writev(buffers, start);
    let pos = start;
    for (const e of entries) {
      indexes.add(e.baseOffset, e.maxTimestamp, pos, e.batch.length);
      pos += e.batch.length;
    }
    this.size = start + bytes;
    this.endOffset = entries[entries.length - 1]!.lastOffset + 1;
    // Verified by append() before it was written: reads of this run need not check it again.
    this.verified.add(start, this.size);
  }

  /** Whether `write` returns only once the bytes are durable (the handle has O_DSYNC). */
  get durableWrites(): boolean {
    return this.#fh?.durableWrites ?? false;
  }

  async sync(): Promise<void> {
    await (await this.handle()).datasync();
  }

  /** Stops appends (in memory, at once); `persistSealed` then makes it durable. */
  markSealed(): void {
    this.#indexes?.finish();
    this.#sealed = true;
  }

  /**
   * Writes both index files and fdatasyncs them and the log. Run after a roll (in the background)
   * and at clean shutdown for the active segment, so what a later open trusts is on disk.
   */
  async persist(): Promise<void> {
    const indexes = this.#indexes;
    if (indexes) {
      if (!this.#sealed) indexes.finish();
      const p = Segment.paths(this.#ctx.dir, this.baseOffset);
      await this.#writeFile(p.index, indexes.offsetIndex.encode());
      await this.#writeFile(p.timeIndex, indexes.timeIndex.encode());
    }
    await this.sync();
  }

  async #writeFile(file: string, data: Buffer): Promise<void> {
    const fh = await this.#ctx.io.open(file, 'create');
    try {
      if (data.length > 0) await fh.writev([data], 0);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  // ---- indexes -------------------------------------------------------------------------------

  /** The segment's indexes, loading (and if need be rebuilding) them on first use. */
  indexes(): Promise<IndexBuilder> {
    if (this.#indexes) return Promise.resolve(this.#indexes);
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  /** Largest batch maxTimestamp in the segment; -Infinity when empty. */
  async maxTimestamp(): Promise<number> {
    return (await this.indexes()).maxTimestamp;
  }

  /**
   * Throws away the in-memory indexes and rebuilds them from the log (a reader found an entry
   * pointing at the wrong batch). Returns undefined when they were rebuilt from the log already:
   * then the log itself is damaged there.
   */
  async rebuildIndexes(reason: string): Promise<IndexBuilder | undefined> {
    if (this.#rebuilt || !this.#sealed) return undefined;
    this.#indexes = undefined;
    this.#loading = this.#rebuild(reason).finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  /**
   * Lazy load of a sealed segment from a previous run. Trusts the index files when they parse,
   * then checks the tail cheaply: the batches after the last index entry must be good (CRC),
   * end exactly at the file's end with the expected offset, and not exceed the time index's
   * maximum. Anything else rebuilds both indexes with a full scan, which stops at the first bad
   * batch: the rest of the segment stays on disk but unreachable, and reads there report
   * CORRUPT_RECORD (it is never truncated or renumbered; see docs/storage.md).
   */
  async #load(): Promise<IndexBuilder> {
    const p = Segment.paths(this.#ctx.dir, this.baseOffset);
    const count = this.endOffset - this.baseOffset;
    const indexBuf = await readWholeFile(this.#ctx.io, p.index);
    const timeBuf = await readWholeFile(this.#ctx.io, p.timeIndex);
    const offsetIndex = indexBuf && OffsetIndex.decode(indexBuf, this.size, count);
    const timeIndex = timeBuf && TimeIndex.decode(timeBuf, count);
    if (!offsetIndex || !timeIndex) return this.#rebuild(`index files missing or damaged`);
    const lastEntry = offsetIndex.floor(Number.MAX_SAFE_INTEGER);
    const lastTime = timeIndex.last();
    let tailMax = Number.NEGATIVE_INFINITY;
    const tail = await scanBatches(await this.handle(), {
      fileSize: this.size,
      from: lastEntry.position,
      expectedOffset: this.baseOffset + lastEntry.relativeOffset,
      verifyCrc: true,
      onBatch: (h) => {
        if (h.maxTimestamp > tailMax) tailMax = h.maxTimestamp;
      },
    });
    const problem =
      tail.problem ??
      (tail.endOffset !== this.endOffset ? `ends at offset ${tail.endOffset}, expected ${this.endOffset}` : undefined) ??
      (this.size > 0 && (!lastTime || tailMax > lastTime.timestamp) ? 'time index is behind the log' : undefined);
    if (problem) return this.#rebuild(problem);
    this.verified.add(lastEntry.position, this.size);
    const builder = new IndexBuilder(this.baseOffset, this.#ctx.indexIntervalBytes, offsetIndex, timeIndex);
    builder.resume(tail.lastBatchOffset, lastTime?.timestamp ?? tailMax, undefined, this.size);
    this.#indexes = builder;
    return builder;
  }

  async #rebuild(reason?: string): Promise<IndexBuilder> {
    this.#rebuilt = true;
    if (reason) this.#ctx.logger.warn({ dir: this.#ctx.dir, segment: this.baseOffset, reason }, 'sealed segment check failed; rescanning it');
    const builder = new IndexBuilder(this.baseOffset, this.#ctx.indexIntervalBytes);
    const scan = await scanBatches(await this.handle(), {
      fileSize: this.size,
      from: 0,
      expectedOffset: this.baseOffset,
      verifyCrc: true,
      onBatch: (h: FrameHeader, pos: number, size: number) => builder.add(h.baseOffset, h.maxTimestamp, pos, size),
    });
    builder.finish();
    this.verified.add(0, scan.validEnd);
    if (scan.problem || scan.endOffset !== this.endOffset) {
      this.#ctx.logger.warn(
        { dir: this.#ctx.dir, segment: this.baseOffset, position: scan.validEnd, offset: scan.endOffset, problem: scan.problem },
        'corruption in a sealed segment: offsets from here to the next readable batch fail with CORRUPT_RECORD',
      );
    }
    this.#indexes = builder;
    // Rewriting the index files is an optimisation (the next open skips this scan); a failure to
    // write them costs nothing but that, so it is reported and not fatal.
    const p = Segment.paths(this.#ctx.dir, this.baseOffset);
    try {
      await this.#writeFile(p.index, builder.offsetIndex.encode());
      await this.#writeFile(p.timeIndex, builder.timeIndex.encode());
    } catch (err) {
      this.#ctx.logger.warn({ dir: this.#ctx.dir, segment: this.baseOffset, err }, 'could not rewrite rebuilt indexes');
    }
    return builder;
  }

  /** Logs a damaged batch once per position (consumers retrying a bad offset would flood the log). */
  reportCorruption(position: number, offset: number, reason: string): void {
    if (this.#reported.has(position)) return;
    this.#reported.add(position);
    this.#ctx.logger.warn(
      { dir: this.#ctx.dir, segment: this.baseOffset, position, offset, reason },
      'corrupt batch in the log; reads of it fail with CORRUPT_RECORD',
    );
  }

  // ---- file handle and lifetime --------------------------------------------------------------

  /** The .log handle, opened on first use for sealed segments (a restart opens no sealed files). */
  handle(): Promise<FileHandle> {
    if (this.#fh) return Promise.resolve(this.#fh);
    if (this.#removed) return Promise.reject(new Error(`segment ${this.baseOffset} was removed`));
    this.#opening ??= this.#ctx.io.open(Segment.paths(this.#ctx.dir, this.baseOffset).log, 'read').then((fh) => {
      this.#fh = fh;
      this.#opening = undefined;
      return fh;
    });
    return this.#opening;
  }

  /** Readers hold the segment so that retention cannot close its file under them. */
  acquire(): void {
    this.#readers++;
  }

  release(): void {
    this.#readers--;
    if (this.#readers === 0 && this.#removed) void this.close().catch(() => {});
  }

  /** Deletes the files (retention); the handle closes once the last reader is done. */
  async remove(): Promise<void> {
    this.#removed = true;
    const p = Segment.paths(this.#ctx.dir, this.baseOffset);
    for (const file of [p.log, p.index, p.timeIndex]) {
      await this.#ctx.io.unlink(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    if (this.#readers === 0) await this.close();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const fh = this.#fh ?? (this.#opening ? await this.#opening.catch(() => undefined) : undefined);
      this.#fh = undefined;
      await fh?.close();
    })();
    return this.#closing;
  }
}
