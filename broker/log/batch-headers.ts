/**
 * Streaming scan of a partition's batch headers, for state that is rebuilt from the log (the
 * producer state after a crash: broker/txn/partition-producers.ts).
 *
 * It reads the log through PartitionLog.read, chunk by chunk, so it sees exactly what readers
 * see (CRC-checked batches, never past the high watermark) and needs nothing of the segment
 * internals. Records are never decoded, except the key of a control batch's first record
 * (4 bytes: the marker type).
 *
 * Damage in the middle of the log (a sealed segment: reads of that range fail with
 * CORRUPT_RECORD, see segment-reader.ts) is skipped, not fatal: the scan finds the first
 * readable offset after it (readability only grows with the offset: a read fails while the walk
 * from its index entry crosses the damage) by galloping then bisecting, reports the skipped
 * range through `onCorrupt`, and carries on. Other read errors are thrown.
 */
import { SluiceError, hasCode } from '../../client/protocol/errors.js';
import { ATTR_CONTROL, BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, BATCH_OVERHEAD, type BatchHeader, readBatchHeader } from '../../client/protocol/record-batch.js';
import { type Cursor, readVarint, readVarlong } from '../../client/protocol/varint.js';
import type { PartitionLog } from './partition-log.js';

/** What the scan needs of a log. */
export type HeaderSource = Pick<PartitionLog, 'read' | 'startOffset' | 'highWatermark'>;

export interface ScannedBatch {
  readonly header: BatchHeader;
  /** Offset of the batch's last record (header.baseOffset + header.lastOffsetDelta). */
  readonly lastOffset: number;
  /**
   * For a control batch, the key of its first record: a view into the read buffer, valid only
   * during the callback. null for other batches, or a control batch whose first record is unreadable.
   */
  readonly controlKey: Buffer | null;
}

export interface HeaderScanOptions {
  /** Bytes per read; default 1 MiB. A read always returns at least one whole batch. */
  readonly chunkBytes?: number;
  /** Scan up to here (exclusive); default the high watermark when the scan starts. */
  readonly toOffset?: number;
  /** Called for each damaged range skipped: [fromOffset, resumeOffset) was not read. */
  readonly onCorrupt?: (fromOffset: number, resumeOffset: number, err: SluiceError) => void;
}

export interface HeaderScanResult {
  /** Where the scan ended: one past the last offset it covered. */
  readonly endOffset: number;
  readonly batches: number;
  readonly bytes: number;
}

const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/**
 * Calls `visit` for every batch from the one holding `fromOffset` (batches that begin before
 * `fromOffset` are skipped: the caller has them) up to the high watermark, in log order.
 */
export async function scanBatchHeaders(
  log: HeaderSource,
  fromOffset: number,
  visit: (batch: ScannedBatch) => void,
  options: HeaderScanOptions = {},
): Promise<HeaderScanResult> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const to = Math.min(options.toOffset ?? log.highWatermark, log.highWatermark);
  // Batches starting below `fresh` were visited already (or precede the scan).
  let fresh = Math.max(fromOffset, log.startOffset);
  let offset = fresh;
  let batches = 0;
  let bytes = 0;
  while (offset < to) {
    let buf: Buffer;
    try {
      buf = await log.read(offset, chunkBytes);
    } catch (err) {
      if (!hasCode(err, 'CORRUPT_RECORD')) throw err;
      const resume = await firstReadable(log, offset + 1, to);
      options.onCorrupt?.(offset, resume, err);
      // `fresh` stays: the batch holding `resume` may begin before it, and is new.
      offset = resume;
      continue;
    }
    if (buf.length === 0) break;
    for (let pos = 0; pos < buf.length; ) {
      const header = readBatchHeader(buf, pos);
      const size = header.batchLength + BATCH_OVERHEAD;
      const lastOffset = header.baseOffset + header.lastOffsetDelta;
      if (header.baseOffset >= to) return { endOffset: to, batches, bytes };
      if (header.baseOffset >= fresh) {
        const controlKey = (header.attributes & ATTR_CONTROL) !== 0 ? controlRecordKey(buf, pos) : null;
        visit({ header, lastOffset, controlKey });
        batches++;
        bytes += size;
        fresh = lastOffset + 1;
      }
      offset = Math.max(offset, lastOffset + 1);
      pos += size;
    }
  }
  return { endOffset: offset, batches, bytes };
}

/** The first offset in [from, to) a read succeeds at, or `to`. */
async function firstReadable(log: HeaderSource, from: number, to: number): Promise<number> {
  const readable = async (offset: number): Promise<boolean> => {
    try {
      await log.read(offset, 1);
      return true;
    } catch (err) {
      if (hasCode(err, 'CORRUPT_RECORD')) return false;
      throw err;
    }
  };
  // Gallop to a readable offset, then bisect between it and the last unreadable one.
  let bad = from - 1;
  let step = 1;
  let good = to;
  for (let probe = from; probe < to; probe = bad + step) {
    if (await readable(probe)) {
      good = probe;
      break;
    }
    bad = probe;
    step *= 2;
  }
  while (good - bad > 1) {
    const mid = bad + Math.floor((good - bad) / 2);
    if (await readable(mid)) good = mid;
    else bad = mid;
  }
  return good;
}

/**
 * The key of the first record of the whole batch at `pos` (a view), or null when it does not
 * parse. The batch's CRC is not checked here.
 *
 *   Record => length varint, attributes int8, timestampDelta varlong, offsetDelta varint,
 *             keyLength varint, key bytes, ...
 */
export function controlRecordKey(buf: Buffer, pos = 0): Buffer | null {
  try {
    const end = Math.min(buf.length, pos + buf.readInt32BE(pos + BATCH_LENGTH_OFFSET) + BATCH_OVERHEAD);
    const cur: Cursor = { pos: pos + BATCH_HEADER_SIZE };
    const length = readVarint(buf, cur, end);
    const recordEnd = Math.min(end, cur.pos + length);
    cur.pos++;
    readVarlong(buf, cur, recordEnd);
    readVarint(buf, cur, recordEnd);
    const keyLength = readVarint(buf, cur, recordEnd);
    if (keyLength < 0 || cur.pos + keyLength > recordEnd) return null;
    return buf.subarray(cur.pos, cur.pos + keyLength);
  } catch {
    return null;
  }
}
