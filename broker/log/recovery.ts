/**
 * Opening a partition directory: decide what to trust, scan what is not trusted, and cut the log
 * back to its longest good prefix. See docs/storage.md, "Recovery".
 *
 * 1. Remove leftovers: temp files of interrupted atomic writes, index files without a .log
 *    (retention stopped half way).
 * 2. Take the clean-shutdown marker (removing it durably before anything is appended).
 * 3. Sealed segments below the recovery point are trusted without reading a byte; their indexes
 *    load lazily on first use, with a cheap tail check (segment.ts).
 * 4. After a clean shutdown the active segment is trusted too: its indexes are loaded and only
 *    the batches after the last index entry are walked (CRC-checked) to find its end.
 * 5. Otherwise every segment from the first untrusted one is scanned batch by batch: length,
 *    magic, CRC, contiguous offsets. At the first bad byte the segment is truncated (garbage after
 *    the last valid batch included), and any later segments are deleted: they were written after
 *    the bad point and were never acknowledged under fsync=always (see the promises in docs).
 *    Scanned segments are fdatasynced, so a later power cut cannot take back what recovery made
 *    visible.
 */
import path from 'node:path';
import { readBatchHeader } from '../../client/protocol/record-batch.js';
import { scanBatches } from './batch-scan.js';
import { readRecoveryPoint, takeCleanShutdown, writeRecoveryPoint } from './checkpoint.js';
import { type FileHandle, ensureDir, readFully, readWholeFile } from './file-io.js';
import { IndexBuilder } from './index-builder.js';
import { OffsetIndex } from './offset-index.js';
import type { PartitionLogConfig } from './options.js';
import { LOG_SUFFIX, Segment, type SegmentContext, parseSegmentName } from './segment.js';
import { TimeIndex } from './time-index.js';

export interface RecoveredLog {
  segments: Segment[];
  /** Whether the previous run closed cleanly. */
  clean: boolean;
}

export async function recoverLog(config: PartitionLogConfig): Promise<RecoveredLog> {
  const { io, dir, logger } = config;
  const ctx: SegmentContext = { io, dir, indexIntervalBytes: config.indexIntervalBytes, logger, durableWrites: config.fsync === 'always' };
  await ensureDir(io, dir);
  const names = await io.readdir(dir);
  const bases = new Set<number>();
  for (const name of names) {
    const parsed = parseSegmentName(name);
    if (parsed?.suffix === LOG_SUFFIX) bases.add(parsed.baseOffset);
  }
  let removedStray = false;
  for (const name of names) {
    const parsed = parseSegmentName(name);
    if (name.endsWith('.tmp') || (parsed && !bases.has(parsed.baseOffset))) {
      await io.unlink(path.join(dir, name));
      removedStray = true;
    }
  }
  if (removedStray) await io.fsyncDir(dir);

  const clean = await takeCleanShutdown(io, dir);
  const recoveryPoint = (await readRecoveryPoint(io, dir)) ?? 0;
  const sorted = [...bases].sort((a, b) => a - b);
  if (sorted.length === 0) {
    const seg = await Segment.create(ctx, 0);
    await io.fsyncDir(dir);
    return { segments: [seg], clean };
  }

  const last = sorted.length - 1;
  const segments: Segment[] = [];
  let firstScan = clean ? last : sorted.findIndex((_, i) => i === last || sorted[i + 1]! > recoveryPoint);
  for (let i = 0; i < firstScan; i++) {
    const base = sorted[i]!;
    const stat = await io.stat(Segment.paths(dir, base).log);
    segments.push(Segment.sealedOnDisk(ctx, base, stat?.size ?? 0, sorted[i + 1]!));
  }

  if (clean) {
    const active = await openCleanActive(ctx, sorted[last]!);
    if (active) {
      segments.push(active);
      return { segments, clean };
    }
    logger.warn({ dir, segment: sorted[last] }, 'clean shutdown marker present but the active segment does not match its index; scanning it');
    firstScan = last;
  }

  for (let i = firstScan; i <= last; i++) {
    const base = sorted[i]!;
    const seg = await scanSegment(ctx, base);
    segments.push(seg);
    const next = sorted[i + 1];
    if (next === undefined) break;
    if (next !== seg.endOffset) {
      // Later segments start past a gap (or overlap): they cannot be kept contiguous.
      const doomed = sorted.slice(i + 1);
      logger.warn({ dir, endOffset: seg.endOffset, deleted: doomed }, 'deleting segments after the end of the recovered log');
      for (const b of doomed) {
        const p = Segment.paths(dir, b);
        for (const f of [p.log, p.index, p.timeIndex]) await io.unlink(f).catch(() => {});
      }
      await io.fsyncDir(dir);
      break;
    }
    seg.markSealed();
    await seg.persist();
  }
  const active = segments[segments.length - 1]!;
  await active.sync();
  if (active.baseOffset !== recoveryPoint) await writeRecoveryPoint(io, dir, active.baseOffset);
  return { segments, clean };
}

/** Full scan of one segment with CRC checks; truncates it at the first bad byte. */
async function scanSegment(ctx: SegmentContext, base: number): Promise<Segment> {
  const fh = await ctx.io.open(Segment.paths(ctx.dir, base).log, 'write', { durableWrites: ctx.durableWrites });
  const size = await fh.size();
  const builder = new IndexBuilder(base, ctx.indexIntervalBytes);
  const scan = await scanBatches(fh, {
    fileSize: size,
    from: 0,
    expectedOffset: base,
    verifyCrc: true,
    onBatch: (h, pos, sz) => builder.add(h.baseOffset, h.maxTimestamp, pos, sz),
  });
  if (scan.problem) {
    ctx.logger.warn(
      { dir: ctx.dir, segment: base, position: scan.validEnd, dropped: size - scan.validEnd, problem: scan.problem },
      'truncating the log tail after an unclean stop',
    );
    await fh.truncate(scan.validEnd);
    await fh.datasync();
  }
  return Segment.recovered(ctx, fh, { baseOffset: base, size: scan.validEnd, endOffset: scan.endOffset, verifiedFrom: 0 }, builder);
}

/**
 * The active segment after a clean shutdown: trust its index files (written and synced by
 * close) and walk only the batches after the last index entry. Undefined if anything is off.
 */
async function openCleanActive(ctx: SegmentContext, base: number): Promise<Segment | undefined> {
  const p = Segment.paths(ctx.dir, base);
  const fh = await ctx.io.open(p.log, 'write', { durableWrites: ctx.durableWrites });
  const size = await fh.size();
  const indexBuf = await readWholeFile(ctx.io, p.index);
  const timeBuf = await readWholeFile(ctx.io, p.timeIndex);
  const offsetIndex = indexBuf && OffsetIndex.decode(indexBuf, size, Number.MAX_SAFE_INTEGER);
  const timeIndex = timeBuf && TimeIndex.decode(timeBuf, Number.MAX_SAFE_INTEGER);
  const fail = async (): Promise<undefined> => {
    await fh.close();
    return undefined;
  };
  if (!offsetIndex || !timeIndex) return fail();
  const lastEntry = offsetIndex.floor(Number.MAX_SAFE_INTEGER);
  let tailMax = Number.NEGATIVE_INFINITY;
  const tail = await scanBatches(fh, {
    fileSize: size,
    from: lastEntry.position,
    expectedOffset: base + lastEntry.relativeOffset,
    verifyCrc: true,
    onBatch: (h) => {
      tailMax = Math.max(tailMax, h.maxTimestamp);
    },
  });
  const lastTime = timeIndex.last();
  if (tail.problem || (size > 0 && (!lastTime || tailMax > lastTime.timestamp))) return fail();
  const count = tail.endOffset - base;
  if (offsetIndex.last() && offsetIndex.last()!.relativeOffset >= count) return fail();
  if (lastTime && lastTime.relativeOffset >= count) return fail();
  const builder = new IndexBuilder(base, ctx.indexIntervalBytes, offsetIndex, timeIndex);
  builder.resume(tail.lastBatchOffset, lastTime?.timestamp ?? tailMax, await firstBatchTimestamp(fh, size), size);
  return Segment.recovered(ctx, fh, { baseOffset: base, size, endOffset: tail.endOffset, verifiedFrom: lastEntry.position }, builder);
}

async function firstBatchTimestamp(fh: FileHandle, size: number): Promise<number | undefined> {
  if (size === 0) return undefined;
  const buf = Buffer.alloc(61);
  if ((await readFully(fh, buf, 0, 61, 0)) < 61) return undefined;
  try {
    return readBatchHeader(buf).maxTimestamp;
  } catch {
    return undefined;
  }
}
