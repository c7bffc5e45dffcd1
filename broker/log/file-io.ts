/**
 * The narrow file-system interface the storage engine uses, and its real implementation over
 * node:fs. Everything the log does to a disk goes through `FileIO`, so the same log code runs on
 * the crash-simulating in-memory file system (crash-fs.ts) in tests.
 *
 * The real implementation uses the callback API of node:fs on raw descriptors: fs/promises'
 * FileHandle costs an extra object and promise hop per call, which shows on the append path.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InlineWrites } from './inline-writes.js';

/** An open file. Positions are absolute; nothing here depends on a file cursor. */
export interface FileHandle {
  readonly path: string;
  /**
   * Opened with `durableWrites`: each writev returns only once the bytes it wrote are durable,
   * as if an fdatasync of them followed (O_DSYNC), so no separate datasync is needed for them.
   */
  readonly durableWrites: boolean;
  /** Reads up to `length` bytes at `position` into `buf[offset..]`; returns the count (short at EOF). */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** Writes every byte of `buffers` back to back starting at `position`, or throws. */
  writev(buffers: readonly Buffer[], position: number): Promise<void>;
  /** fdatasync: what was written before the call survives a power cut once this resolves. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

/**
 * `read`: existing file, read only. `write`: existing file, read-write.
 * `create`: read-write, created if missing and truncated if present.
 */
export type OpenMode = 'read' | 'write' | 'create';

export interface OpenOptions {
  /**
   * Writes are durable when they return (O_DSYNC): one system call, and one thread-pool round
   * trip, per durable append instead of a write and an fdatasync. Only with 'write' or 'create'.
   */
  durableWrites?: boolean;
}

export interface FileStat {
  size: number;
  isDirectory: boolean;
}

export interface FileIO {
  open(path: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle>;
  /** Names in `dir` (files and directories), unsorted. */
  readdir(dir: string): Promise<string[]>;
  /** Creates one directory; its parent must exist. No error if it already exists. */
  mkdir(dir: string): Promise<void>;
  /** Size (of a file; unspecified for a directory) and kind of `path`, or undefined when missing. */
  stat(path: string): Promise<FileStat | undefined>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Removes a directory and everything under it; no error if missing. */
  removeTree(dir: string): Promise<void>;
  /** fsync on the directory itself: makes creations, renames and removals in it durable. */
  fsyncDir(dir: string): Promise<void>;
}

/** Creates `dir` and any missing parents, fsyncing each parent so the new entries survive a crash. */
export async function ensureDir(io: FileIO, dir: string): Promise<void> {
  const missing: string[] = [];
  let cur = path.resolve(dir);
  while ((await io.stat(cur)) === undefined) {
    missing.push(cur);
    const parent = path.dirname(cur);
    if (parent === cur) break;
    cur = parent;
  }
  for (const d of missing.reverse()) {
    await io.mkdir(d);
    await io.fsyncDir(path.dirname(d));
  }
}

/** Reads the whole file, or undefined when it does not exist. */
export async function readWholeFile(io: FileIO, file: string): Promise<Buffer | undefined> {
  if ((await io.stat(file)) === undefined) return undefined;
  const fh = await io.open(file, 'read');
  try {
    const size = await fh.size();
    const buf = Buffer.allocUnsafe(size);
    const n = await readFully(fh, buf, 0, size, 0);
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/** Reads until `length` bytes or EOF; returns the count read. */
export async function readFully(
  fh: FileHandle,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const n = await fh.read(buf, offset + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Crash-safe replacement of a small file (style note 9): write a temp file, fdatasync it, rename
 * it over the target, fsync the directory. A crash leaves either the old or the new content.
 */
export async function writeFileAtomic(io: FileIO, file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await io.open(tmp, 'create');
  try {
    await fh.writev([data], 0);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await io.rename(tmp, file);
  await io.fsyncDir(path.dirname(file));
}

// Linux accepts at most IOV_MAX (1024) buffers per writev; larger groups are split.
const IOV_MAX = 1024;

function cb<T>(fn: (done: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn((err, value) => (err ? reject(err) : resolve(value)));
  });
}

const RESOLVED = Promise.resolve();

class NodeFileHandle implements FileHandle {
  readonly path: string;
  readonly durableWrites: boolean;
  readonly #fd: number;
  readonly #inline: InlineWrites;

  constructor(filePath: string, fd: number, durableWrites: boolean, inline: InlineWrites) {
    this.path = filePath;
    this.#fd = fd;
    this.durableWrites = durableWrites;
    this.#inline = inline;
  }

  read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return cb<number>((done) => fs.read(this.#fd, buf, offset, length, position, done));
  }

  writev(buffers: readonly Buffer[], position: number): Promise<void> {
    // The append path's case (one commit, at most IOV_MAX batches): one writev, straight from
    // its callback to the caller, with no intermediate array or extra promise.
    if (buffers.length <= IOV_MAX) return this.#writevOnce(buffers, position);
    return this.#writevGroups(buffers, position);
  }

  #writevOnce(buffers: readonly Buffer[], position: number): Promise<void> {
    let want = 0;
    for (let i = 0; i < buffers.length; i++) want += buffers[i]!.length;
    const inline = this.#inline;
    if (inline.admit(want)) {
      // On the loop (inline-writes.ts says when): no thread-pool round trip. Failures still
      // arrive as a rejection, as from the pool.
      const startedAt = inline.now();
      let wrote: number;
      try {
        wrote = fs.writevSync(this.#fd, buffers, position);
      } catch (err) {
        return Promise.reject(err as Error);
      } finally {
        inline.ranInline(startedAt);
      }
      return wrote < want ? this.#writeAll(Buffer.concat(buffers).subarray(wrote), position + wrote) : RESOLVED;
    }
    return new Promise<void>((resolve, reject) => {
      fs.writev(this.#fd, buffers, position, (err, wrote) => {
        inline.poolDone();
        if (err) reject(err);
        // A short write is rare on regular files (ENOSPC half way); finish the rest with write().
        else if (wrote < want) this.#writeAll(Buffer.concat(buffers).subarray(wrote), position + wrote).then(resolve, reject);
        else resolve();
      });
    });
  }

  async #writevGroups(buffers: readonly Buffer[], position: number): Promise<void> {
    for (let i = 0, pos = position; i < buffers.length; i += IOV_MAX) {
      const group = buffers.slice(i, i + IOV_MAX);
      await this.#writevOnce(group, pos);
      for (const b of group) pos += b.length;
    }
  }

  async #writeAll(buf: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const n = await cb<number>((d) => fs.write(this.#fd, buf, done, buf.length - done, position + done, d));
      if (n <= 0) throw Object.assign(new Error(`short write to ${this.path}`), { code: 'EIO' });
      done += n;
    }
  }

  datasync(): Promise<void> {
    return cb<void>((done) => fs.fdatasync(this.#fd, (err) => done(err, undefined)));
  }

  truncate(length: number): Promise<void> {
    return cb<void>((done) => fs.ftruncate(this.#fd, length, (err) => done(err, undefined)));
  }

  async size(): Promise<number> {
    const st = await cb<fs.Stats>((done) => fs.fstat(this.#fd, done));
    return st.size;
  }

  close(): Promise<void> {
    return cb<void>((done) => fs.close(this.#fd, (err) => done(err, undefined)));
  }
}

const OPEN_FLAGS: Record<OpenMode, number> = {
  read: fs.constants.O_RDONLY,
  write: fs.constants.O_RDWR,
  create: fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC,
};

/** Checks `durableWrites` against the mode; shared by every FileIO so they refuse alike. */
export function durableWritesFor(file: string, mode: OpenMode, options: OpenOptions): boolean {
  const durable = options.durableWrites === true;
  if (durable && mode === 'read') throw Object.assign(new Error(`EINVAL: ${file}: durableWrites on a read-only open`), { code: 'EINVAL' });
  return durable;
}

/**
 * FileIO over the real file system. Small writes may run on the event loop instead of the
 * thread pool, as `inlineWrites` decides for every handle this FileIO opens (inline-writes.ts).
 */
export class NodeFileIO implements FileIO {
  readonly inlineWrites: InlineWrites;

  constructor(inlineWrites: InlineWrites = new InlineWrites()) {
    this.inlineWrites = inlineWrites;
  }

  async open(file: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    const durableWrites = durableWritesFor(file, mode, options);
    const flags = OPEN_FLAGS[mode] | (durableWrites ? fs.constants.O_DSYNC : 0);
    const fd = await cb<number>((done) => fs.open(file, flags, 0o644, done));
    return new NodeFileHandle(file, fd, durableWrites, this.inlineWrites);
  }

  readdir(dir: string): Promise<string[]> {
    return fs.promises.readdir(dir);
  }

  async mkdir(dir: string): Promise<void> {
    try {
      await fs.promises.mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }

  async stat(file: string): Promise<FileStat | undefined> {
    try {
      const st = await fs.promises.stat(file);
      return { size: st.size, isDirectory: st.isDirectory() };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  rename(from: string, to: string): Promise<void> {
    return fs.promises.rename(from, to);
  }

  unlink(file: string): Promise<void> {
    return fs.promises.unlink(file);
  }

  removeTree(dir: string): Promise<void> {
    return fs.promises.rm(dir, { recursive: true, force: true });
  }

  async fsyncDir(dir: string): Promise<void> {
    const fd = await cb<number>((done) => fs.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, done));
    try {
      await cb<void>((done) => fs.fsync(fd, (err) => done(err, undefined)));
    } finally {
      await cb<void>((done) => fs.close(fd, (err) => done(err, undefined)));
    }
  }
}

/** The process-wide default real file system: one event loop, so one inline-write policy. */
export const nodeFileIO: NodeFileIO = new NodeFileIO();
