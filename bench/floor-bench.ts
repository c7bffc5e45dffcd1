/**
 * The floor under `sluice bench e2e`: the least a Node broker could do for the same end-to-end
 * workload on the same machine, so that Sluice's latency can be read as a ratio to it.
 *
 * A child process plays the broker with nothing but the durable path: length-prefixed frames in
 * from a producer socket; group commit (every frame that arrived in one event-loop turn) with
 * one writev and one fdatasync through libuv's thread pool, as Sluice's log does; then the
 * frames out to a consumer socket. No protocol, no msgpack, no CRC, no offsets, no SDK. This
 * process paces 100-byte messages at 5,000/s in 1 ms bursts (as the e2e bench does), stamps each
 * with its send time, and records receipt minus send in an HDR histogram after a warm-up.
 *
 * Run: npm run bench:floor [-- --runs 5]. Compare with
 * `sluice bench e2e --rate 5000 --duration 10000 --warmup 3000` (docs/performance.md).
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createHistogram } from 'node:perf_hooks';

const RATE = 5000;
const WARMUP_MS = 3000;
const DURATION_MS = 10_000;
const SIZE = 100;
const PRODUCER = 0x50;
const CONSUMER = 0x43;

if (process.argv[2] === 'broker') runBroker(process.argv[3]!);
else await main();

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

function runBroker(file: string): void {
  const fd = fs.openSync(file, 'w');
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
    fs.writev(fd, frames, position, (err, written) => {
      if (err) throw err;
      position += written;
      fs.fdatasync(fd, (syncErr) => {
        if (syncErr) throw syncErr;
        consumer?.write(Buffer.concat(frames));
        committing = false;
        commit();
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

/** One run against a fresh child broker: latency percentiles (ms) of the messages after the warm-up. */
async function runOnce(dir: string): Promise<FloorRun> {
  const child = fork(new URL(import.meta.url).pathname, ['broker', path.join(dir, 'floor.log')]);
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(m as number)));
  const histogram = createHistogram();
  const consumer = await connect(port, CONSUMER);
  const producer = await connect(port, PRODUCER);
  const start = performance.now();
  readFrames(
    consumer,
    (frame) => {
      const sentAt = frame.readDoubleLE(4);
      if (sentAt >= start + WARMUP_MS) histogram.record(Math.max(1, Math.round((performance.now() - sentAt) * 1000)));
    },
    () => {},
  );
  await new Promise<void>((resolve) => {
    let sent = 0;
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
  await new Promise((resolve) => setTimeout(resolve, 200));
  producer.destroy();
  consumer.destroy();
  child.kill();
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    p50: ms(histogram.percentile(50)),
    p90: ms(histogram.percentile(90)),
    p99: ms(histogram.percentile(99)),
    p999: ms(histogram.percentile(99.9)),
    max: ms(histogram.max),
    count: histogram.count,
  };
}

async function main(): Promise<void> {
  const runsFlag = process.argv.indexOf('--runs');
  const runs = runsFlag > 0 ? Number(process.argv[runsFlag + 1]) : 3;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-floor-'));
  try {
    const results: FloorRun[] = [];
    for (let r = 1; r <= runs; r++) {
      const result = await runOnce(dir);
      results.push(result);
      console.log(`run ${r}: p50 ${result.p50} ms, p90 ${result.p90}, p99 ${result.p99}, p99.9 ${result.p999}, max ${result.max} (${result.count} messages)`);
    }
    const median = (pick: (x: FloorRun) => number): number => {
      const v = results.map(pick).sort((a, b) => a - b);
      return v.length % 2 === 1 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
    };
    console.log(`floor e2e at ${RATE} msgs/s after ${WARMUP_MS} ms warm-up, median of ${runs}: p50 ${median((x) => x.p50)} ms, p99 ${median((x) => x.p99)} ms, p99.9 ${median((x) => x.p999)} ms`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
