/**
 * What each fsync mode promises, checked by pulling the plug with CrashFS, and what a failed
 * write or fsync does (docs/storage.md, "What each fsync mode promises").
 */
import { describe, expect, it } from 'vitest';
import { hasCode } from '../../../../client/protocol/errors.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import type { PartitionLogOptions } from '../../../../broker/log/options.js';
import { captureLogger, makeBatch, logValues } from './helpers.js';

const DIR = '/data/p0';

function open(io: CrashFS, options: Partial<PartitionLogOptions> = {}): Promise<PartitionLog> {
  return PartitionLog.open({ dir: DIR, io, logger: captureLogger(), ...options });
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fsync=always', () => {
  it('every acknowledged append survives a power cut, across rolls', async () => {
    let io = new CrashFS();
    const log = await open(io, { segmentBytes: 600 });
    const acked: string[] = [];
    for (let round = 0; round < 20; round++) {
      // Several appends per tick: group commits, some spanning a roll.
      const batch = Array.from({ length: 1 + (round % 4) }, (_, i) => `r${round}-${i}`);
      await Promise.all(batch.map((v) => log.append(makeBatch(v, 1, { valueBytes: 40 }))));
      acked.push(...batch.map((v) => `${v}:0`.padEnd(40, '.')));
    }
    expect(log.segmentCount).toBeGreaterThan(3);
    io = io.crash();
    const recovered = await open(io, { segmentBytes: 600 });
    expect(await logValues(recovered)).toEqual(acked);
    expect((await recovered.append(makeBatch('next'))).baseOffset).toBe(acked.length);
    await recovered.close();
  });

  it('the high watermark moves only after the fsync that covers the appends', async () => {
    let io = new CrashFS();
    const log = await open(io);
    const datasyncsBefore = io.stats.datasync;
    let seenAt = -1;
    log.onVisible(() => {
      seenAt = io.stats.datasync - datasyncsBefore;
    });
    await log.append(makeBatch('x'));
    expect(seenAt).toBe(1);
    await log.close();
  });
});

describe('fsync=never', () => {
  it('acknowledged appends can be lost in a power cut (the shim is real)', async () => {
    let io = new CrashFS();
    const log = await open(io, { fsync: 'never' });
    for (let i = 0; i < 5; i++) await log.append(makeBatch(`n${i}`));
    expect(log.highWatermark).toBe(5);
    io = io.crash();
    const recovered = await open(io, { fsync: 'never' });
    expect(recovered.endOffset).toBe(0);
    await recovered.close();
  });

  it('but a clean close makes everything durable', async () => {
    let io = new CrashFS();
    const log = await open(io, { fsync: 'never' });
    for (let i = 0; i < 5; i++) await log.append(makeBatch(`n${i}`));
    await log.close();
    io = io.crash();
    const recovered = await open(io, { fsync: 'never' });
    expect(recovered.endOffset).toBe(5);
    await recovered.close();
  });

  it('a kill -9 without a power cut loses nothing that was written', async () => {
    let io = new CrashFS();
    const log = await open(io, { fsync: 'never' });
    for (let i = 0; i < 5; i++) await log.append(makeBatch(`k${i}`));
    // A process kill keeps the page cache: model it as a crash that keeps every unsynced byte.
    io = io.crash({ torn: (_f, _synced, current) => current });
    const recovered = await open(io, { fsync: 'never' });
    expect(recovered.endOffset).toBe(5);
    await recovered.close();
  });
});

describe('fsync=interval', () => {
  it('loses at most what came after the last interval sync', async () => {
    let io = new CrashFS();
    const log = await open(io, { fsync: 'interval', fsyncIntervalMs: 10 });
    for (let i = 0; i < 3; i++) await log.append(makeBatch(`early${i}`));
    const syncs = io.stats.datasync;
    // Acknowledged after the write, visible at once, before any sync.
    expect(log.highWatermark).toBe(3);
    for (let waited = 0; io.stats.datasync === syncs && waited < 2000; waited += 5) await sleep(5);
    expect(io.stats.datasync).toBeGreaterThan(syncs);
    for (let i = 0; i < 3; i++) await log.append(makeBatch(`late${i}`));
    io = io.crash();
    const recovered = await open(io, { fsync: 'interval', fsyncIntervalMs: 10 });
    const values = await logValues(recovered);
    expect(values.slice(0, 3)).toEqual(['early0:0', 'early1:0', 'early2:0']);
    expect(values.length).toBeLessThanOrEqual(6);
    await recovered.close();
  });

  it('syncs in the background without the append path waiting', async () => {
    let io = new CrashFS();
    const log = await open(io, { fsync: 'interval', fsyncIntervalMs: 60_000 });
    const syncs = io.stats.datasync;
    for (let i = 0; i < 5; i++) await log.append(makeBatch(`i${i}`));
    expect(io.stats.datasync).toBe(syncs);
    io = io.crash();
    const recovered = await open(io, { fsync: 'interval' });
    expect(recovered.endOffset).toBe(0);
    await recovered.close();
  });
});

describe('storage failures', () => {
  for (const op of ['datasync', 'writev'] as const) {
    it(`a failed ${op} rejects every pending append with STORAGE_ERROR, calls onFatal once, and stops the log`, async () => {
      let io = new CrashFS();
      const fatal: Error[] = [];
      const log = await open(io, { onFatal: (e) => fatal.push(e) });
      await log.append(makeBatch('before'));
      io.failNext(op, (f) => f.endsWith('.log'));
      const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => log.append(makeBatch(`doomed${i}`))));
      for (const r of results) {
        expect(r.status).toBe('rejected');
        expect(hasCode((r as PromiseRejectedResult).reason, 'STORAGE_ERROR')).toBe(true);
      }
      expect(fatal).toHaveLength(1);
      expect(hasCode(fatal[0], 'STORAGE_ERROR')).toBe(true);
      // Under always the segment is written with O_DSYNC: a failed sync is a failed write.
      expect(fatal[0]!.message).toMatch(/write \(O_DSYNC\) failed/);
      const late = await log.append(makeBatch('late')).catch((e: unknown) => e);
      expect(hasCode(late, 'STORAGE_ERROR')).toBe(true);
      expect(log.highWatermark).toBe(1);
      expect(fatal).toHaveLength(1);
      await log.close();
      // Nothing unacknowledged comes back as acknowledged data: the restart sees a prefix.
      io = io.crash();
      const recovered = await open(io);
      expect((await logValues(recovered))[0]).toBe('before:0');
      await recovered.close();
    });
  }

  it('a failed interval fsync stops the log', async () => {
    let io = new CrashFS();
    const fatal: Error[] = [];
    const log = await open(io, { fsync: 'interval', fsyncIntervalMs: 5, onFatal: (e) => fatal.push(e) });
    io.failNext('datasync');
    await log.append(makeBatch('a'));
    for (let waited = 0; fatal.length === 0 && waited < 2000; waited += 5) await sleep(5);
    expect(fatal).toHaveLength(1);
    expect(hasCode(await log.append(makeBatch('b')).catch((e: unknown) => e), 'STORAGE_ERROR')).toBe(true);
    await log.close();
  });

  it('a failed directory fsync while rolling stops the log', async () => {
    let io = new CrashFS();
    const fatal: Error[] = [];
    const log = await open(io, { segmentBytes: 200, onFatal: (e) => fatal.push(e) });
    await log.append(makeBatch('a', 1, { valueBytes: 150 }));
    io.failNext('fsyncDir');
    const err = await log.append(makeBatch('b', 1, { valueBytes: 150 })).catch((e: unknown) => e);
    expect(hasCode(err, 'STORAGE_ERROR')).toBe(true);
    expect(fatal).toHaveLength(1);
    await log.close();
  });
});

describe('directory entries', () => {
  it('a new segment is durable before data is acknowledged into it', async () => {
    let io = new CrashFS();
    const log = await open(io, { segmentBytes: 200 });
    for (let i = 0; i < 6; i++) await log.append(makeBatch(`d${i}`, 1, { valueBytes: 120 }));
    expect(log.segmentCount).toBe(6);
    io = io.crash();
    const recovered = await open(io, { segmentBytes: 200 });
    expect(recovered.endOffset).toBe(6);
    expect(recovered.segmentCount).toBe(6);
    await recovered.close();
  });

  it('the shim loses files whose directory entry was never synced', async () => {
    let io = new CrashFS();
    await io.mkdir('/x');
    await io.fsyncDir('/');
    const fh = await io.open('/x/f', 'create');
    await fh.writev([Buffer.from('hello')], 0);
    await fh.datasync();
    io = io.crash();
    expect(await io.stat('/x/f')).toBeUndefined();
  });
});
