/**
 * PowerCutIO: a failpoint over the real file system that, on `cut()`, leaves each file as a power
 * cut would (synced bytes kept, the unsynced tail gone) and fails every later call with EIO.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type FileHandle, type OpenOptions, writeFileAtomic } from '../../../../broker/log/file-io.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import type { PartitionLogOptions } from '../../../../broker/log/options.js';
import { PowerCutIO } from '../../../../broker/log/power-cut-io.js';
import { tempDir } from '../../../helpers/temp-dir.js';
import { captureLogger, makeBatch, logValues } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function dir(): string {
  const d = tempDir('sluice-powercut-');
  cleanups.push(d.remove);
  return d.path;
}

/** Bytes 0..n-1 of a recognisable pattern, offset by `from` so that slices of it compare. */
function bytes(n: number, from = 0): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (from + i) % 251));
}

/** Opens through `io` and registers the handle for closing (close works even after a cut). */
async function open(io: PowerCutIO, file: string, mode: 'read' | 'write' | 'create', options?: OpenOptions): Promise<FileHandle> {
  const fh = await io.open(file, mode, options);
  cleanups.push(() => fh.close().catch(() => undefined));
  return fh;
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  throw new Error('expected a rejection');
}

describe('PowerCutIO', () => {
  it('keeps what a datasync covered and truncates the unsynced tail; cut() returns the bytes lost', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(60), bytes(40, 60)], 0);
    await fh.datasync();
    await fh.writev([bytes(50, 100)], 100);
    // Before the cut the disk holds everything written.
    expect(fs.statSync(file).size).toBe(150);
    expect(io.isCut).toBe(false);

    expect(await io.cut()).toBe(50);
    expect(io.isCut).toBe(true);
    expect(fs.readFileSync(file)).toEqual(bytes(100));
  });

  it('keeps what durable (O_DSYNC) writes wrote without a datasync, and only a durable prefix', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'd.log');
    const durable = await open(io, file, 'create', { durableWrites: true });
    await durable.writev([bytes(30), bytes(30, 30)], 0);
    await durable.writev([bytes(40, 60)], 60);
    expect(await io.cut()).toBe(0);
    expect(fs.readFileSync(file)).toEqual(bytes(100));

    // Past a plain write not yet synced, a durable write makes nothing more durable.
    const io2 = new PowerCutIO();
    const plain = await open(io2, file, 'write');
    await plain.writev([bytes(20, 100)], 100);
    const late = await open(io2, file, 'write', { durableWrites: true });
    await late.writev([bytes(30, 120)], 120);
    expect(await io2.cut()).toBe(50);
    expect(fs.readFileSync(file)).toEqual(bytes(100));
  });

  it('a file never synced is left empty; a fully synced one is untouched and counts nothing lost', async () => {
    const io = new PowerCutIO();
    const d = dir();
    const synced = await open(io, path.join(d, 'synced'), 'create');
    const unsynced = await open(io, path.join(d, 'unsynced'), 'create');
    await synced.writev([bytes(30)], 0);
    await synced.datasync();
    await unsynced.writev([bytes(70)], 0);
    expect(await io.cut()).toBe(70);
    expect(fs.readFileSync(path.join(d, 'synced'))).toEqual(bytes(30));
    expect(fs.statSync(path.join(d, 'unsynced')).size).toBe(0);
  });

  it('a datasync covers only the writes completed before it was called', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(100)], 0);
    // The second write is issued with the sync, so the sync may not cover it.
    const sync = fh.datasync();
    const write = fh.writev([bytes(20, 100)], 100);
    await Promise.all([sync, write]);
    expect(fs.statSync(file).size).toBe(120);
    expect(await io.cut()).toBe(20);
    expect(fs.readFileSync(file)).toEqual(bytes(100));
  });

  it('a later datasync covers the rest; an overwrite inside the synced range changes nothing', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(100)], 0);
    const first = fh.datasync();
    await fh.writev([bytes(20, 100)], 100);
    await first;
    await fh.datasync();
    await fh.writev([Buffer.from('XYZ')], 10);
    // Written end is still 120, all of it synced: nothing to truncate (the overwrite's bytes
    // stay, as this model keeps in-place rewrites; only appended tails are modelled).
    expect(await io.cut()).toBe(0);
    expect(fs.statSync(file).size).toBe(120);
  });

  it('keepUnsynced keeps the asked part of each unsynced tail, clamped to [0, tail], floored', async () => {
    const io = new PowerCutIO();
    const d = dir();
    const asks: Record<string, number> = { keep10: 10, tooMany: 1_000, negative: -5, fraction: 7.9, synced: 99 };
    for (const name of Object.keys(asks)) {
      const fh = await open(io, path.join(d, name), 'create');
      await fh.writev([bytes(100)], 0);
      await fh.datasync();
      if (name !== 'synced') await fh.writev([bytes(50, 100)], 100);
    }
    const seen: Array<[string, number]> = [];
    const lost = await io.cut({
      keepUnsynced: (file, unsynced) => {
        seen.push([path.basename(file), unsynced]);
        return asks[path.basename(file)]!;
      },
    });
    // Asked only about files with an unsynced tail, with the tail's length.
    expect(seen.sort()).toEqual([
      ['fraction', 50],
      ['keep10', 50],
      ['negative', 50],
      ['tooMany', 50],
    ]);
    const size = (name: string): number => fs.statSync(path.join(d, name)).size;
    expect(size('keep10')).toBe(110);
    expect(size('tooMany')).toBe(150);
    expect(size('negative')).toBe(100);
    expect(size('fraction')).toBe(107);
    expect(size('synced')).toBe(100);
    expect(fs.readFileSync(path.join(d, 'keep10'))).toEqual(bytes(110));
    expect(lost).toBe(40 + 0 + 50 + 43);
  });

  it("a file opened in 'write' mode counts its existing size as synced", async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'old.log');
    fs.writeFileSync(file, bytes(80));
    const fh = await open(io, file, 'write');
    await fh.writev([bytes(20, 80)], 80);
    expect(await io.cut()).toBe(20);
    expect(fs.readFileSync(file)).toEqual(bytes(80));
  });

  it("reopening in 'write' a file already tracked keeps its unsynced tail unsynced", async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const created = await io.open(file, 'create');
    await created.writev([bytes(30)], 0);
    await created.datasync();
    await created.writev([bytes(30, 30)], 30);
    await created.close();
    const reopened = await open(io, file, 'write');
    expect(await reopened.size()).toBe(60);
    await reopened.writev([bytes(10, 60)], 60);
    expect(await io.cut()).toBe(40);
    expect(fs.readFileSync(file)).toEqual(bytes(30));
  });

  it("a file only ever opened 'read' is not tracked; a read handle of a written file shares its record", async () => {
    const io = new PowerCutIO();
    const d = dir();
    const untouched = path.join(d, 'untouched');
    fs.writeFileSync(untouched, bytes(33));
    const only = await open(io, untouched, 'read');
    expect(await only.read(Buffer.alloc(33), 0, 33, 0)).toBe(33);

    const file = path.join(d, 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(40)], 0);
    const reader = await open(io, file, 'read');
    // fdatasync works on the file, whatever the descriptor's mode, so it counts here too.
    await reader.datasync();
    await fh.writev([bytes(5, 40)], 40);
    expect(await io.cut()).toBe(5);
    expect(fs.readFileSync(file)).toEqual(bytes(40));
    expect(fs.readFileSync(untouched)).toEqual(bytes(33));
  });

  it('truncate lowers the synced length', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(100)], 0);
    await fh.datasync();
    await fh.truncate(40);
    await fh.writev([bytes(30, 40)], 40);
    expect(fs.statSync(file).size).toBe(70);
    expect(await io.cut()).toBe(30);
    expect(fs.readFileSync(file)).toEqual(bytes(40));
  });

  it('rename carries the tracking to the new name', async () => {
    const io = new PowerCutIO();
    const d = dir();
    const from = path.join(d, 'from');
    const to = path.join(d, 'to');
    const fh = await open(io, from, 'create');
    await fh.writev([bytes(25)], 0);
    await fh.datasync();
    await fh.writev([bytes(15, 25)], 25);
    await io.rename(from, to);
    expect(await io.cut()).toBe(15);
    expect(fs.existsSync(from)).toBe(false);
    expect(fs.readFileSync(to)).toEqual(bytes(25));
  });

  it('writeFileAtomic (temp file, datasync, rename, fsync dir) survives a cut, replacing the old content', async () => {
    const io = new PowerCutIO();
    const d = dir();
    const file = path.join(d, 'checkpoint');
    fs.writeFileSync(file, 'old\n');
    await writeFileAtomic(io, file, Buffer.from('new content\n'));
    expect(await io.cut()).toBe(0);
    expect(fs.readFileSync(file, 'utf8')).toBe('new content\n');
    expect(fs.readdirSync(d)).toEqual(['checkpoint']);
  });

  it('a file removed after being written is skipped by the cut', async () => {
    const io = new PowerCutIO();
    const d = dir();
    const a = await open(io, path.join(d, 'a'), 'create');
    await a.writev([bytes(10)], 0);
    await io.unlink(path.join(d, 'a'));
    const b = await open(io, path.join(d, 'sub-b'), 'create');
    await b.writev([bytes(10)], 0);
    // Removed behind the wrapper's back: ENOENT on truncation is ignored, but still counted.
    fs.rmSync(path.join(d, 'sub-b'));
    expect(await io.cut()).toBe(10);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('after the cut every call rejects with EIO, while close() still works', async () => {
    const io = new PowerCutIO();
    const d = dir();
    const file = path.join(d, 'a.log');
    const fh = await io.open(file, 'create');
    await fh.writev([bytes(10)], 0);
    await fh.datasync();
    await io.cut();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['open', () => io.open(file, 'read')],
      ['open create', () => io.open(path.join(d, 'new'), 'create')],
      ['readdir', () => io.readdir(d)],
      ['mkdir', () => io.mkdir(path.join(d, 'sub'))],
      ['stat', () => io.stat(file)],
      ['rename', () => io.rename(file, path.join(d, 'b.log'))],
      ['unlink', () => io.unlink(file)],
      ['removeTree', () => io.removeTree(d)],
      ['fsyncDir', () => io.fsyncDir(d)],
      ['read', () => fh.read(Buffer.alloc(10), 0, 10, 0)],
      ['writev', () => fh.writev([bytes(5)], 10)],
      ['datasync', () => fh.datasync()],
      ['truncate', () => fh.truncate(0)],
      ['size', () => fh.size()],
    ];
    for (const [name, call] of calls) expect([name, await code(call())]).toEqual([name, 'EIO']);
    await expect(fh.close()).resolves.toBeUndefined();
    // None of the refused calls reached the disk.
    expect(fs.readdirSync(d)).toEqual(['a.log']);
    expect(fs.readFileSync(file)).toEqual(bytes(10));
    // A second cut has nothing left to do.
    expect(await io.cut()).toBe(0);
  });

  it('cut() waits for running calls: a datasync already running when the power goes counts', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(64)], 0);
    const sync = fh.datasync();
    const lost = await io.cut();
    await expect(sync).resolves.toBeUndefined();
    expect(lost).toBe(0);
    expect(fs.readFileSync(file)).toEqual(bytes(64));
  });

  it('cut() waits for running calls: a write already running completes and is then thrown away', async () => {
    const io = new PowerCutIO();
    const file = path.join(dir(), 'a.log');
    const fh = await open(io, file, 'create');
    await fh.writev([bytes(64)], 0);
    await fh.datasync();
    const write = fh.writev([bytes(1000, 64)], 64);
    const lost = await io.cut();
    await expect(write).resolves.toBeUndefined();
    expect(lost).toBe(1000);
    expect(fs.readFileSync(file)).toEqual(bytes(64));
  });
});

describe('PowerCutIO under a PartitionLog', () => {
  const options = (d: string, extra: Partial<PartitionLogOptions>): PartitionLogOptions => ({
    dir: path.join(d, 'p0'),
    logger: captureLogger(),
    segmentBytes: 700,
    ...extra,
  });


  const value = (tag: string): string => `${tag}:0`.padEnd(40, '.');

  it("fsync='always': every acknowledged append survives a cut and reopen", async () => {
    const d = dir();
    const io = new PowerCutIO();
    const log = await PartitionLog.open(options(d, { io }));
    const acked: string[] = [];
    for (let round = 0; round < 12; round++) {
      const tags = Array.from({ length: 1 + (round % 3) }, (_, i) => `a${round}-${i}`);
      await Promise.all(tags.map((t) => log.append(makeBatch(t, 1, { valueBytes: 40 }))));
      acked.push(...tags.map(value));
    }
    expect(log.segmentCount).toBeGreaterThan(2);
    // Appends in flight when the power goes: each may or may not be acknowledged.
    const inFlight = Array.from({ length: 4 }, (_, i) => `f${i}`);
    const pending = inFlight.map((t) => log.append(makeBatch(t, 1, { valueBytes: 40 })).then(() => true, () => false));
    await io.cut();
    const outcomes = await Promise.all(pending);
    inFlight.forEach((t, i) => {
      if (outcomes[i]) acked.push(value(t));
    });
    await log.close().catch(() => undefined); // the abandoned instance only releases its files

    const recovered = await PartitionLog.open(options(d, {}));
    cleanups.push(() => recovered.close());
    const got = await logValues(recovered);
    // Every acknowledged append is there, in order; anything more is an unacknowledged in-flight one.
    expect(got.slice(0, acked.length)).toEqual(acked);
    expect(acked.length).toBeGreaterThanOrEqual(24);
    expect(got.length).toBeLessThanOrEqual(24 + inFlight.length);
    expect(inFlight.map(value)).toEqual(expect.arrayContaining(got.slice(acked.length)));
  });

  it("fsync='never': appends since the last sync are gone after reopen", async () => {
    const d = dir();
    // One segment throughout: a roll would seal (and so sync) the segment it leaves.
    const options = (dirPath: string, extra: Partial<PartitionLogOptions>): PartitionLogOptions => ({
      dir: path.join(dirPath, 'p0'),
      logger: captureLogger(),
      ...extra,
    });
    // A first run closes cleanly: close syncs everything.
    const first = await PartitionLog.open(options(d, { fsync: 'never' }));
    for (let i = 0; i < 5; i++) await first.append(makeBatch(`s${i}`, 1, { valueBytes: 40 }));
    await first.close();

    const io = new PowerCutIO();
    const log = await PartitionLog.open(options(d, { io, fsync: 'never' }));
    for (let i = 0; i < 6; i++) await log.append(makeBatch(`u${i}`, 1, { valueBytes: 40 }));
    expect(log.highWatermark).toBe(11); // acknowledged and visible, but not durable
    const lost = await io.cut();
    expect(lost).toBeGreaterThan(0);
    await log.close().catch(() => undefined);

    const recovered = await PartitionLog.open(options(d, { fsync: 'never' }));
    cleanups.push(() => recovered.close());
    expect(await logValues(recovered)).toEqual(Array.from({ length: 5 }, (_, i) => value(`s${i}`)));
    expect((await recovered.append(makeBatch('next'))).baseOffset).toBe(5);
  });
});
