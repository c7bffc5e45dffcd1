/**
 * An in-memory FileIO that remembers what was made durable, so tests can pull the plug.
 *
 * The model of durability (what a journaling file system on Linux promises, no more):
 * - A file's bytes survive a crash only as of its last `datasync()`, or, for a handle opened with
 *   `durableWrites`, as of its last completed writev (which then also counts, and can fail, as a
 *   datasync). The model keeps a durable prefix: a durable write past bytes not yet synced makes
 *   nothing durable, which asks no more of the disk than O_DSYNC promises.
 * - A directory entry (a file created, renamed or removed, a directory made) survives only once
 *   `fsyncDir()` ran on the directory that holds it. The root always exists.
 * - `crash()` reverts every directory to its last synced entries and every file to its last
 *   synced bytes, like a power cut that also takes the process down: the CrashFS it was called
 *   on and every handle opened through it die (later calls throw EIO), so a log instance of the
 *   "old process" can never write into the recovered state; `crash()` returns the CrashFS the
 *   restarted process uses. An optional `torn` hook keeps part of the unsynced tail of a file,
 *   which is what a power cut in the middle of writeback leaves behind.
 * - `failNext('datasync' | 'writev' | 'fsyncDir', match?)` makes the next matching call fail with EIO.
 *
 * Used by the storage engine's tests; lives next to the code so the benchmark and other suites
 * can use it too. It is not meant to be fast beyond what tests need.
 */
import path from 'node:path';
import { type FileHandle, type FileIO, type FileStat, type OpenMode, type OpenOptions, durableWritesFor } from './file-io.js';

class Inode {
  data: Buffer = Buffer.alloc(0);
  length = 0;
  synced: Buffer = Buffer.alloc(0);

  content(): Buffer {
    return this.data.subarray(0, this.length);
  }

  /** Grows capacity geometrically so append-heavy tests stay linear. */
  reserve(length: number): void {
    if (length <= this.data.length) return;
    const next = Buffer.alloc(Math.max(length, this.data.length * 2, 256));
    this.data.copy(next, 0, 0, this.length);
    this.data = next;
  }
}

class Dir {
  entries = new Map<string, Inode | Dir>();
  durable = new Map<string, Inode | Dir>();
}

export type FailOp = 'datasync' | 'writev' | 'fsyncDir';

export interface CrashOptions {
  /**
   * Called for each file whose content differs from its synced bytes; returns the content to
   * keep after the crash (default: the synced bytes). Lets tests produce torn tails.
   */
  torn?: (file: string, synced: Buffer, current: Buffer) => Buffer;
}

function ioError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** The state that outlives a crash: the "disk" a CrashFS and its successors share. */
class Disk {
  root = new Dir();
  generation = 0;
  failures: { op: FailOp; match: (file: string) => boolean; error: Error }[] = [];
  readonly stats = { datasync: 0, writev: 0, fsyncDir: 0, read: 0 };
}

export class CrashFS implements FileIO {
  readonly #disk: Disk;
  readonly #generation: number;

  constructor(disk?: Disk) {
    this.#disk = disk ?? new Disk();
    this.#generation = this.#disk.generation;
  }

  /** Counts of calls per operation, for tests that check batching (e.g. one datasync per commit). */
  get stats(): Disk['stats'] {
    return this.#disk.stats;
  }

  // ---- test controls -------------------------------------------------------------------------

  /**
   * Power cut: everything not synced is lost. This CrashFS and every handle opened through it
   * die (every later call throws EIO), like the process that used them; the returned CrashFS
   * is the file system as the restarted process sees it.
   */
  crash(options: CrashOptions = {}): CrashFS {
    const disk = this.#disk;
    disk.generation++;
    disk.failures = [];
    const revert = (dir: Dir, dirPath: string): void => {
      dir.entries = new Map(dir.durable);
      for (const [name, node] of dir.entries) {
        const full = path.posix.join(dirPath, name);
        if (node instanceof Dir) {
          revert(node, full);
          continue;
        }
        const current = Buffer.from(node.content());
        let keep = node.synced;
        if (options.torn && !current.equals(node.synced)) keep = options.torn(full, node.synced, current);
        node.data = Buffer.from(keep);
        node.length = keep.length;
        node.synced = Buffer.from(keep);
      }
    };
    revert(disk.root, '/');
    return new CrashFS(disk);
  }

  /** The next call of `op` on a path for which `match` holds (default: any) fails with EIO. */
  failNext(op: FailOp, match: (file: string) => boolean = () => true, error?: Error): void {
    this.#disk.failures.push({ op, match, error: error ?? ioError('EIO', `injected ${op} failure`) });
  }

  /** A deep copy (durable state included), to branch many scenarios from one prepared image. */
  clone(): CrashFS {
    const disk = new Disk();
    const inodes = new Map<Inode, Inode>();
    const dirs = new Map<Dir, Dir>();
    const cloneNode = (node: Inode | Dir): Inode | Dir => {
      if (node instanceof Dir) {
        let d = dirs.get(node);
        if (!d) {
          d = new Dir();
          dirs.set(node, d);
          for (const [k, v] of node.entries) d.entries.set(k, cloneNode(v));
          for (const [k, v] of node.durable) d.durable.set(k, cloneNode(v));
        }
        return d;
      }
      let i = inodes.get(node);
      if (!i) {
        i = new Inode();
        i.data = Buffer.from(node.content());
        i.length = node.length;
        i.synced = node.synced;
        inodes.set(node, i);
      }
      return i;
    };
    disk.root = cloneNode(this.#disk.root) as Dir;
    return new CrashFS(disk);
  }

  /** Current content of a file (not necessarily durable). */
  readFileSync(file: string): Buffer {
    return Buffer.from(this.#inode(file).content());
  }

  /** Replaces a file's content and marks it durable, as if written and synced long ago. */
  writeFileSync(file: string, data: Buffer): void {
    const { dir, name } = this.#parent(file);
    let node = dir.entries.get(name);
    if (node instanceof Dir) throw ioError('EISDIR', file);
    if (!node) {
      node = new Inode();
      dir.entries.set(name, node);
    }
    dir.durable.set(name, node);
    node.data = Buffer.from(data);
    node.length = data.length;
    node.synced = Buffer.from(data);
  }

  /** Removes a file durably. */
  removeFileSync(file: string): void {
    const { dir, name } = this.#parent(file);
    dir.entries.delete(name);
    dir.durable.delete(name);
  }

  listSync(dir: string): string[] {
    const d = this.#lookup(dir);
    if (!(d instanceof Dir)) throw ioError('ENOTDIR', dir);
    return [...d.entries.keys()].sort();
  }

  // ---- FileIO ------------------------------------------------------------------------------------

  async open(file: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    const durableWrites = durableWritesFor(file, mode, options);
    await this.#tick(file);
    const { dir, name } = this.#parent(file);
    let node = dir.entries.get(name);
    if (node instanceof Dir) throw ioError('EISDIR', file);
    if (!node) {
      if (mode !== 'create') throw ioError('ENOENT', file);
      node = new Inode();
      dir.entries.set(name, node);
    } else if (mode === 'create') {
      node.length = 0;
    }
    return new MemoryHandle(this, path.posix.resolve(file), node, mode === 'read', durableWrites);
  }

  async readdir(dir: string): Promise<string[]> {
    await this.#tick(dir);
    const d = this.#lookup(dir);
    if (!d) throw ioError('ENOENT', dir);
    if (!(d instanceof Dir)) throw ioError('ENOTDIR', dir);
    return [...d.entries.keys()];
  }

  async mkdir(dir: string): Promise<void> {
    await this.#tick(dir);
    const { dir: parent, name } = this.#parent(dir);
    const node = parent.entries.get(name);
    if (node instanceof Dir) return;
    if (node) throw ioError('EEXIST', dir);
    parent.entries.set(name, new Dir());
  }

  async stat(file: string): Promise<FileStat | undefined> {
    await this.#tick(file);
    const node = this.#lookup(file);
    if (!node) return undefined;
    return node instanceof Dir ? { size: 0, isDirectory: true } : { size: node.length, isDirectory: false };
  }

  async rename(from: string, to: string): Promise<void> {
    await this.#tick(from);
    const src = this.#parent(from);
    const node = src.dir.entries.get(src.name);
    if (!node) throw ioError('ENOENT', from);
    const dst = this.#parent(to);
    src.dir.entries.delete(src.name);
    dst.dir.entries.set(dst.name, node);
  }

  async unlink(file: string): Promise<void> {
    await this.#tick(file);
    const { dir, name } = this.#parent(file);
    const node = dir.entries.get(name);
    if (!node) throw ioError('ENOENT', file);
    if (node instanceof Dir) throw ioError('EISDIR', file);
    dir.entries.delete(name);
  }

  async removeTree(dir: string): Promise<void> {
    await this.#tick(dir);
    const { dir: parent, name } = this.#parent(dir);
    parent.entries.delete(name);
  }

  async fsyncDir(dir: string): Promise<void> {
    await this.#tick(dir);
    this.stats.fsyncDir++;
    this.#maybeFail('fsyncDir', dir);
    const d = this.#lookup(dir);
    if (!(d instanceof Dir)) throw ioError('ENOENT', dir);
    d.durable = new Map(d.entries);
  }

  // ---- internals shared with MemoryHandle ----------------------------------------------------

  /** Throws EIO once this view crashed: the process that used it (and its handles) is gone. */
  checkAlive(file: string): void {
    if (this.#generation !== this.#disk.generation) throw ioError('EIO', `${file}: the process using this file system crashed`);
  }

  maybeFail(op: FailOp, file: string): void {
    this.#maybeFail(op, file);
  }

  // A resolved-promise hop, so callers cannot rely on these calls completing synchronously;
  // then the liveness check, so a crashed process can touch nothing.
  async #tick(file = ''): Promise<void> {
    await Promise.resolve();
    this.checkAlive(file);
  }

  #maybeFail(op: FailOp, file: string): void {
    const i = this.#disk.failures.findIndex((f) => f.op === op && f.match(file));
    if (i < 0) return;
    const [failure] = this.#disk.failures.splice(i, 1);
    if (failure) throw failure.error;
  }

  #lookup(file: string): Inode | Dir | undefined {
    const parts = path.posix.resolve(file).split('/').filter((p) => p.length > 0);
    let node: Inode | Dir = this.#disk.root;
    for (const part of parts) {
      if (!(node instanceof Dir)) return undefined;
      const next: Inode | Dir | undefined = node.entries.get(part);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  #inode(file: string): Inode {
    const node = this.#lookup(file);
    if (!node) throw ioError('ENOENT', file);
    if (node instanceof Dir) throw ioError('EISDIR', file);
    return node;
  }

  #parent(file: string): { dir: Dir; name: string } {
    const abs = path.posix.resolve(file);
    const parent = this.#lookup(path.posix.dirname(abs));
    if (!parent) throw ioError('ENOENT', path.posix.dirname(abs));
    if (!(parent instanceof Dir)) throw ioError('ENOTDIR', path.posix.dirname(abs));
    return { dir: parent, name: path.posix.basename(abs) };
  }
}

class MemoryHandle implements FileHandle {
  readonly path: string;
  readonly durableWrites: boolean;
  readonly #fs: CrashFS;
  readonly #node: Inode;
  readonly #readOnly: boolean;
  #closed = false;

  constructor(fs: CrashFS, file: string, node: Inode, readOnly: boolean, durableWrites: boolean) {
    this.#fs = fs;
    this.path = file;
    this.#node = node;
    this.#readOnly = readOnly;
    this.durableWrites = durableWrites;
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    await this.#check();
    this.#fs.stats.read++;
    const end = Math.min(this.#node.length, position + length);
    if (end <= position) return 0;
    return this.#node.data.copy(buf, offset, position, end);
  }

  async writev(buffers: readonly Buffer[], position: number): Promise<void> {
    await this.#check(true);
    this.#fs.stats.writev++;
    this.#fs.maybeFail('writev', this.path);
    let total = 0;
    for (const b of buffers) total += b.length;
    const node = this.#node;
    node.reserve(position + total);
    if (position > node.length) node.data.fill(0, node.length, position);
    let at = position;
    for (const b of buffers) at += b.copy(node.data, at);
    node.length = Math.max(node.length, at);
    if (this.durableWrites) {
      // O_DSYNC: the write returns once its bytes are durable; a sync failure fails the write.
      this.#fs.stats.datasync++;
      this.#fs.maybeFail('datasync', this.path);
      if (node.synced.length >= position) node.synced = Buffer.from(node.content().subarray(0, Math.max(node.synced.length, at)));
    }
  }

  async datasync(): Promise<void> {
    await this.#check();
    this.#fs.stats.datasync++;
    this.#fs.maybeFail('datasync', this.path);
    this.#node.synced = Buffer.from(this.#node.content());
  }

  async truncate(length: number): Promise<void> {
    await this.#check(true);
    const node = this.#node;
    node.reserve(length);
    if (length > node.length) node.data.fill(0, node.length, length);
    node.length = length;
  }

  async size(): Promise<number> {
    await this.#check();
    return this.#node.length;
  }

  async close(): Promise<void> {
    // Closing a dead handle is fine (the process "restarted"); closing twice is a bug.
    if (this.#closed) throw Object.assign(new Error(`EBADF: ${this.path} closed twice`), { code: 'EBADF' });
    this.#closed = true;
  }

  async #check(write = false): Promise<void> {
    await Promise.resolve();
    this.#fs.checkAlive(this.path);
    if (this.#closed) throw Object.assign(new Error(`EBADF: ${this.path} is closed`), { code: 'EBADF' });
    if (write && this.#readOnly) throw Object.assign(new Error(`EBADF: ${this.path} is read only`), { code: 'EBADF' });
  }
}
