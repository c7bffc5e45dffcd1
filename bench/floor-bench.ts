/**
 * The floor under `sluice bench e2e`: the least a Node broker could do for the same end-to-end
 * workload on the same machine, so that Sluice's latency can be read as a ratio to it.
 *
 * A child process plays the broker with nothing but the durable path: length-prefixed frames in
 * from a producer socket; group commit (every frame that arrived while the previous commit ran,
 * or in one event-loop turn) with one writev and one fdatasync through libuv's thread pool (with
 * --dsync, one writev on a file opened with O_DSYNC, as Sluice's log does under fsync=always);
 * then the frames out to a consumer socket. No protocol, no msgpack, no CRC, no offsets, no SDK. This
 * process paces 100-byte messages at 5,000/s in 1 ms bursts (as the e2e bench does), stamps each
 * with its send time, and records receipt minus send in an HDR histogram after a warm-up.
 *
 * Run: npm run bench:floor [-- --runs 5] [--burn 0.4] [--dsync]. Compare with
 * `sluice bench e2e --rate 5000 --duration 10000 --warmup 3000` (docs/performance.md).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const RATE = 5000;
const WARMUP_MS = 3000;
const DURATION_MS = 10_000;
const SIZE = 100;
const PRODUCER = 0x50;
const CONSUMER = 0x43;

if (process.argv[2] === 'broker') runBroker(process.argv[3]!, process.argv[4] === 'dsync');
else if (process.argv[2] === 'burn') burn(Number(process.argv[3]));
else await main();

/**
 * --burn: a third process that keeps one core busy for `fraction` of every 10 ms, with no
 * syscalls or allocation, to show how the latency tail reacts to CPU used by someone else
 * (docs/performance.md, "Third pass").
 */
function burn(fraction: number): void {
  process.on('disconnect', () => process.exit(0));
  const spin = (): void => {
    const from = performance.now();
    while (performance.now() - from < 10 * fraction);
    setTimeout(spin, 10 * (1 - fraction));
  };
  spin();
}

/** The option `name`'s value, or undefined when absent. */
function option(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
}

/** Calls `onFrame` with each complete length-prefixed frame (prefix included) read from `sock`. */
function readFrames(sock: net.Socket, onFrame: (frame: Buffer) => void, onTurn: () => void): void {
  let acc: Buffer = Buffer.alloc(0);
  sock.on('data', (chunk: Buffer) => {
    acc = acc.length > 0 ? Buffer.concat([acc, chunk]) : chunk;
    while (acc.length >= 4) {
      const len = acc.readUInt32BE(0);
      if (acc.length < 4 + len) break;
      onFrame(acc.subarray(0, 4 + len));
      acc = acc.subarray(4 + len);
    }
    onTurn();
  });
}

function runBroker(file: string, dsync: boolean): void {
  // The parent going away (it failed, or was killed) ends the broker too.
  process.on('disconnect', () => process.exit(1));
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | (dsync ? fs.constants.O_DSYNC : 0));
  let consumer: net.Socket | undefined;
  let position = 0;
  let queue: Buffer[] = [];
  let committing = false;
  let scheduled = false;
  const commit = (): void => {
    scheduled = false;
    if (committing || queue.length === 0) return;
    committing = true;
    const frames = queue;
    queue = [];
    const done = (): void => {
      consumer?.write(Buffer.concat(frames));
      committing = false;
      commit();
    };
    fs.writev(fd, frames, position, (err, written) => {
      if (err) throw err;
      position += written;
      // O_DSYNC: the write was the sync.
      if (dsync) return done();
      fs.fdatasync(fd, (syncErr) => {
        if (syncErr) throw syncErr;
        done();
      });
    });
  };
  const server = net.createServer({ noDelay: true }, (sock) => {
    sock.once('data', (hello: Buffer) => {
      if (hello[0] === CONSUMER) {
        consumer = sock;
        return;
      }
      // The producer: copy each frame out of the socket's chunk, since it outlives this turn.
      readFrames(
        sock,
        (frame) => queue.push(Buffer.from(frame)),
        () => {
          if (!committing && !scheduled) {
            scheduled = true;
            setImmediate(commit);
          }
        },
      );
      if (hello.length > 1) sock.unshift(hello.subarray(1));
    });
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as net.AddressInfo).port));
}

function connect(port: number, role: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => {
      sock.write(Buffer.from([role]));
      resolve(sock);
    });
    sock.once('error', reject);
  });
}

interface FloorRun {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
}

/** Rejects when the child exits, so that a broker that died cannot leave the run waiting or measuring nothing. */
function exitOf(child: ChildProcess): Promise<never> {
  return new Promise((_, reject) => child.once('exit', (code, signal) => reject(new Error(`floor broker exited (${signal ?? code})`))));
}

/** One run against a fresh child broker: latency percentiles (ms) of the messages after the warm-up. */
async function runOnce(dir: string, dsync: boolean): Promise<FloorRun> {
  const child = fork(fileURLToPath(import.meta.url), ['broker', path.join(dir, 'floor.log'), ...(dsync ? ['dsync'] : [])]);
  const exited = exitOf(child);
  exited.catch(() => undefined);
  try {
    const port = await Promise.race([once(child, 'message').then(([m]) => m as number), exited]);
    const histogram = createHistogram();
    const consumer = await connect(port, CONSUMER);
    const producer = await connect(port, PRODUCER);
    const start = performance.now();
    let sent = 0;
    let received = 0;
    readFrames(
      consumer,
      (frame) => {
        received++;
        const sentAt = frame.readDoubleLE(4);
        if (sentAt >= start + WARMUP_MS) histogram.record(Math.max(1, Math.round((performance.now() - sentAt) * 1000)));
      },
      () => {},
    );
    const paced = new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        if (now - start >= WARMUP_MS + DURATION_MS) {
          resolve();
          return;
        }
        const burst: Buffer[] = [];
        while (start + (sent * 1000) / RATE <= now) {
          const frame = Buffer.alloc(4 + SIZE);
          frame.writeUInt32BE(SIZE, 0);
          frame.writeDoubleLE(performance.now(), 4);
          burst.push(frame);
          sent++;
        }
        if (burst.length > 0) producer.write(Buffer.concat(burst));
        setTimeout(tick, 1);
      };
      tick();
    });
    await Promise.race([paced, exited]);
    // Every message sent is received before the run ends: the slowest are the ones that count.
    const drained = new Promise<void>((resolve) => {
      const check = (): void => void (received >= sent ? resolve() : setTimeout(check, 5));
      check();
    });
    await Promise.race([drained, exited]);
    producer.destroy();
    consumer.destroy();
    const ms = (us: number): number => Math.round(us) / 1000;
    return {
      p50: ms(histogram.percentile(50)),
      p90: ms(histogram.percentile(90)),
      p99: ms(histogram.percentile(99)),
      p999: ms(histogram.percentile(99.9)),
      max: ms(histogram.max),
      count: histogram.count,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = once(child, 'exit');
      child.kill();
      await gone;
    }
  }
}

async function main(): Promise<void> {
  const runs = Number(option('--runs') ?? 3);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${option('--runs')}`);
  const burnFraction = Number(option('--burn') ?? 0);
  if (!(burnFraction >= 0 && burnFraction < 1)) throw new Error(`--burn must be a fraction of a core in [0, 1), got ${option('--burn')}`);
  const dsync = process.argv.includes('--dsync');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-floor-'));
  const burner = burnFraction > 0 ? fork(fileURLToPath(import.meta.url), ['burn', String(burnFraction)]) : undefined;
  try {
    const results: FloorRun[] = [];
    for (let r = 1; r <= runs; r++) {
      const result = await runOnce(dir, dsync);
      results.push(result);
      console.log(`run ${r}: p50 ${result.p50} ms, p90 ${result.p90}, p99 ${result.p99}, p99.9 ${result.p999}, max ${result.max} (${result.count} messages)`);
    }
    const median = (pick: (x: FloorRun) => number): number => {
      const v = results.map(pick).sort((a, b) => a - b);
      return v.length % 2 === 1 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
    };
    const load = burner ? ` with ${burnFraction} of a core burnt elsewhere` : '';
    const sync = dsync ? ', O_DSYNC writes' : '';
    console.log(`floor e2e at ${RATE} msgs/s after ${WARMUP_MS} ms warm-up${load}${sync}, median of ${runs}: p50 ${median((x) => x.p50)} ms, p99 ${median((x) => x.p99)} ms, p99.9 ${median((x) => x.p999)} ms`);
  } finally {
    burner?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
