/**
 * A power-cut failpoint over the real file system, for tests that run a whole broker (in a child
 * process or in-process) and must show what each fsync mode really keeps.
 *
 * Every write goes to disk as usual; this layer remembers, per file, how many bytes the last
 * completed `datasync()` covered. `cut()` is the power going out: every later call fails with
 * EIO (the machine is gone), the calls already running are allowed to finish (a datasync that
 * completes was durable, and the broker may acknowledge what it covered), and then each file is
 * truncated back to what was synced. The caller then kills the process (SIGKILL) or abandons the
 * broker instance, and the next open sees the disk a real power cut would have left: acked
 * appends under `fsync=always` are there, unsynced tails are gone.
 *
 * Simplifications against crash-fs.ts (the in-memory model the storage unit tests use): files
 * that are only ever appended to are modelled exactly; a directory entry (a created or renamed
 * file) is treated as durable at once, and a file created but never synced is left empty
 * rather than removed. Recovery copes with either, and crash-fs.ts covers directory entries.
 */
import type { FileHandle, FileIO, FileStat, OpenMode, OpenOptions } from './file-io.js';
import { nodeFileIO } from './file-io.js';
import fs from 'node:fs';
import path from 'node:path';

interface Tracked {
  /** End of the furthest completed write. */
  written: number;
  /** Bytes a completed datasync covered: what survives the cut. */
  synced: number;
}

export interface PowerCutOptions {
  /**
   * Bytes of a file's unsynced tail that reach the disk anyway (a power cut in the middle of
   * writeback tears the tail rather than dropping it whole). Default: none.
   */
  keepUnsynced?: (file: string, unsyncedBytes: number) => number;
}

function eio(what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`EIO: power cut (${what})`), { code: 'EIO' });
}

export class PowerCutIO implements FileIO {
  readonly #inner: FileIO = nodeFileIO;
  readonly #files = new Map<string, Tracked>();
  readonly #running = new Set<Promise<unknown>>();
  #dead = false;

  get isCut(): boolean {
    return this.#dead;
  }

  /**
   * Pulls the plug. Resolves once the disk looks as it would after the cut; returns the number
   * of unsynced bytes thrown away.
   */
  async cut(options: PowerCutOptions = {}): Promise<number> {
    this.#dead = true;
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    let lost = 0;
    for (const [file, t] of this.#files) {
      if (t.written <= t.synced) continue;
      const unsynced = t.written - t.synced;
      const keep = Math.max(0, Math.min(unsynced, Math.floor(options.keepUnsynced?.(file, unsynced) ?? 0)));
      lost += unsynced - keep;
      try {
        fs.truncateSync(file, t.synced + keep);
      } catch (err) {
        // A file removed after it was written (retention, topic deletion) has nothing to revert.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    this.#files.clear();
    return lost;
  }

  async open(file: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const fh = await this.#call('open', () => this.#inner.open(file, mode, options));
    if (mode === 'create') this.#files.set(file, { written: 0, synced: 0 });
    else if (mode === 'write' && !this.#files.has(file)) {
      // What was on disk when this process opened it survived whatever came before.
      const size = await fh.size();
      this.#files.set(file, { written: size, synced: size });
    }
    return new CutHandle(fh, (what, run) => this.#call(what, run), this.#files.get(file));
  }

  readdir(dir: string): Promise<string[]> {
    return this.#call('readdir', () => this.#inner.readdir(dir));
  }

  mkdir(dir: string): Promise<void> {
    return this.#call('mkdir', () => this.#inner.mkdir(dir));
  }

  stat(file: string): Promise<FileStat | undefined> {
    return this.#call('stat', () => this.#inner.stat(file));
  }

  async rename(from: string, to: string): Promise<void> {
    await this.#call('rename', () => this.#inner.rename(from, to));
    // A file, or a directory (topic deletion renames one) with the files under it.
    this.#forget(to);
    for (const [file, t] of [...this.#files]) {
      if (!within(file, from)) continue;
      this.#files.delete(file);
      this.#files.set(to + file.slice(from.length), t);
    }
  }

  async unlink(file: string): Promise<void> {
    await this.#call('unlink', () => this.#inner.unlink(file));
    this.#files.delete(file);
  }

  async removeTree(dir: string): Promise<void> {
    await this.#call('removeTree', () => this.#inner.removeTree(dir));
    this.#forget(dir);
  }

  /** Drops the records of `target` and of everything under it. */
  #forget(target: string): void {
    for (const file of [...this.#files.keys()]) if (within(file, target)) this.#files.delete(file);
  }

  fsyncDir(dir: string): Promise<void> {
    return this.#call('fsyncDir', () => this.#inner.fsyncDir(dir));
  }

  /** Runs one file-system call unless the power is out, and lets `cut()` wait for it. */
  #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#dead) return Promise.reject(eio(what));
    const p = fn();
    this.#running.add(p);
    const done = (): void => void this.#running.delete(p);
    p.then(done, done);
    return p;
  }
}

/** `file` is `target` or lies under the directory `target`. */
function within(file: string, target: string): boolean {
  return file === target || file.startsWith(target + path.sep);
}

type Call = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

class CutHandle implements FileHandle {
  readonly path: string;
  readonly durableWrites: boolean;
  readonly #fh: FileHandle;
  readonly #call: Call;
  /** The file's record (shared by its handles, moved along by a rename); none for a file only ever read. */
  readonly #tracked: Tracked | undefined;

  constructor(fh: FileHandle, call: Call, tracked: Tracked | undefined) {
    this.path = fh.path;
    this.durableWrites = fh.durableWrites;
    this.#fh = fh;
    this.#call = call;
    this.#tracked = tracked;
  }

  read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.#call('read', () => this.#fh.read(buf, offset, length, position));
  }

  async writev(buffers: readonly Buffer[], position: number): Promise<void> {
    await this.#call('writev', () => this.#fh.writev(buffers, position));
    const t = this.#tracked;
    if (t === undefined) return;
    let end = position;
    for (const b of buffers) end += b.length;
    t.written = Math.max(t.written, end);
    // O_DSYNC: these bytes are durable now; the record keeps a durable prefix, as crash-fs.ts does.
    if (this.durableWrites && t.synced >= position) t.synced = Math.max(t.synced, end);
  }

  async datasync(): Promise<void> {
    // Only writes completed before the call are covered by it.
    const covered = this.#tracked?.written ?? 0;
    await this.#call('datasync', () => this.#fh.datasync());
    const t = this.#tracked;
    if (t !== undefined) t.synced = Math.max(t.synced, Math.min(covered, t.written));
  }

  async truncate(length: number): Promise<void> {
    await this.#call('truncate', () => this.#fh.truncate(length));
    const t = this.#tracked;
    if (t === undefined) return;
    t.written = Math.min(t.written, length);
    t.synced = Math.min(t.synced, length);
  }

  size(): Promise<number> {
    return this.#call('size', () => this.#fh.size());
  }

  close(): Promise<void> {
    // Closing is allowed after the cut so the abandoned broker can release its descriptors.
    return this.#fh.close();
  }
}
