/**
 * The FileIO contract, run against node:fs and CrashFS alike, then what only CrashFS does:
 * forget what was not synced.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { NodeFileIO, ensureDir, nodeFileIO, readFully, readWholeFile, writeFileAtomic } from '../../../../broker/log/file-io.js';
import { InlineWrites } from '../../../../broker/log/inline-writes.js';
import { type FsFixture, fileSystems } from './helpers.js';

async function errCode(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

describe.each(fileSystems)('FileIO contract on $name', ({ make }) => {
  let fx: FsFixture;
  let dir: string;
  beforeEach(async () => {
    fx = make();
    dir = path.join(fx.root, 'c');
    await ensureDir(fx.io, dir);
  });
  afterEach(() => fx.cleanup());

  it('creates, writes vectors at positions, reads back, reports size', async () => {
    const fh = await fx.io.open(path.join(dir, 'f'), 'create');
    await fh.writev([Buffer.from('hello '), Buffer.from('world')], 0);
    await fh.writev([Buffer.from('W')], 6);
    expect(await fh.size()).toBe(11);
    const buf = Buffer.alloc(20);
    expect(await fh.read(buf, 0, 20, 0)).toBe(11);
    expect(buf.subarray(0, 11).toString()).toBe('hello World');
    expect(await fh.read(buf, 0, 5, 11)).toBe(0);
    // Writing past the end leaves a zero-filled hole.
    await fh.writev([Buffer.from('!')], 13);
    expect(await readFully(fh, buf, 0, 14, 0)).toBe(14);
    expect([...buf.subarray(11, 14)]).toEqual([0, 0, 33]);
    await fh.datasync();
    await fh.close();
  });

  it('opens for durable writes (O_DSYNC) only to write, and says so on the handle', async () => {
    const file = path.join(dir, 'd');
    const fh = await fx.io.open(file, 'create', { durableWrites: true });
    expect(fh.durableWrites).toBe(true);
    await fh.writev([Buffer.from('dur'), Buffer.from('able')], 0);
    const buf = Buffer.alloc(7);
    expect(await fh.read(buf, 0, 7, 0)).toBe(7);
    expect(buf.toString()).toBe('durable');
    await fh.close();
    const again = await fx.io.open(file, 'write', { durableWrites: true });
    expect(again.durableWrites).toBe(true);
    await again.close();
    const plain = await fx.io.open(file, 'write');
    expect(plain.durableWrites).toBe(false);
    await plain.close();
    expect(await fx.io.open(file, 'read', { durableWrites: true }).catch((e: NodeJS.ErrnoException) => e.code)).toBe('EINVAL');
  });

  it('splits writes of more than IOV_MAX buffers', async () => {
    const fh = await fx.io.open(path.join(dir, 'many'), 'create');
    const parts = Array.from({ length: 2500 }, (_, i) => Buffer.from([i & 0xff]));
    await fh.writev(parts, 0);
    const back = Buffer.alloc(2500);
    await readFully(fh, back, 0, 2500, 0);
    expect(back.equals(Buffer.concat(parts))).toBe(true);
    await fh.close();
  });

  it('truncates both ways', async () => {
    const fh = await fx.io.open(path.join(dir, 't'), 'create');
    await fh.writev([Buffer.from('abcdef')], 0);
    await fh.truncate(2);
    expect(await fh.size()).toBe(2);
    await fh.truncate(4);
    const buf = Buffer.alloc(4);
    await readFully(fh, buf, 0, 4, 0);
    expect([...buf]).toEqual([97, 98, 0, 0]);
    await fh.close();
  });

  it("honours open modes: 'read' and 'write' need the file, 'create' truncates", async () => {
    const file = path.join(dir, 'm');
    expect(await errCode(fx.io.open(file, 'read'))).toBe('ENOENT');
    expect(await errCode(fx.io.open(file, 'write'))).toBe('ENOENT');
    let fh = await fx.io.open(file, 'create');
    await fh.writev([Buffer.from('data')], 0);
    await fh.close();
    fh = await fx.io.open(file, 'write');
    expect(await fh.size()).toBe(4);
    await fh.close();
    fh = await fx.io.open(file, 'read');
    expect(await errCode(fh.writev([Buffer.from('x')], 0))).toBeDefined();
    await fh.close();
    fh = await fx.io.open(file, 'create');
    expect(await fh.size()).toBe(0);
    await fh.close();
  });

  it('lists, stats, renames, unlinks and removes trees', async () => {
    await fx.io.mkdir(path.join(dir, 'sub'));
    await fx.io.mkdir(path.join(dir, 'sub')); // idempotent
    for (const name of ['a', 'b']) await (await fx.io.open(path.join(dir, name), 'create')).close();
    await (await fx.io.open(path.join(dir, 'sub', 'x'), 'create')).close();
    expect((await fx.io.readdir(dir)).sort()).toEqual(['a', 'b', 'sub']);
    expect((await fx.io.stat(path.join(dir, 'sub')))?.isDirectory).toBe(true);
    expect((await fx.io.stat(path.join(dir, 'a')))?.isDirectory).toBe(false);
    expect(await fx.io.stat(path.join(dir, 'nope'))).toBeUndefined();
    await fx.io.rename(path.join(dir, 'a'), path.join(dir, 'b'));
    expect((await fx.io.readdir(dir)).sort()).toEqual(['b', 'sub']);
    await fx.io.unlink(path.join(dir, 'b'));
    expect(await errCode(fx.io.unlink(path.join(dir, 'b')))).toBe('ENOENT');
    await fx.io.removeTree(path.join(dir, 'sub'));
    await fx.io.removeTree(path.join(dir, 'sub'));
    expect(await fx.io.readdir(dir)).toEqual([]);
    await fx.io.fsyncDir(dir);
  });

  it('replaces small files atomically', async () => {
    const file = path.join(dir, 'cp');
    await writeFileAtomic(fx.io, file, Buffer.from('one'));
    await writeFileAtomic(fx.io, file, Buffer.from('two'));
    expect((await readWholeFile(fx.io, file))?.toString()).toBe('two');
    expect(await fx.io.readdir(dir)).toEqual(['cp']);
    expect(await readWholeFile(fx.io, path.join(dir, 'missing'))).toBeUndefined();
  });
});

describe('node:fs writev', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-io-'));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** The open flags of this process's descriptors on `file` (Linux: /proc/self/fdinfo). */
  const flagsOf = (file: string): number[] =>
    fs
      .readdirSync('/proc/self/fd')
      .filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
        } catch {
          return false;
        }
      })
      .map((fd) => parseInt(/^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8));

  it.runIf(process.platform === 'linux')('durable writes really are O_DSYNC writes', async () => {
    const file = path.join(root, 'dsync');
    const durable = await nodeFileIO.open(file, 'create', { durableWrites: true });
    expect(flagsOf(file).map((f) => (f & fs.constants.O_DSYNC) !== 0)).toEqual([true]);
    await durable.close();
    const plain = await nodeFileIO.open(file, 'write');
    expect(flagsOf(file).map((f) => (f & fs.constants.O_DSYNC) !== 0)).toEqual([false]);
    await plain.close();
  });

  /** Every write on the loop, or every write in the thread pool. */
  const inlineIO = (): NodeFileIO => new NodeFileIO(new InlineWrites({ maxBytes: Infinity, maxShare: Infinity, nextTurn: (fn) => fn() }));
  const poolIO = (): NodeFileIO => new NodeFileIO(new InlineWrites({ maxBytes: 0 }));
  const eio = (): Error => Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });

  it('finishes a short writev with write() and reports errors, in the thread pool', async () => {
    const io = poolIO();
    const fh = await io.open(path.join(root, 'short'), 'create');
    const real = fs.writev;
    // The kernel takes only the first buffer and 2 bytes of the second (ENOSPC half way, say).
    const spy = vi.spyOn(fs, 'writev').mockImplementation(((fd: number, bufs: Buffer[], pos: number, done: (e: Error | null, n: number) => void) =>
      real(fd, [bufs[0]!, bufs[1]!.subarray(0, 2)], pos, done)) as unknown as typeof fs.writev);
    await fh.writev([Buffer.from('abc'), Buffer.from('defg'), Buffer.from('hi')], 5);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
    expect(fs.readFileSync(path.join(root, 'short')).subarray(5).toString()).toBe('abcdefghi');
    vi.spyOn(fs, 'writev').mockImplementation(((_fd: number, _b: Buffer[], _p: number, done: (e: Error | null, n: number) => void) => done(eio(), 0)) as unknown as typeof fs.writev);
    expect(await errCode(fh.writev([Buffer.from('x')], 0))).toBe('EIO');
    expect(io.inlineWrites.stats).toEqual({ inline: 0, pool: 2, backoffs: 0 });
    await fh.close();
  });

  it('finishes a short writev with write() and reports errors as rejections, on the loop', async () => {
    const io = inlineIO();
    const fh = await io.open(path.join(root, 'short'), 'create');
    const real = fs.writevSync;
    const spy = vi.spyOn(fs, 'writevSync').mockImplementation(((fd: number, bufs: Buffer[], pos: number) => real(fd, [bufs[0]!, bufs[1]!.subarray(0, 2)], pos)) as unknown as typeof fs.writevSync);
    await fh.writev([Buffer.from('abc'), Buffer.from('defg'), Buffer.from('hi')], 5);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
    expect(fs.readFileSync(path.join(root, 'short')).subarray(5).toString()).toBe('abcdefghi');
    vi.spyOn(fs, 'writevSync').mockImplementation(() => {
      throw eio();
    });
    // A promise that rejects, never a synchronous throw: callers cannot tell the paths apart.
    const failed = fh.writev([Buffer.from('x')], 0);
    expect(await errCode(failed)).toBe('EIO');
    expect(io.inlineWrites.stats).toEqual({ inline: 2, pool: 0, backoffs: 0 });
    await fh.close();
  });

  it('writes a small buffer on the loop and a large one in the thread pool by default', async () => {
    const io = new NodeFileIO();
    const fh = await io.open(path.join(root, 'sizes'), 'create', { durableWrites: true });
    const sync = vi.spyOn(fs, 'writevSync');
    const pooled = vi.spyOn(fs, 'writev');
    await fh.writev([Buffer.alloc(600, 1)], 0);
    expect([sync.mock.calls.length, pooled.mock.calls.length]).toEqual([1, 0]);
    await fh.writev([Buffer.alloc(256 * 1024, 2)], 600);
    expect([sync.mock.calls.length, pooled.mock.calls.length]).toEqual([1, 1]);
    const back = fs.readFileSync(path.join(root, 'sizes'));
    expect(back.length).toBe(600 + 256 * 1024);
    expect(back[599]).toBe(1);
    expect(back[600]).toBe(2);
    await fh.close();
  });
});

describe('CrashFS power cuts', () => {
  it('keeps synced bytes, drops the rest, and kills the old process', async () => {
    let io = new CrashFS();
    await ensureDir(io, '/d');
    const fh = await io.open('/d/f', 'create');
    await io.fsyncDir('/d');
    await fh.writev([Buffer.from('durable')], 0);
    await fh.datasync();
    await fh.writev([Buffer.from(' lost')], 7);
    const dead = io;
    io = io.crash();
    expect(io.readFileSync('/d/f').toString()).toBe('durable');
    expect(await errCode(fh.writev([Buffer.from('zombie')], 0))).toBe('EIO');
    expect(await errCode(dead.open('/d/g', 'create'))).toBe('EIO');
    expect(io.listSync('/d')).toEqual(['f']);
  });

  it('keeps the bytes of a durable write without a datasync; its sync can fail the write', async () => {
    let io = new CrashFS();
    await ensureDir(io, '/d');
    const fh = await io.open('/d/f', 'create', { durableWrites: true });
    await io.fsyncDir('/d');
    await fh.writev([Buffer.from('one ')], 0);
    await fh.writev([Buffer.from('two')], 4);
    io.failNext('datasync', (f) => f.endsWith('/f'));
    expect(await errCode(fh.writev([Buffer.from(' three')], 7))).toBe('EIO');
    io = io.crash();
    expect(io.readFileSync('/d/f').toString()).toBe('one two');
    // Past bytes not yet durable (a plain handle wrote them), a durable write makes nothing durable.
    const plain = await io.open('/d/f', 'write');
    await plain.writev([Buffer.from(' gap')], 7);
    const durable = await io.open('/d/f', 'write', { durableWrites: true });
    await durable.writev([Buffer.from(' after')], 11);
    io = io.crash();
    expect(io.readFileSync('/d/f').toString()).toBe('one two');
  });

  it('makes renames, creations and removals durable only with fsyncDir', async () => {
    let io = new CrashFS();
    await ensureDir(io, '/d');
    io.writeFileSync('/d/old', Buffer.from('x'));
    await io.rename('/d/old', '/d/new');
    await (await io.open('/d/created', 'create')).close();
    io = io.crash();
    expect(io.listSync('/d')).toEqual(['old']);
    await io.rename('/d/old', '/d/new');
    await io.fsyncDir('/d');
    io = io.crash();
    expect(io.listSync('/d')).toEqual(['new']);
  });

  it('can keep a torn part of unsynced data', async () => {
    let io = new CrashFS();
    await ensureDir(io, '/d');
    const fh = await io.open('/d/f', 'create');
    await io.fsyncDir('/d');
    await fh.writev([Buffer.from('abcdef')], 0);
    io = io.crash({ torn: (_f, synced, current) => current.subarray(0, synced.length + 3) });
    expect(io.readFileSync('/d/f').toString()).toBe('abc');
  });

  it('fails the next matching call on request, once', async () => {
    const io = new CrashFS();
    await ensureDir(io, '/d');
    const fh = await io.open('/d/f', 'create');
    io.failNext('datasync', (f) => f.endsWith('/f'));
    expect(await errCode(fh.datasync())).toBe('EIO');
    await fh.datasync();
    io.failNext('writev');
    expect(await errCode(fh.writev([Buffer.from('x')], 0))).toBe('EIO');
    io.failNext('fsyncDir');
    expect(await errCode(io.fsyncDir('/d'))).toBe('EIO');
  });

  it('clones are independent', async () => {
    const io = new CrashFS();
    io.writeFileSync('/f', Buffer.from('a'));
    const copy = io.clone();
    copy.writeFileSync('/f', Buffer.from('b'));
    expect(io.readFileSync('/f').toString()).toBe('a');
    expect(copy.crash().readFileSync('/f').toString()).toBe('b');
  });
});
