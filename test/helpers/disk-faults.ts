/**
 * Disk faults injected into a real broker data dir between runs (the broker must be stopped):
 * torn tails, garbage after the last batch, bit rot inside a sealed segment.
 *
 * The file layout is written out here from docs/storage.md rather than imported from broker/log,
 * so a harness that checks the storage engine does not share its parser (and its bugs):
 *
 *   DATA/topics/TOPIC/PARTITION/NNNNNNNNNNNNNNNNNNNN.log   record batches back to back; the
 *   name is the base offset, 20 digits; the last segment is active, the others are sealed
 *   ... .index, .timeindex, recovery-point (ASCII offset: segments below it are trusted)
 *
 * and per batch (big-endian): baseOffset int64 @0, batchLength int32 @8 (bytes after it),
 * magic @16, crc @17 (CRC-32C of [21, end)), lastOffsetDelta int32 @23, records from @61.
 */
import { appendFileSync, closeSync, openSync, readFileSync, readSync, readdirSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from './random.js';

const SEGMENT_LOG = /^(\d{20})\.log$/;
const BATCH_OVERHEAD = 12; // baseOffset + batchLength: the bytes batchLength does not count
const RECORDS_START = 61; // bytes of batch header before the first record

export interface SegmentFiles {
  readonly baseOffset: number;
  readonly log: string;
  readonly index: string;
  readonly timeIndex: string;
}

export interface BatchLocation {
  /** Byte position of the batch in its .log file. */
  readonly position: number;
  /** Whole batch, header included. */
  readonly size: number;
  readonly baseOffset: number;
  readonly lastOffset: number;
}

export function partitionDir(dataDir: string, topic: string, partition: number): string {
  return join(dataDir, 'topics', topic, String(partition));
}

/** The segments of a partition, oldest first (by base offset). */
export function segments(dataDir: string, topic: string, partition: number): SegmentFiles[] {
  const dir = partitionDir(dataDir, topic, partition);
  const found: SegmentFiles[] = [];
  for (const name of readdirSync(dir)) {
    const base = SEGMENT_LOG.exec(name)?.[1];
    if (base === undefined) continue;
    found.push({ baseOffset: Number(base), log: join(dir, `${base}.log`), index: join(dir, `${base}.index`), timeIndex: join(dir, `${base}.timeindex`) });
  }
  return found.sort((a, b) => a.baseOffset - b.baseOffset);
}

/** The last segment: the one appends go to, and the one recovery rescans after a crash. */
export function activeSegment(dataDir: string, topic: string, partition: number): SegmentFiles {
  const all = segments(dataDir, topic, partition);
  const last = all[all.length - 1];
  if (last === undefined) throw new Error(`no segment in ${partitionDir(dataDir, topic, partition)}`);
  return last;
}

/** Every segment but the last. */
export function sealedSegments(dataDir: string, topic: string, partition: number): SegmentFiles[] {
  return segments(dataDir, topic, partition).slice(0, -1);
}

/** Segments below this offset are trusted at open without being read; undefined if none was written. */
export function recoveryPoint(dataDir: string, topic: string, partition: number): number | undefined {
  try {
    return Number(readFileSync(join(partitionDir(dataDir, topic, partition), 'recovery-point'), 'ascii').trim());
  } catch {
    return undefined;
  }
}

/** The batches of a .log file, walked by their length fields; stops at the first incomplete one. */
export function batchesIn(logFile: string): BatchLocation[] {
  const bytes = readFileSync(logFile);
  const out: BatchLocation[] = [];
  for (let position = 0; position + RECORDS_START <= bytes.length; ) {
    const size = bytes.readInt32BE(position + 8) + BATCH_OVERHEAD;
    if (size < RECORDS_START || position + size > bytes.length) break;
    const baseOffset = Number(bytes.readBigInt64BE(position));
    out.push({ position, size, baseOffset, lastOffset: baseOffset + bytes.readInt32BE(position + 23) });
    position += size;
  }
  return out;
}

/** Cuts the last `bytes` bytes off `file` (a write the crash interrupted). Returns the new size. */
export function tearTail(file: string, bytes: number): number {
  const size = statSync(file).size;
  if (bytes <= 0 || bytes > size) throw new Error(`cannot tear ${bytes} bytes off ${file} (${size} bytes)`);
  truncateSync(file, size - bytes);
  return size - bytes;
}

/** Appends `bytes` pseudo-random bytes (a deterministic function of `seed`) to `file`; returns them. */
export function appendGarbage(file: string, bytes: number, seed: number): Buffer {
  const random = seededRandom(seed);
  const garbage = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) garbage[i] = Math.floor(random() * 256);
  appendFileSync(file, garbage);
  return garbage;
}

/** Flips bit `bit` (0 = least significant) of the byte at `byteOffset` in `file`. */
export function flipBit(file: string, byteOffset: number, bit: number): void {
  if (!Number.isInteger(bit) || bit < 0 || bit > 7) throw new Error(`bit must be 0..7, got ${bit}`);
  const fd = openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    if (readSync(fd, byte, 0, 1, byteOffset) !== 1) throw new Error(`${file} has no byte ${byteOffset}`);
    byte[0] = byte[0]! ^ (1 << bit);
    writeSync(fd, byte, 0, 1, byteOffset);
  } finally {
    closeSync(fd);
  }
}

/**
 * Bit rot inside a record batch of a (sealed) segment: flips one bit, chosen by `seed`, in the
 * records of one batch, also chosen by `seed`. The records are covered by the batch CRC and
 * nothing there is legitimately ignored (unlike partitionLeaderEpoch, which the CRC does not
 * cover), so every reader must notice. Returns where it struck.
 */
export function flipBitInRecords(logFile: string, seed: number): { batch: BatchLocation; byteOffset: number; bit: number } {
  const batches = batchesIn(logFile).filter((b) => b.size > RECORDS_START);
  if (batches.length === 0) throw new Error(`${logFile} holds no batch with records`);
  const random = seededRandom(seed);
  const batch = batches[Math.floor(random() * batches.length)]!;
  const byteOffset = batch.position + RECORDS_START + Math.floor(random() * (batch.size - RECORDS_START));
  const bit = Math.floor(random() * 8);
  flipBit(logFile, byteOffset, bit);
  return { batch, byteOffset, bit };
}
