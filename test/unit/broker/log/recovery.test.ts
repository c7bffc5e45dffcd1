/**
 * Recovery after an unclean stop: torn tails, garbage after the last batch, crashes with appends
 * in flight, and the clean-shutdown fast path. Runs in memory (CrashFS) so thousands of cases
 * stay fast.
 */
import fc from 'fast-check';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeBatches, readBatchHeader } from '../../../../client/protocol/record-batch.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import type { FileIO } from '../../../../broker/log/file-io.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import { captureLogger, makeBatch } from './helpers.js';

const DIR = '/data/t/0';
const OPTIONS = { dir: DIR, segmentBytes: 4000, indexIntervalBytes: 256 };

interface Image {
  fs: CrashFS;
  activeFile: string;
  /** End positions and end offsets of the active segment's batches. */
  batchEnds: { position: number; endOffset: number }[];
  activeBase: number;
}

let image: Image;

beforeAll(async () => {
  let io = new CrashFS();
  const log = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
  for (let i = 0; i < 70; i++) await log.append(makeBatch(`v${i}`, 1 + (i % 4), { valueBytes: 10 + ((i * 37) % 90) }));
  // Leave without closing: an unclean stop with everything acknowledged (and so synced).
  io = io.crash();
  const logs = io.listSync(DIR).filter((f) => f.endsWith('.log'));
  expect(logs.length).toBeGreaterThan(2);
  const activeFile = path.posix.join(DIR, logs[logs.length - 1]!);
  const buf = io.readFileSync(activeFile);
  const batchEnds: Image['batchEnds'] = [];
  let activeBase = -1;
  for (let pos = 0; pos < buf.length; ) {
    const h = readBatchHeader(buf, pos);
    if (activeBase < 0) activeBase = h.baseOffset;
    pos += h.batchLength + 12;
    batchEnds.push({ position: pos, endOffset: h.baseOffset + h.lastOffsetDelta + 1 });
  }
  expect(batchEnds.length).toBeGreaterThan(10);
  image = { fs: io, activeFile, batchEnds, activeBase };
});

/**
 * The end offset of the longest run of original batches at the start of `bytes`. (Garbage can
 * complete a torn batch with the very bytes it lacked, e.g. a trailing 0: then it is valid.)
 */
function validPrefix(bytes: Buffer): { endOffset: number; bytes: number } {
  const original = image.fs.readFileSync(image.activeFile);
  let endOffset = image.activeBase;
  let length = 0;
  for (const b of image.batchEnds) {
    if (b.position > bytes.length || !bytes.subarray(0, b.position).equals(original.subarray(0, b.position))) break;
    endOffset = b.endOffset;
    length = b.position;
  }
  return { endOffset, bytes: length };
}

async function recoverAndCheck(io: CrashFS, expected: { endOffset: number; bytes: number }): Promise<void> {
  const expectedEnd = expected.endOffset;
  const logger = captureLogger();
  const log = await PartitionLog.open({ ...OPTIONS, io, logger });
  // The bad tail is cut off the file, not just ignored: left there, a later append shorter than
  // the torn batch could make an old batch line up again after the next crash.
  expect(io.readFileSync(image.activeFile).length).toBe(expected.bytes);
  expect(log.endOffset).toBe(expectedEnd);
  expect(log.highWatermark).toBe(expectedEnd);
  // The last surviving batch reads back intact, and the next append continues the sequence.
  if (expectedEnd > 0) {
    const recs = decodeBatches(await log.read(expectedEnd - 1, 1));
    expect(recs[recs.length - 1]!.offset).toBe(expectedEnd - 1);
  }
  expect((await log.append(makeBatch('next'))).baseOffset).toBe(expectedEnd);
  await log.close();
}

describe('torn tails', () => {
  it('1,000 random torn tails recover to exactly the valid prefix', async () => {
    const size = image.batchEnds[image.batchEnds.length - 1]!.position;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: size }), async (length) => {
        const io = image.fs.clone();
        const torn = io.readFileSync(image.activeFile).subarray(0, length);
        io.writeFileSync(image.activeFile, torn);
        await recoverAndCheck(io, validPrefix(torn));
      }),
      { numRuns: 1000, seed: 0x5eed },
    );
  });

  it('500 random garbage tails recover to exactly the valid prefix', async () => {
    const size = image.batchEnds[image.batchEnds.length - 1]!.position;
    const original = image.fs.readFileSync(image.activeFile);
    const lastBatchStart = image.batchEnds[image.batchEnds.length - 2]!.position;
    const lastBatch = original.subarray(lastBatchStart);
    // Kinds of garbage a disk or a dying process leaves behind.
    const garbage = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 400 }).map((a) => Buffer.from(a)),
      fc.integer({ min: 1, max: 5000 }).map((n) => Buffer.alloc(n)),
      // A copy of a real batch with one flipped byte: right shape, wrong CRC.
      fc.integer({ min: 21, max: lastBatch.length - 1 }).map((at) => {
        const b = Buffer.from(lastBatch);
        b[at]! ^= 0x01;
        return b;
      }),
      // A whole valid batch again: good CRC, wrong (repeated) base offset.
      fc.constant(Buffer.from(lastBatch)),
      // A header claiming far more bytes than the file has.
      fc.integer({ min: 100_000, max: 0x7fff_ffff }).map((len) => {
        const b = Buffer.from(lastBatch.subarray(0, 61));
        b.writeInt32BE(len, 8);
        return b;
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: size }), garbage, fc.boolean(), async (cut, junk, cutFirst) => {
        const io = image.fs.clone();
        const keep = cutFirst ? cut : size;
        const damaged = Buffer.concat([original.subarray(0, keep), junk]);
        io.writeFileSync(image.activeFile, damaged);
        await recoverAndCheck(io, validPrefix(damaged));
      }),
      { numRuns: 500, seed: 0xbad },
    );
  });
});

describe('crashes with appends in flight', () => {
  it('recover a prefix that holds every acknowledged append (300 random crashes)', async () => {
    // How often a crash kept some but not all in-flight appends, and lost acknowledged ones
    // (never/interval): the scenarios must really reach those states.
    let partial = 0;
    let lostAcked = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 6 }),
        fc.constantFrom('always', 'interval', 'never' as const),
        fc.integer(),
        async (inFlight, ticksBeforeCrash, fsync, seed) => {
          let io = new CrashFS();
          const options = { dir: DIR, io, fsync, segmentBytes: 700, logger: captureLogger() };
          const log = await PartitionLog.open(options);
          for (let i = 0; i < 8; i++) await log.append(makeBatch(`base${i}`, 2, { valueBytes: 30 }));
          const acked = new Set<number>();
          const appended: string[] = [];
          for (let i = 0; i < inFlight; i++) {
            appended.push(`f${i}`);
            void log.append(makeBatch(`f${i}`, 2, { valueBytes: 30 })).then(
              (r) => acked.add(r.baseOffset),
              () => {},
            );
            if (i % 3 === 2) await new Promise((r) => setImmediate(r));
          }
          for (let t = 0; t < ticksBeforeCrash; t++) await new Promise((r) => setImmediate(r));
          const ackedAtCrash = new Set(acked);
          // Tear unsynced tails at random points, as a power cut mid-writeback would.
          let rng = seed;
          io = io.crash({
            torn: (_file, synced, current) => {
              rng = (rng * 1103515245 + 12345) & 0x7fffffff;
              const extra = current.length > synced.length ? rng % (current.length - synced.length + 1) : 0;
              return Buffer.concat([synced, current.subarray(synced.length, synced.length + extra)]);
            },
          });
          const recovered = await PartitionLog.open({ ...options, io });
          const values: string[] = [];
          for (let off = recovered.startOffset; off < recovered.highWatermark; ) {
            const recs = decodeBatches(await recovered.read(off, 1 << 20));
            values.push(...recs.filter((r) => r.offset % 2 === 0).map((r) => r.value!.toString().split(':')[0]!));
            off = recs[recs.length - 1]!.offset + 1;
          }
          // A prefix of what was appended, in order...
          const expectedAll = [...Array.from({ length: 8 }, (_, i) => `base${i}`), ...appended];
          expect(values).toEqual(expectedAll.slice(0, values.length));
          // ...holding every acknowledged append under always.
          if (fsync === 'always') {
            for (const off of ackedAtCrash) expect(off).toBeLessThan(recovered.endOffset);
            expect(values.length).toBeGreaterThanOrEqual(8);
          }
          if (values.length > 8 && values.length < 8 + inFlight) partial++;
          if ([...ackedAtCrash].some((off) => off >= recovered.endOffset)) lostAcked++;
          await recovered.close();
        },
      ),
      { numRuns: 300, seed: 42 },
    );
    expect(partial).toBeGreaterThan(10);
    expect(lostAcked).toBeGreaterThan(10);
  });
});

describe('clean shutdown', () => {
  it('reopens without a full scan, and falls back to one if the tail does not match', async () => {
    let io = new CrashFS();
    const log = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
    for (let i = 0; i < 30; i++) await log.append(makeBatch(`c${i}`, 2, { valueBytes: 40 }));
    await log.close();
    expect(io.listSync(DIR)).toContain('.clean-shutdown');
    const files = io.listSync(DIR).filter((f) => f.endsWith('.log'));
    const active = path.posix.join(DIR, files[files.length - 1]!);
    // Garbage after the last batch with the marker still there: the tail walk must notice.
    io.writeFileSync(active, Buffer.concat([io.readFileSync(active), Buffer.from('garbage garbage garbage garbage garbage garbage garbage garbage')]));
    const logger = captureLogger();
    const reopened = await PartitionLog.open({ ...OPTIONS, io, logger });
    expect(io.listSync(DIR)).not.toContain('.clean-shutdown');
    expect(reopened.endOffset).toBe(60);
    expect(logger.warnings.some((w) => /clean shutdown marker/.test(w.message ?? ''))).toBe(true);
    expect((await reopened.append(makeBatch('x'))).baseOffset).toBe(60);
    await reopened.close();
  });

  it('removes the marker durably at open, so a crash after it means a full recovery', async () => {
    let io = new CrashFS();
    const log = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
    await log.append(makeBatch('a'));
    await log.close();
    const again = await PartitionLog.open({ ...OPTIONS, io, fsync: 'never', logger: captureLogger() });
    await again.append(makeBatch('b', 1, { valueBytes: 100 }));
    io = io.crash({ torn: (_f, synced, current) => Buffer.concat([synced, current.subarray(synced.length, synced.length + 30)]) });
    expect(io.listSync(DIR)).not.toContain('.clean-shutdown');
    const recovered = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
    expect(recovered.endOffset).toBe(1);
    await recovered.close();
  });

  it('a restart opens no sealed segment, clean or not', async () => {
    let io = new CrashFS();
    const log = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
    for (let i = 0; i < 60; i++) await log.append(makeBatch(`s${i}`, 2, { valueBytes: 60 }));
    expect(log.segmentCount).toBeGreaterThan(2);
    await log.close();
    for (const crash of [false, true]) {
      if (crash) {
        // Opened (marker gone) and never closed: the next open is a recovery.
        await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
        io = io.crash();
      }
      const opened: string[] = [];
      const current = io;
      const spy: FileIO = {
        open: (f, m, o) => {
          opened.push(f);
          return current.open(f, m, o);
        },
        readdir: (d) => current.readdir(d),
        mkdir: (d) => current.mkdir(d),
        stat: (f) => current.stat(f),
        rename: (a, b) => current.rename(a, b),
        unlink: (f) => current.unlink(f),
        removeTree: (d) => current.removeTree(d),
        fsyncDir: (d) => current.fsyncDir(d),
      };
      const reopened = await PartitionLog.open({ ...OPTIONS, io: spy, logger: captureLogger() });
      const logsOpened = new Set(opened.filter((f) => f.endsWith('.log')));
      expect(logsOpened.size, `crash=${crash}: ${[...logsOpened].join(', ')}`).toBe(1);
      expect(reopened.endOffset).toBe(120);
      await reopened.close();
    }
  });

  it('sweeps leftovers: temp files and index files without a log', async () => {
    let io = new CrashFS();
    const log = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
    await log.append(makeBatch('a'));
    await log.close();
    io.writeFileSync(`${DIR}/recovery-point.tmp`, Buffer.from('12'));
    io.writeFileSync(`${DIR}/00000000000000000099.index`, Buffer.alloc(8));
    const reopened = await PartitionLog.open({ ...OPTIONS, io, logger: captureLogger() });
    expect(io.listSync(DIR).filter((f) => f.includes('99') || f.endsWith('.tmp'))).toEqual([]);
    expect(reopened.endOffset).toBe(1);
    await reopened.close();
  });
});
