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
 * Raw baselines per row, each run next to the log's run so both see the same machine state, in
 * alternating order (log first on even runs, baseline first on odd ones) so neither always gets
 * the warmer or the colder slot, and dirty pages flushed (sync) before every timed run:
 * - "same I/O" (the one targets are judged on): one writer replaying the log's own .log syscalls
 *   (recorded during a log run): the same writevs of the same batch buffers (same iovec counts,
 *   so the same bytes and sizes), at the same positions, and the same fdatasyncs. One syscall in
 *   flight at a time, as in the log. The ratio is the engine's own overhead (verification,
 *   offsets, indexes, group-commit scheduling).
 * - others, for context: the same replay with the batch check (`verifyBatch`: framing and
 *   CRC-32C, which the log must do for every append) run before each writev, i.e. the best any
 *   log that verifies can do in this closed loop, where nothing can overlap the check (the next
 *   batches arrive only once the previous commit is acknowledged); each batch written (and under
 *   always fdatasynced) as it comes, i.e. a log without group commit; and, for never/interval,
 *   1 MiB writes. With only APPENDERS batches in flight a commit cannot carry more than
 *   APPENDERS batches, so 1 MiB writes bound what any log could reach in this closed loop.
 * Ratios are medians of per-run ratios (log run / the baseline run next to it), with their range.
 * Reads: the log read sequentially with maxBytes 1 MiB, first right after a reopen (every batch
 * CRC-checked once) then again (served from the known-good ranges), against 1 MiB preads of the
 * same segment files, alternating which goes first. Page-cache warm: this measures the engine,
 * not the disk's read speed.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeRecordBatch, verifyBatch } from '../client/protocol/record-batch.js';
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

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const elapsed = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

function cb<T>(fn: (done: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
}

/**
 * The .log syscalls of one log run, in order: n > 0 is a writev of n buffers, n < 0 a writev of
 * -n buffers on a handle opened with O_DSYNC (fsync=always), 0 an fdatasync.
 * (Index files and directories are not recorded: the log writes them only at open and close.)
 */
type Trace = number[];

/** nodeFileIO, recording the writevs and fdatasyncs of .log files (what the baseline replays). */
function recordingIO(trace: Trace): FileIO {
  const io = nodeFileIO;
  return {
    readdir: (d) => io.readdir(d),
    mkdir: (d) => io.mkdir(d),
    stat: (f) => io.stat(f),
    rename: (a, b) => io.rename(a, b),
    unlink: (f) => io.unlink(f),
    removeTree: (d) => io.removeTree(d),
    fsyncDir: (d) => io.fsyncDir(d),
    async open(file, mode, options): Promise<FileHandle> {
      const fh = await io.open(file, mode, options);
      if (!file.endsWith('.log')) return fh;
      return {
        path: fh.path,
        durableWrites: fh.durableWrites,
        read: (b, o, l, p) => fh.read(b, o, l, p),
        writev: (bs, p) => {
          trace.push(fh.durableWrites ? -bs.length : bs.length);
          return fh.writev(bs, p);
        },
        datasync: () => {
          trace.push(0);
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
  /** The .log syscalls of the timed appends, for the baseline to replay. */
  trace: Trace;
}

/** MB/s of APPENDERS concurrent appenders writing `total` bytes of `batch`-sized appends. */
async function appendRun(mode: FsyncMode, batches: readonly Buffer[], total: number, edgeVerified = false): Promise<AppendStats> {
  const dir = tempDir();
  const trace: Trace = [];
  const log = await PartitionLog.open({ dir, fsync: mode, logger: silent, io: recordingIO(trace) });
  const size = batches[0]!.length;
  settle();
  trace.length = 0; // only what the timed appends do
  const perAppender = Math.max(1, Math.round(total / APPENDERS / size));
  // The broker verifies each produced batch once, at the edge, and hands the log its header;
  // the edge-verified runs append that way (the check itself is outside the timed loop).
  const headers = batches.map((b) => (edgeVerified ? verifyBatch(b, 0) : undefined));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    batches.map(async (batch, n) => {
      const header = headers[n];
      // Reusing the buffer is safe here: append writes it before it resolves, and what the log keeps
      // of it for reads at the end of the log is never read (these logs are never read).
      for (let i = 0; i < perAppender; i++) await log.append(batch, header);
    }),
  );
  const seconds = elapsed(t0);
  const timed = trace.slice();
  await log.close();
  fs.rmSync(dir, { recursive: true, force: true });
  // A commit under always is an fdatasync, or a durable (O_DSYNC) write.
  const commits = timed.filter((n) => (mode === 'always' ? n <= 0 : n > 0)).length;
  const bytes = APPENDERS * perAppender * size;
  return { mbPerSec: bytes / MB / seconds, bytesPerCommit: bytes / Math.max(1, commits), trace: timed };
}

/**
 * MB/s of one writer replaying `trace` with `batches` (writevs of the same buffers back to back,
 * fdatasyncs where the log made them); with `verify`, each batch is checked before its writev.
 */
async function replayRun(trace: Trace, batches: readonly Buffer[], verify: boolean): Promise<number> {
  const dir = tempDir();
  // Durable writes (negative counts) are replayed the same way: on a file opened with O_DSYNC.
  const durable = trace.some((n) => n < 0);
  const fd = fs.openSync(path.join(dir, 'raw'), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | (durable ? fs.constants.O_DSYNC : 0));
  // The iovec arrays are made before the clock starts: the log's commit makes one per writev,
  // so this only makes the baseline faster.
  const vectors = trace.map((n) => Array.from({ length: Math.abs(n) }, (_, i) => batches[i % batches.length]!));
  settle();
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < trace.length; i++) {
    const vec = vectors[i]!;
    if (vec.length === 0) {
      await cb<void>((d) => fs.fdatasync(fd, (e) => d(e, undefined)));
      continue;
    }
    let want = 0;
    for (const b of vec) {
      if (verify) verifyBatch(b, 0);
      want += b.length;
    }
    const wrote = await cb<number>((d) => fs.writev(fd, vec, bytes, d));
    if (wrote !== want) throw new Error(`short write: ${wrote} of ${want}`);
    bytes += wrote;
  }
  const seconds = elapsed(t0);
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  return bytes / MB / seconds;
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

interface Ratio {
  name: string;
  mbPerSec: number;
  /** Median of the per-run ratios log / baseline, and their range. */
  ratio: number;
  min: number;
  max: number;
}

interface Row {
  name: string;
  mbPerSec: number;
  runs: number[];
  /** Average bytes per commit of the log's runs (median), for append rows. */
  commitBytes: number | null;
  sameIo: Ratio;
  references: Ratio[];
  target: number | null;
}

/** Ratio of `runs` to `base`, run by run (each log run against the baseline run next to it). */
function ratioOf(name: string, runs: readonly number[], base: readonly number[]): Ratio {
  const r = runs.map((x, i) => x / base[i]!);
  return { name, mbPerSec: median(base), ratio: median(r), min: Math.min(...r), max: Math.max(...r) };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const progress = (msg: string): void => {
    if (!flag('--json')) process.stderr.write(`${msg}\n`);
  };
  const repeat = (chunk: Buffer, bytes: number): Buffer =>
    Buffer.concat(Array.from({ length: Math.max(1, Math.round(bytes / chunk.length)) }, () => chunk));

  for (const records of [100, 640]) {
    const batches = Array.from({ length: APPENDERS }, () => makeBatch(records));
    const chunk = batches[0]!;
    const label = `batch${records} (${(chunk.length / 1024).toFixed(1)} KiB)`;
    const mib = repeat(chunk, MB);
    for (const mode of ['never', 'interval', 'always'] as const) {
      progress(`append fsync=${mode}, ${label}`);
      const total = mode === 'always' ? ALWAYS_BYTES : APPEND_BYTES;
      const logRuns: number[] = [];
      const edgeRuns: number[] = [];
      const edgeSameIo: number[] = [];
      const sameIo: number[] = [];
      const verified: number[] = [];
      const reference: number[] = [];
      const perBatch: number[] = [];
      const commitBytes: number[] = [];
      const baselines = async (trace: Trace): Promise<void> => {
        sameIo.push(await replayRun(trace, batches, false));
        verified.push(await replayRun(trace, batches, true));
        // A writer that writes (and under always, syncs) each batch as it comes: no group commit.
        perBatch.push(await rawWriteRun(chunk, total, mode === 'always'));
        if (mode !== 'always') reference.push(await rawWriteRun(mib, total, false));
      };
      let previous: Trace | undefined;
      for (let i = 0; i < RUNS; i++) {
        // Odd runs time the baselines first, replaying the previous log run's syscalls (in this
        // closed loop every run makes the same ones: APPENDERS batches per commit).
        const baselinesFirst = i % 2 === 1 && previous !== undefined;
        if (baselinesFirst) await baselines(previous!);
        const r = await appendRun(mode, batches, total);
        logRuns.push(r.mbPerSec);
        commitBytes.push(r.bytesPerCommit);
        if (!baselinesFirst) await baselines(r.trace);
        previous = r.trace;
        const e = await appendRun(mode, batches, total, true);
        edgeRuns.push(e.mbPerSec);
        edgeSameIo.push(await replayRun(e.trace, batches, false));
      }
      let target: number | null = null;
      if (mode === 'never') target = 0.8;
      if (mode === 'always' && chunk.length >= 64 * 1024) target = 0.5;
      const sync = mode === 'always' ? ' (O_DSYNC, as the log)' : '';
      rows.push({
        name: `append ${label} x${APPENDERS}, fsync=${mode}`,
        mbPerSec: median(logRuns),
        runs: logRuns,
        commitBytes: median(commitBytes),
        sameIo: ratioOf(`raw writev${sync}, log's syscalls`, logRuns, sameIo),
        references: [
          ratioOf(`same + verifyBatch each`, logRuns, verified),
          ...(mode === 'always' ? [] : [ratioOf('raw 1 MiB writes', logRuns, reference)]),
          ratioOf(`raw write${sync} per batch`, logRuns, perBatch),
        ],
        target,
      });
      rows.push({
        name: `append ${label} x${APPENDERS}, fsync=${mode}, verified at the edge (the broker's path)`,
        mbPerSec: median(edgeRuns),
        runs: edgeRuns,
        commitBytes: median(commitBytes),
        sameIo: ratioOf(`raw writev${sync}, log's syscalls`, edgeRuns, edgeSameIo),
        references: [],
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
  // Interleaved, alternating which goes first: a raw pass, and a log pass after a reopen (every
  // batch CRC-checked once) followed by a second one on the same instance (known-good ranges).
  const rawRuns: number[] = [];
  const firstRuns: number[] = [];
  const warmRuns: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    if (i % 2 === 0) rawRuns.push(await rawReadRun(dir));
    log = await PartitionLog.open({ dir, logger: silent });
    firstRuns.push(await logReadRun(log));
    warmRuns.push(await logReadRun(log));
    await log.close();
    if (i % 2 === 1) rawRuns.push(await rawReadRun(dir));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  for (const [name, runs, target] of [
    ['read 1 MiB/fetch, first pass after reopen (CRC-checked)', firstRuns, null],
    ['read 1 MiB/fetch, known-good ranges', warmRuns, 0.8],
  ] as const) {
    rows.push({
      name,
      mbPerSec: median(runs),
      runs: [...runs],
      commitBytes: null,
      sameIo: ratioOf('raw 1 MiB preads', runs, rawRuns),
      references: [],
      target,
    });
  }

  if (flag('--json')) {
    console.log(JSON.stringify({ runs: RUNS, appendMiB: APPEND_BYTES / MB, alwaysMiB: ALWAYS_BYTES / MB, readMiB: READ_BYTES / MB, tmpdir: os.tmpdir(), rows }, null, 2));
    return;
  }
  const pad = (s: string, n: number): string => s.padEnd(n);
  const range = (x: Ratio): string => `${x.ratio.toFixed(2)} (${x.min.toFixed(2)}-${x.max.toFixed(2)})`;
  console.log(`\nmedian of ${RUNS} runs (ratio: median of per-run ratios, with range); ${os.tmpdir()}; ${os.cpus().length} cpus; ${APPENDERS} appenders\n`);
  console.log(`${pad('workload', 56)} ${pad('MB/s', 6)} ${pad('commit', 8)} ${pad('same-I/O raw, MB/s', 40)} ${pad('ratio', 17)} ${pad('target', 12)} other raw baselines, MB/s: ratio`);
  for (const r of rows) {
    const verdict = r.target === null ? '' : `>=${r.target} ${r.sameIo.ratio >= r.target ? 'met' : 'MISSED'}`;
    const commit = r.commitBytes === null ? '' : `${(r.commitBytes / 1024).toFixed(0)} KiB`;
    const ref = r.references.map((x) => `${x.name} ${x.mbPerSec.toFixed(0)}: ${range(x)}`).join('; ');
    console.log(
      `${pad(r.name, 56)} ${pad(r.mbPerSec.toFixed(0), 6)} ${pad(commit, 8)} ${pad(`${r.sameIo.name} ${r.sameIo.mbPerSec.toFixed(0)}`, 40)} ${pad(range(r.sameIo), 17)} ${pad(verdict, 12)} ${ref}`,
    );
  }
}

await main();
