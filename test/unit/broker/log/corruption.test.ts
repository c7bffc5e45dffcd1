/**
 * Damage inside sealed segments (bit rot, a bad sector, a lost index) is detected and reported
 * as CORRUPT_RECORD, never served, never skipped or renumbered; the rest stays readable.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../../../client/protocol/errors.js';
import { decodeBatches, readBatchHeader } from '../../../../client/protocol/record-batch.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import { type Captured, type FsFixture, captureLogger, fileSystems, makeBatch } from './helpers.js';

interface Placed {
  baseOffset: number;
  lastOffset: number;
  file: string;
  position: number;
  size: number;
}

/** Where every batch sits on disk, read straight from the segment files. */
function layout(fx: FsFixture, dir: string, files: string[]): Placed[] {
  const out: Placed[] = [];
  for (const file of files.filter((f) => f.endsWith('.log')).sort()) {
    const buf = fx.readFile(path.join(dir, file));
    for (let pos = 0; pos < buf.length; ) {
      const h = readBatchHeader(buf, pos);
      const size = h.batchLength + 12;
      out.push({ baseOffset: h.baseOffset, lastOffset: h.baseOffset + h.lastOffsetDelta, file: path.join(dir, file), position: pos, size });
      pos += size;
    }
  }
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return hasCode(err, 'CORRUPT_RECORD') ? 'CORRUPT_RECORD' : String(err);
  }
}

function firstOffsets(buf: Buffer): number[] {
  const recs = decodeBatches(buf);
  return [...new Set(recs.map((r) => r.offset))];
}

describe.each(fileSystems)('sealed segment corruption on $name', ({ make }) => {
  let fx: FsFixture;
  let dir: string;
  let logger: Captured;
  let placed: Placed[];
  const options = () => ({ dir, io: fx.io, logger, segmentBytes: 3000, indexIntervalBytes: 300 });

  beforeEach(async () => {
    fx = make();
    dir = path.join(fx.root, 'p');
    logger = captureLogger();
    const log = await PartitionLog.open(options());
    // 60 batches of 2 records, ~150 bytes each: about 20 batches per segment, an index entry every 2.
    for (let i = 0; i < 60; i++) await log.append(makeBatch(`b${i}`, 2, { valueBytes: 30, timestamp: 1000 + i }));
    await log.close();
    const files = await fx.io.readdir(dir);
    placed = layout(fx, dir, files);
  });
  afterEach(() => fx.cleanup());

  const damage = (target: Placed, at: number): void => {
    const buf = fx.readFile(target.file);
    buf[target.position + at]! ^= 0x10;
    fx.writeFile(target.file, buf);
  };

  it('a flipped bit in a record is reported, never served, and the neighbours stay readable', async () => {
    const victim = placed[10]!;
    expect(placed.filter((p) => p.file === victim.file).length).toBeLessThan(placed.length);
    damage(victim, victim.size - 3);
    const log = await PartitionLog.open(options());
    expect(await codeOf(log.read(victim.baseOffset, 1 << 20))).toBe('CORRUPT_RECORD');
    expect(await codeOf(log.read(victim.lastOffset, 1 << 20))).toBe('CORRUPT_RECORD');
    // A read that starts before the damage stops short of it.
    const before = await log.read(placed[8]!.baseOffset, 1 << 20);
    expect(firstOffsets(before)).toEqual([16, 17, 18, 19]);
    // After it, and in other segments, everything is served.
    expect(firstOffsets(await log.read(victim.lastOffset + 1, 1))).toEqual([22, 23]);
    expect(firstOffsets(await log.read(100, 1))).toEqual([100, 101]);
    expect(logger.warnings.some((w) => /corrupt/i.test(w.message ?? ''))).toBe(true);
    // Asking again still fails: the bad batch is never trusted.
    expect(await codeOf(log.read(victim.baseOffset, 1))).toBe('CORRUPT_RECORD');
    await log.close();
  });

  it('a damaged length field cuts off only up to the next index entry', async () => {
    const victim = placed[5]!;
    damage(victim, 9); // batchLength, outside the CRC
    const log = await PartitionLog.open(options());
    expect(await codeOf(log.read(victim.baseOffset, 1 << 20))).toBe('CORRUPT_RECORD');
    expect(firstOffsets(await log.read(0, 1 << 20)).at(-1)).toBe(victim.baseOffset - 1);
    // Some later offset of the same segment is reachable through a later index entry.
    let readable = 0;
    for (const p of placed.filter((q) => q.file === victim.file && q.baseOffset > victim.baseOffset)) {
      if ((await codeOf(log.read(p.baseOffset, 1))) === undefined) readable++;
    }
    expect(readable).toBeGreaterThan(5);
    await log.close();
  });

  it('garbage or missing index files are rebuilt from the log', async () => {
    const first = placed[0]!.file;
    fx.writeFile(first.replace(/\.log$/, '.index'), Buffer.from('not an index at all!!!!'));
    fx.removeFile(first.replace(/\.log$/, '.timeindex'));
    const log = await PartitionLog.open(options());
    for (const p of placed) expect(firstOffsets(await log.read(p.baseOffset, 1))[0]).toBe(p.baseOffset);
    expect(await log.offsetForTimestamp(1005)).toBe(10);
    expect(logger.warnings.some((w) => /rescanning/.test(w.message ?? ''))).toBe(true);
    await log.close();
  });

  it('a plausible but wrong index entry is caught by the header check and rebuilt', async () => {
    const first = placed[0]!.file;
    const indexFile = first.replace(/\.log$/, '.index');
    const index = fx.readFile(indexFile);
    expect(index.length).toBeGreaterThanOrEqual(16);
    // Point the second entry at the first entry's position: still increasing offsets, wrong place.
    index.writeUInt32BE(index.readUInt32BE(4) + 1, 12);
    fx.writeFile(indexFile, index);
    const log = await PartitionLog.open(options());
    for (const p of placed) expect(firstOffsets(await log.read(p.baseOffset, 1))[0]).toBe(p.baseOffset);
    await log.close();
  });

  it('a sealed segment file that vanished fails its reads with STORAGE_ERROR, not a crash', async () => {
    const log = await PartitionLog.open(options());
    // Gone after open: sealed segments are opened lazily, on first read.
    fx.removeFile(placed[0]!.file);
    const err = await log.read(0, 1).catch((e: unknown) => e);
    expect(hasCode(err, 'STORAGE_ERROR')).toBe(true);
    expect(firstOffsets(await log.read(placed[placed.length - 1]!.baseOffset, 1)).length).toBeGreaterThan(0);
    await log.close();
  });

  it('a sealed segment cut short is detected lazily; the intact part stays readable', async () => {
    const firstFile = placed[0]!.file;
    const inFirst = placed.filter((p) => p.file === firstFile);
    const lastOfFirst = inFirst[inFirst.length - 1]!;
    const buf = fx.readFile(firstFile);
    fx.writeFile(firstFile, buf.subarray(0, lastOfFirst.position + 20));
    const log = await PartitionLog.open(options());
    // Not renumbered: the log still starts at 0 and the next segment still follows.
    expect(log.startOffset).toBe(0);
    expect(await codeOf(log.read(lastOfFirst.baseOffset, 1))).toBe('CORRUPT_RECORD');
    expect(firstOffsets(await log.read(0, 1))).toEqual([0, 1]);
    expect(firstOffsets(await log.read(lastOfFirst.lastOffset + 1, 1))[0]).toBe(lastOfFirst.lastOffset + 1);
    expect((await log.append(makeBatch('new'))).baseOffset).toBe(120);
    await log.close();
  });
});
