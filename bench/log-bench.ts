/**
 * Storage engine benchmark: PartitionLog append and read throughput against a raw sequential
 * file write/read of the same bytes, measured in the same run on the same disk (a temp dir
 * under os.tmpdir()). A benchmark, not a test: it prints figures and never fails.
 *
 *   npm run bench:log                      # table
 *   npm run bench:log -- --json            # JSON
 *   node dist/bench/log-bench.js --runs 3 --mb 32
 *
 * Workloads (100-byte records, APPENDERS concurrent appenders, each awaiting its append):
 * - batch100: 100 records per batch (~10.7 KiB); batch640: 640 records per batch (~68.7 KiB),
 *   so every commit carries >= 64 KiB.
 * - fsync never | interval (1 s) | always.
 * Two raw baselines per row, each run interleaved with the log's runs so both see the same
 * machine state, and dirty pages flushed (sync) before every timed run:
 * - "same I/O" (the one targets are judged on): one writer writing the same bytes in chunks the
 *   size of the log's average commit (bytes per writev, counted during the log's run), with an
 *   fdatasync after each under always. Same bytes, same syscalls, same syncs: the ratio is the
 *   engine's own overhead (verification, offsets, indexes, group-commit scheduling).
 * - others, for context: each batch written (and under always fdatasynced) as it comes, i.e. a
 *   log without group commit; and, for never/interval, 1 MiB writes. With only APPENDERS
 *   batches in flight a commit cannot carry more than APPENDERS batches, so 1 MiB writes bound
 *   what any log could reach in this closed loop.
 * Ratios are medians of per-run ratios (log run / the baseline run right after it).
 * Reads: the log read sequentially with maxBytes 1 MiB, first right after a reopen (every batch
 * CRC-checked once) then again (served from the known-good ranges), against 1 MiB preads of the
 * same segment files. Page-cache warm: this measures the engine, not the disk's read speed.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeRecordBatch } from '../client/protocol/record-batch.js';
import { type FileHandle, type FileIO, nodeFileIO } from '../broker/log/file-io.js';
import type { FsyncMode, LogSink } from '../broker/log/options.js';
import { PartitionLog } from '../broker/log/partition-log.js';

const args = process.argv.slice(2);
const flag = (name: string): boolean => args.includes(name);
const numArg = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : Number.NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

const RUNS = numArg('--runs', 5);
const MB = 1024 * 1024;
const APPEND_BYTES = numArg('--mb', 64) * MB;
// fsync=always runs are disk-bound; a smaller volume keeps the whole benchmark to a few minutes.
const ALWAYS_BYTES = Math.min(APPEND_BYTES, numArg('--always-mb', 16) * MB);
const READ_BYTES = numArg('--read-mb', 256) * MB;
const APPENDERS = numArg('--appenders', 4);
const silent: LogSink = { info: () => {}, warn: () => {} };

function makeBatch(records: number): Buffer {
  const value = Buffer.alloc(100, 'v');
  return encodeRecordBatch(Array.from({ length: records }, () => ({ value, timestamp: 1_700_000_000_000 })));
}

/**
 * Flushes dirty pages system-wide before a timed run, so one run's writeback does not throttle
 * the next (without this, page-cache write figures swing several-fold between runs).
 */
function settle(): void {
  try {
    execFileSync('sync');
  } catch {
    // No sync(1): the figures are just noisier.
  }
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const elapsed = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

function cb<T>(fn: (done: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
}

/** nodeFileIO, counting writevs and fdatasyncs of .log files (to size the baseline's commits). */
function countingIO(counter: { writes: number; syncs: number }): FileIO {
  const io = nodeFileIO;
  return {
    readdir: (d) => io.readdir(d),
    mkdir: (d) => io.mkdir(d),
    stat: (f) => io.stat(f),
    rename: (a, b) => io.rename(a, b),
    unlink: (f) => io.unlink(f),
    removeTree: (d) => io.removeTree(d),
    fsyncDir: (d) => io.fsyncDir(d),
    async open(file, mode): Promise<FileHandle> {
      const fh = await io.open(file, mode);
      if (!file.endsWith('.log')) return fh;
      return {
        path: fh.path,
        read: (b, o, l, p) => fh.read(b, o, l, p),
        writev: (bs, p) => {
          counter.writes++;
          return fh.writev(bs, p);
        },
        datasync: () => {
          counter.syncs++;
          return fh.datasync();
        },
        truncate: (l) => fh.truncate(l),
        size: () => fh.size(),
        close: () => fh.close(),
      };
    },
  };
}

interface AppendStats {
  mbPerSec: number;
  /** Average bytes per commit: per fdatasync under always, per writev otherwise. */
  bytesPerCommit: number;
}

/** MB/s of APPENDERS concurrent appenders writing `total` bytes of `batch`-sized appends. */
async function appendRun(mode: FsyncMode, records: number, total: number): Promise<AppendStats> {
  const dir = tempDir();
  const counter = { writes: 0, syncs: 0 };
  const log = await PartitionLog.open({ dir, fsync: mode, logger: silent, io: countingIO(counter) });
  const batches = Array.from({ length: APPENDERS }, () => makeBatch(records));
  settle();
  const perAppender = Math.max(1, Math.round(total / APPENDERS / batches[0]!.length));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    batches.map(async (batch) => {
      // Reusing the buffer is safe: append writes it before it resolves.
      for (let i = 0; i < perAppender; i++) await log.append(batch);
    }),
  );
  const seconds = elapsed(t0);
  const commits = mode === 'always' ? counter.syncs : counter.writes;
  await log.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const bytes = APPENDERS * perAppender * batches[0]!.length;
  return { mbPerSec: bytes / MB / seconds, bytesPerCommit: bytes / Math.max(1, commits) };
}

/** MB/s of one writer writing `chunk` back to back, optionally fdatasyncing after each. */
async function rawWriteRun(chunk: Buffer, total: number, syncEach: boolean): Promise<number> {
  const dir = tempDir();
  const fd = fs.openSync(path.join(dir, 'raw'), 'w');
  const n = Math.max(1, Math.round(total / chunk.length));
  settle();
  const t0 = process.hrtime.bigint();
  for (let i = 0, pos = 0; i < n; i++, pos += chunk.length) {
    await cb<number>((d) => fs.write(fd, chunk, 0, chunk.length, pos, d));
    if (syncEach) await cb<void>((d) => fs.fdatasync(fd, (e) => d(e, undefined)));
  }
  const seconds = elapsed(t0);
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  return (n * chunk.length) / MB / seconds;
}

/** MB/s reading the whole log sequentially, 1 MiB per read. */
async function logReadRun(log: PartitionLog): Promise<number> {
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  for (let offset = log.startOffset; offset < log.highWatermark; ) {
    const buf = await log.read(offset, MB);
    bytes += buf.length;
    // The next offset: one past the last batch in the answer (walk the batch headers).
    let pos = 0;
    let next = offset;
    while (pos < buf.length) {
      const start = buf.readInt32BE(pos) * 2 ** 32 + buf.readUInt32BE(pos + 4);
      next = start + buf.readInt32BE(pos + 23) + 1;
      pos += buf.readInt32BE(pos + 8) + 12;
    }
    offset = next;
  }
  return bytes / MB / elapsed(t0);
}

/** MB/s reading the segment files sequentially with 1 MiB preads into fresh buffers. */
async function rawReadRun(dir: string): Promise<number> {
  let bytes = 0;
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.log')).sort();
  const t0 = process.hrtime.bigint();
  for (const f of files) {
    const fd = fs.openSync(path.join(dir, f), 'r');
    for (let pos = 0; ; pos += MB) {
      const buf = Buffer.allocUnsafe(MB);
      const n = await cb<number>((d) => fs.read(fd, buf, 0, MB, pos, d));
      bytes += n;
      if (n < MB) break;
    }
    fs.closeSync(fd);
  }
  return bytes / MB / elapsed(t0);
}

interface Row {
  name: string;
  mbPerSec: number;
  runs: number[];
  /** Average bytes per commit of the log's runs (median), for append rows. */
  commitBytes: number | null;
  sameIo: { name: string; mbPerSec: number; ratio: number };
  references: { name: string; mbPerSec: number; ratio: number }[];
  target: number | null;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const progress = (msg: string): void => {
    if (!flag('--json')) process.stderr.write(`${msg}\n`);
  };
  const repeat = (chunk: Buffer, bytes: number): Buffer =>
    Buffer.concat(Array.from({ length: Math.max(1, Math.round(bytes / chunk.length)) }, () => chunk));

  for (const records of [100, 640]) {
    const chunk = makeBatch(records);
    const label = `batch${records} (${(chunk.length / 1024).toFixed(1)} KiB)`;
    const mib = repeat(chunk, MB);
    for (const mode of ['never', 'interval', 'always'] as const) {
      progress(`append fsync=${mode}, ${label}`);
      const total = mode === 'always' ? ALWAYS_BYTES : APPEND_BYTES;
      const logRuns: number[] = [];
      const sameIo: number[] = [];
      const reference: number[] = [];
      const perBatch: number[] = [];
      const commitBytes: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const r = await appendRun(mode, records, total);
        logRuns.push(r.mbPerSec);
        commitBytes.push(r.bytesPerCommit);
        sameIo.push(await rawWriteRun(repeat(chunk, r.bytesPerCommit), total, mode === 'always'));
        // A writer that writes (and under always, syncs) each batch as it comes: no group commit.
        perBatch.push(await rawWriteRun(chunk, total, mode === 'always'));
        if (mode !== 'always') reference.push(await rawWriteRun(mib, total, false));
      }
      const m = median(logRuns);
      // Ratios are medians of per-run ratios (each log run against the baseline run next to it),
      // which cancels most of the drift a shared machine adds between runs.
      const pairRatio = (base: number[]): number => median(logRuns.map((x, i) => x / base[i]!));
      let target: number | null = null;
      if (mode === 'never') target = 0.8;
      if (mode === 'always' && chunk.length >= 64 * 1024) target = 0.5;
      rows.push({
        name: `append ${label} x${APPENDERS}, fsync=${mode}`,
        mbPerSec: m,
        runs: logRuns,
        commitBytes: median(commitBytes),
        sameIo: { name: mode === 'always' ? 'raw write+fdatasync, commit-sized' : 'raw write, commit-sized', mbPerSec: median(sameIo), ratio: pairRatio(sameIo) },
        references: [
          ...(mode === 'always' ? [] : [{ name: 'raw 1 MiB writes', mbPerSec: median(reference), ratio: pairRatio(reference) }]),
          {
            name: mode === 'always' ? 'raw write+fdatasync per batch' : 'raw write per batch',
            mbPerSec: median(perBatch),
            ratio: pairRatio(perBatch),
          },
        ],
        target,
      });
    }
  }

  progress(`read: writing ${READ_BYTES / MB} MiB`);
  const dir = tempDir();
  let log = await PartitionLog.open({ dir, fsync: 'never', segmentBytes: 32 * MB, logger: silent });
  const batch = makeBatch(100);
  for (let written = 0; written < READ_BYTES; written += batch.length) await log.append(batch);
  await log.close();
  // Interleaved: raw pass, log pass after a reopen (every batch CRC-checked once), then a
  // second log pass on the same instance (served from the known-good ranges).
  const rawRuns: number[] = [];
  const firstRuns: number[] = [];
  const warmRuns: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    rawRuns.push(await rawReadRun(dir));
    log = await PartitionLog.open({ dir, logger: silent });
    firstRuns.push(await logReadRun(log));
    warmRuns.push(await logReadRun(log));
    await log.close();
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const rawMedian = median(rawRuns);
  const readRatio = (runs: readonly number[]): number => median(runs.map((x, i) => x / rawRuns[i]!));
  for (const [name, runs, target] of [
    ['read 1 MiB/fetch, first pass after reopen (CRC-checked)', firstRuns, null],
    ['read 1 MiB/fetch, known-good ranges', warmRuns, 0.8],
  ] as const) {
    rows.push({
      name,
      mbPerSec: median(runs),
      runs: [...runs],
      commitBytes: null,
      sameIo: { name: 'raw 1 MiB preads', mbPerSec: rawMedian, ratio: readRatio(runs) },
      references: [],
      target,
    });
  }

  if (flag('--json')) {
    console.log(JSON.stringify({ runs: RUNS, appendMiB: APPEND_BYTES / MB, alwaysMiB: ALWAYS_BYTES / MB, readMiB: READ_BYTES / MB, tmpdir: os.tmpdir(), rows }, null, 2));
    return;
  }
  const pad = (s: string, n: number): string => s.padEnd(n);
  console.log(`\nmedian of ${RUNS} runs; ${os.tmpdir()}; ${os.cpus().length} cpus; ${APPENDERS} appenders\n`);
  console.log(`${pad('workload', 56)} ${pad('MB/s', 8)} ${pad('commit', 8)} ${pad('same-I/O raw, MB/s', 38)} ${pad('ratio', 6)} ${pad('target', 11)} other raw baselines, MB/s (ratio)`);
  for (const r of rows) {
    const verdict = r.target === null ? '' : `>=${r.target} ${r.sameIo.ratio >= r.target ? 'met' : 'MISSED'}`;
    const commit = r.commitBytes === null ? '' : `${(r.commitBytes / 1024).toFixed(0)} KiB`;
    const ref = r.references.map((x) => `${x.name} ${x.mbPerSec.toFixed(0)} (${x.ratio.toFixed(2)})`).join('; ');
    console.log(
      `${pad(r.name, 56)} ${pad(r.mbPerSec.toFixed(0), 8)} ${pad(commit, 8)} ${pad(`${r.sameIo.name} ${r.sameIo.mbPerSec.toFixed(0)}`, 36)} ${pad(r.sameIo.ratio.toFixed(2), 6)} ${pad(verdict, 11)} ${ref}`,
    );
  }
}

await main();
