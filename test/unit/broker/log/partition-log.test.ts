import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../../../client/protocol/errors.js';
import { decodeBatches, readBatchHeader } from '../../../../client/protocol/record-batch.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import type { FileHandle, FileIO, OpenMode, OpenOptions } from '../../../../broker/log/file-io.js';
import type { PartitionLogOptions } from '../../../../broker/log/options.js';
import { type FsFixture, captureLogger, fileSystems, makeBatch } from './helpers.js';

function baseOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const h = readBatchHeader(buf, pos);
    out.push(h.baseOffset);
    pos += h.batchLength + 12;
  }
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: Parameters<typeof hasCode>[1]): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(hasCode(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
}

describe.each(fileSystems)('PartitionLog on $name', ({ make }) => {
  let fx: FsFixture;
  let dir: string;
  const open = (options: Partial<PartitionLogOptions> = {}): Promise<PartitionLog> =>
    PartitionLog.open({ dir, io: fx.io, logger: captureLogger(), ...options });

  beforeEach(() => {
    fx = make();
    dir = path.join(fx.root, 'topics', 't', '0');
  });
  afterEach(() => fx.cleanup());

  it('starts empty: reads at the end are empty, past it out of range', async () => {
    const log = await open();
    expect([log.startOffset, log.endOffset, log.highWatermark]).toEqual([0, 0, 0]);
    expect((await log.read(0, 1000)).length).toBe(0);
    await rejectsWith(log.read(1, 1000), 'OFFSET_OUT_OF_RANGE');
    await rejectsWith(log.read(-1, 1000), 'OFFSET_OUT_OF_RANGE');
    await log.close();
  });

  it('assigns contiguous offsets, rewrites the base offset in place and serves the same bytes', async () => {
    const log = await open();
    const a = makeBatch('a', 3);
    const b = makeBatch('b', 2);
    expect(await log.append(a)).toEqual({ baseOffset: 0, lastOffset: 2 });
    expect(await log.append(b)).toEqual({ baseOffset: 3, lastOffset: 4 });
    expect(readBatchHeader(b).baseOffset).toBe(3);
    expect([log.endOffset, log.highWatermark]).toEqual([5, 5]);
    const all = await log.read(0, 1 << 20);
    expect(all).toEqual(Buffer.concat([a, b]));
    expect(decodeBatches(all).map((r) => r.offset)).toEqual([0, 1, 2, 3, 4]);
    // An offset inside a batch returns that whole batch.
    expect(baseOffsets(await log.read(4, 1 << 20))).toEqual([3]);
    expect(baseOffsets(await log.read(1, 1 << 20))).toEqual([0, 3]);
    await log.close();
  });

  it('returns one whole batch when maxBytes is smaller, and as many whole batches as fit otherwise', async () => {
    const log = await open();
    const sizes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const batch = makeBatch(`m${i}`, 4, { valueBytes: 50 });
      sizes.push(batch.length);
      await log.append(batch);
    }
    expect(baseOffsets(await log.read(0, 1))).toEqual([0]);
    expect(baseOffsets(await log.read(0, sizes[0]! + sizes[1]!))).toEqual([0, 4]);
    expect(baseOffsets(await log.read(0, sizes[0]! + sizes[1]! - 1))).toEqual([0]);
    expect(baseOffsets(await log.read(8, 0))).toEqual([8]);
    expect(baseOffsets(await log.read(8, Number.NaN))).toEqual([8]);
    expect(baseOffsets(await log.read(8, -5))).toEqual([8]);
    await log.close();
  });

  it('rejects bad batches without disturbing the log', async () => {
    const log = await open({ maxBatchBytes: 500 });
    await rejectsWith(log.append(makeBatch('big', 1, { valueBytes: 600 })), 'RECORD_TOO_LARGE');
    const flipped = makeBatch('x', 2);
    flipped[flipped.length - 1]! ^= 0xff;
    await rejectsWith(log.append(flipped), 'CORRUPT_RECORD');
    await rejectsWith(log.append(Buffer.concat([makeBatch('y'), Buffer.from([1, 2, 3])])), 'INVALID_RECORD');
    await rejectsWith(log.append(Buffer.alloc(20)), 'INVALID_RECORD');
    expect(await log.append(makeBatch('ok'))).toEqual({ baseOffset: 0, lastOffset: 0 });
    await log.close();
  });

  it('rolls segments by size and reads across them; reopen keeps everything', async () => {
    let log = await open({ segmentBytes: 400, indexIntervalBytes: 100 });
    const expected: string[] = [];
    for (let i = 0; i < 30; i++) {
      const count = 1 + (i % 3);
      await log.append(makeBatch(`r${i}`, count, { valueBytes: 20 }));
      for (let j = 0; j < count; j++) expected.push(`r${i}:${j}`.padEnd(20, '.'));
    }
    expect(log.segmentCount).toBeGreaterThan(5);
    const readAll = async (l: PartitionLog): Promise<string[]> => {
      const out: string[] = [];
      for (let off = l.startOffset; off < l.highWatermark; ) {
        const buf = await l.read(off, 250);
        const recs = decodeBatches(buf);
        out.push(...recs.map((r) => r.value!.toString()));
        off = recs[recs.length - 1]!.offset + 1;
      }
      return out;
    };
    expect(await readAll(log)).toEqual(expected);
    const end = log.endOffset;
    await log.close();
    log = await open({ segmentBytes: 400, indexIntervalBytes: 100 });
    expect(log.endOffset).toBe(end);
    expect(await readAll(log)).toEqual(expected);
    expect(await log.append(makeBatch('after'))).toEqual({ baseOffset: end, lastOffset: end });
    await log.close();
  });

  it('rolls by segmentMs in record time', async () => {
    const log = await open({ segmentMs: 1000 });
    await log.append(makeBatch('a', 1, { timestamp: 10_000 }));
    await log.append(makeBatch('b', 1, { timestamp: 10_999 }));
    expect(log.segmentCount).toBe(1);
    await log.append(makeBatch('c', 1, { timestamp: 11_000 }));
    expect(log.segmentCount).toBe(2);
    // An old producer clock does not roll again and again.
    await log.append(makeBatch('d', 1, { timestamp: 5 }));
    await log.append(makeBatch('e', 1, { timestamp: 6 }));
    expect(log.segmentCount).toBe(2);
    await log.close();
  });

  it('rejects appends after close with SHUTTING_DOWN; close drains pending appends first', async () => {
    const log = await open();
    const pending = [log.append(makeBatch('p1')), log.append(makeBatch('p2'))];
    const closing = log.close();
    await rejectsWith(log.append(makeBatch('late')), 'SHUTTING_DOWN');
    expect(await Promise.all(pending)).toEqual([
      { baseOffset: 0, lastOffset: 0 },
      { baseOffset: 1, lastOffset: 1 },
    ]);
    await closing;
    const again = await open();
    expect(again.endOffset).toBe(2);
    await again.close();
  });

  it('notifies visibility as the high watermark advances', async () => {
    const log = await open();
    const seen: number[] = [];
    const off = log.onVisible((hw) => seen.push(hw));
    await Promise.all([log.append(makeBatch('a', 2)), log.append(makeBatch('b', 3))]);
    await log.append(makeBatch('c'));
    off();
    await log.append(makeBatch('d'));
    expect(seen).toEqual([5, 6]);
    await log.close();
  });

  it('finds offsets by timestamp at batch granularity', async () => {
    const log = await open({ segmentBytes: 300, indexIntervalBytes: 64 });
    const stamps = [100, 200, 150, 300, 300, 250, 400, 500];
    for (const [i, ts] of stamps.entries()) await log.append(makeBatch(`t${i}`, 2, { timestamp: ts }));
    expect(log.segmentCount).toBeGreaterThan(1);
    const expectFor = (ts: number): number | null => {
      const i = stamps.findIndex((s) => s >= ts);
      return i < 0 ? null : i * 2;
    };
    for (const ts of [0, 100, 101, 150, 200, 201, 300, 301, 400, 450, 500, 501]) {
      expect(await log.offsetForTimestamp(ts), `timestamp ${ts}`).toBe(expectFor(ts));
    }
    await log.close();
    const reopened = await open({ segmentBytes: 300, indexIntervalBytes: 64 });
    for (const ts of [0, 201, 301, 450, 501]) expect(await reopened.offsetForTimestamp(ts)).toBe(expectFor(ts));
    await reopened.close();
  });

  it('retention by bytes deletes only whole closed segments, oldest first', async () => {
    const log = await open({ segmentBytes: 500, retentionBytes: 1200 });
    for (let i = 0; i < 20; i++) await log.append(makeBatch(`s${i}`, 2, { valueBytes: 40 }));
    const before = log.segmentCount;
    const starts: number[] = [];
    log.onRetention((start) => starts.push(start));
    const deleted = await log.enforceRetention();
    expect(deleted).toBeGreaterThan(0);
    // Readers that track positions hear of the deletion, with the new start offset, once.
    expect(starts).toEqual([log.startOffset]);
    expect(log.segmentCount).toBe(before - deleted);
    expect(log.sizeBytes).toBeGreaterThanOrEqual(1200);
    expect(log.startOffset % 2).toBe(0);
    await rejectsWith(log.read(log.startOffset - 1, 100), 'OFFSET_OUT_OF_RANGE');
    expect(decodeBatches(await log.read(log.startOffset, 100))[0]!.offset).toBe(log.startOffset);
    expect(await log.enforceRetention()).toBe(0);
    expect(starts).toHaveLength(1);
    await log.close();
  });

  it('retention racing rolls never disturbs the sealing of a fresh segment', async () => {
    const fatal: Error[] = [];
    const log = await open({ segmentBytes: 300, retentionBytes: 1, fsync: 'never', onFatal: (e) => fatal.push(e) });
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      work.push(log.append(makeBatch(`r${i}`, 1, { valueBytes: 120 })));
      work.push(log.enforceRetention());
    }
    await Promise.all(work);
    await log.enforceRetention();
    expect(fatal).toEqual([]);
    expect(log.segmentCount).toBe(1);
    await log.close();
    const files = (await fx.io.readdir(dir)).filter((f) => /\d{20}/.test(f));
    expect(files.length).toBe(3);
  });

  // The full suite once saw the broker stop (SHUTTING_DOWN) in the retention regression test:
  // a roll while retention awaited the previous seal queued a new seal, and retention deleted
  // that segment while its index writes and fdatasync were still running.
  it('retention waits for seals queued while it waited (slow fdatasync)', async () => {
    const fatal: Error[] = [];
    const slowSync = <T extends object>(target: T, wrap: (key: PropertyKey, value: unknown) => unknown): T =>
      new Proxy(target, {
        get(t, key) {
          const v: unknown = Reflect.get(t, key);
          return wrap(key, typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v);
        },
      });
    const io = slowSync(fx.io, (key, v) =>
      key !== 'open'
        ? v
        : async (file: string, mode: 'read' | 'write' | 'create') => {
            const fh = await fx.io.open(file, mode);
            return slowSync(fh, (k, f) => (k === 'datasync' ? async () => (await new Promise((r) => setTimeout(r, 2)), fh.datasync()) : f));
          },
    );
    const log = await open({ io, segmentBytes: 300, retentionBytes: 1, fsync: 'always', onFatal: (e) => fatal.push(e) });
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      work.push(log.append(makeBatch(`s${i}`, 1, { valueBytes: 120 })));
      work.push(log.enforceRetention());
      if (i % 3 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(work);
    expect(fatal).toEqual([]);
    await log.enforceRetention();
    expect(log.segmentCount).toBe(1);
    await log.close();
  });

  it('retention by age never deletes the active segment and survives reopen', async () => {
    let now = 10_000;
    const options = { segmentBytes: 300, retentionMs: 1000, now: () => now };
    let log = await open(options);
    for (let i = 0; i < 10; i++) await log.append(makeBatch(`g${i}`, 2, { timestamp: 1000 + i }));
    await log.close();
    log = await open(options);
    const segments = log.segmentCount;
    expect(segments).toBeGreaterThan(2);
    expect(await log.enforceRetention(1500)).toBe(0);
    now = 1_000_000;
    expect(await log.enforceRetention()).toBe(segments - 1);
    expect(log.segmentCount).toBe(1);
    expect(log.highWatermark).toBe(20);
    expect(await log.append(makeBatch('new'))).toEqual({ baseOffset: 20, lastOffset: 20 });
    await log.close();
    log = await open(options);
    expect([log.startOffset, log.endOffset]).toEqual([log.startOffset, 21]);
    expect(decodeBatches(await log.read(20, 100))[0]!.value!.toString()).toBe('new:0');
    await log.close();
  });
});

describe('PartitionLog group commit (CrashFS)', () => {
  it('writes appends of one tick with one writev and one fdatasync under always', async () => {
    const io = new CrashFS();
    const log = await PartitionLog.open({ dir: '/d', io, logger: captureLogger() });
    const before = { ...io.stats };
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => log.append(makeBatch(`g${i}`))));
    expect(results.map((r) => r.baseOffset)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(io.stats.writev - before.writev).toBe(1);
    expect(io.stats.datasync - before.datasync).toBe(1);
    await log.close();
  });

  it('splits a group that crosses segment boundaries: one durable writev per segment', async () => {
    const crash = new CrashFS();
    // Counts the syscalls on .log files (sealing writes index files in the background); under
    // fsync=always the segments are opened with O_DSYNC, so a writev is also their fdatasync.
    const logOps = { writev: 0, datasync: 0, durableWrites: 0 };
    const io: FileIO = {
      readdir: (d) => crash.readdir(d),
      mkdir: (d) => crash.mkdir(d),
      stat: (f) => crash.stat(f),
      rename: (a, b) => crash.rename(a, b),
      unlink: (f) => crash.unlink(f),
      removeTree: (d) => crash.removeTree(d),
      fsyncDir: (d) => crash.fsyncDir(d),
      async open(file: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
        const fh = await crash.open(file, mode, options);
        if (!file.endsWith('.log')) return fh;
        return {
          path: fh.path,
          durableWrites: fh.durableWrites,
          read: (b, o, l, p) => fh.read(b, o, l, p),
          writev: (bs, p) => (logOps.writev++, fh.durableWrites && logOps.durableWrites++, fh.writev(bs, p)),
          datasync: () => (logOps.datasync++, fh.datasync()),
          truncate: (l) => fh.truncate(l),
          size: () => fh.size(),
          close: () => fh.close(),
        };
      },
    };
    const log = await PartitionLog.open({ dir: '/d', io, segmentBytes: 500, logger: captureLogger() });
    await log.append(makeBatch('first', 1, { valueBytes: 100 }));
    const before = { ...logOps };
    // 118 or 175 bytes each, after 170: the active segment takes two, a new one three, a third the last.
    const batches = Array.from({ length: 6 }, (_, i) => makeBatch(`s${i}`, 1 + (i % 2), { valueBytes: 50 }));
    const results = await Promise.all(batches.map((b) => log.append(b)));
    let next = 1;
    for (const r of results) {
      expect(r.baseOffset).toBe(next);
      next = r.lastOffset + 1;
    }
    expect(log.highWatermark).toBe(next);
    const segments = log.segmentCount;
    expect(segments).toBe(3);
    // One durable writev per segment the group touched (the first one included) and no
    // fdatasync on the append path; sealing the rolled ones fdatasyncs them, in the background.
    expect(logOps.writev - before.writev).toBe(segments);
    expect(logOps.durableWrites - before.durableWrites).toBe(segments);
    expect(logOps.datasync - before.datasync).toBeLessThanOrEqual(segments - 1);
    const values: string[] = [];
    for (let off = 0; off < log.highWatermark; ) {
      const recs = decodeBatches(await log.read(off, 10_000));
      values.push(...recs.map((r) => r.value!.toString().replace(/\.+$/, '')));
      off = recs[recs.length - 1]!.offset + 1;
    }
    expect(values).toEqual(['first:0', 's0:0', 's1:0', 's1:1', 's2:0', 's3:0', 's3:1', 's4:0', 's5:0', 's5:1']);
    await log.close();
  });

  it('answers reads at the end of the log from memory, older ones from the file, with the same bytes', async () => {
    const io = new CrashFS();
    const options = { dir: '/d', io, segmentBytes: 2000, indexIntervalBytes: 200, logger: captureLogger() };
    const sizes: number[] = [];
    // A budget of about four batches: the rest are read from the file.
    let log = await PartitionLog.open({ ...options, recentBatchBytes: 4 * makeBatch('x', 2, { valueBytes: 40 }).length });
    for (let i = 0; i < 20; i++) {
      const batch = makeBatch(`r${i}`, 2, { valueBytes: 40 });
      sizes.push(batch.length);
      await log.append(batch);
    }
    const readsOf = async (offset: number, maxBytes: number): Promise<{ bytes: Buffer; fileReads: number }> => {
      const before = io.stats.read;
      const bytes = await log.read(offset, maxBytes);
      return { bytes, fileReads: io.stats.read - before };
    };
    const asked = [0, 1, 31, 32, 33, 38, 39].flatMap((offset) => [1, 3 * sizes[0]!, 1 << 20].map((maxBytes) => ({ offset, maxBytes })));
    const answers = [];
    for (const { offset, maxBytes } of asked) answers.push(await readsOf(offset, maxBytes));
    // The last four batches (offsets 32-39) come from memory; 31 and older need the file.
    expect(answers.map((a, i) => (a.fileReads === 0 ? asked[i]!.offset : -1)).filter((o) => o >= 0)).toEqual([32, 32, 32, 33, 33, 33, 38, 38, 38, 39, 39, 39]);
    expect(baseOffsets((await readsOf(32, 1 << 20)).bytes)).toEqual([32, 34, 36, 38]);
    expect(baseOffsets((await readsOf(34, 2 * sizes[0]!)).bytes)).toEqual([34, 36]);
    // Reopened, nothing is in memory: every read goes to the file and answers the same bytes.
    await log.close();
    log = await PartitionLog.open({ ...options, recentBatchBytes: 0 });
    for (const [i, { offset, maxBytes }] of asked.entries()) {
      const fromFile = await readsOf(offset, maxBytes);
      expect(fromFile.fileReads).toBeGreaterThan(0);
      expect(fromFile.bytes.equals(answers[i]!.bytes), `read(${offset}, ${maxBytes})`).toBe(true);
    }
    await log.close();
  });

  it('does not fsync on the append path under never', async () => {
    const io = new CrashFS();
    const log = await PartitionLog.open({ dir: '/d', io, fsync: 'never', logger: captureLogger() });
    const before = io.stats.datasync;
    for (let i = 0; i < 5; i++) await log.append(makeBatch(`n${i}`));
    expect(io.stats.datasync).toBe(before);
    await log.close();
  });
});
