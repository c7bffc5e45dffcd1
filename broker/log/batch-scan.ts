/**
 * Walking the batches of a segment file: the one loop recovery, index rebuilds and the sealed
 * segment tail check share. It reads big sequential chunks (never one syscall per batch) and
 * stops at the first byte that is not a good batch in sequence.
 */
import { BATCH_HEADER_SIZE, batchSizeAt, verifyBatch } from '../../client/protocol/record-batch.js';
import { type FileHandle, readFully } from './file-io.js';
import { readInt64BE } from '../../client/protocol/int64.js';

export interface ScanOptions {
  /** File size to scan up to. */
  fileSize: number;
  /** Position of the first batch to read (0, or an index entry's position). */
  from: number;
  /** The base offset the batch at `from` must carry. */
  expectedOffset: number;
  /** Check every batch's CRC and shape (recovery); otherwise only the framing fields. */
  verifyCrc: boolean;
  /** Called for each good batch, in order. */
  onBatch?: (header: FrameHeader, position: number, size: number) => void;
  /** Read size; default 1 MiB. */
  chunkBytes?: number;
}

export interface ScanResult {
  /** Position just past the last good batch: where the good prefix ends. */
  validEnd: number;
  /** The offset the next batch would get. */
  endOffset: number;
  /** Base offset of the last good batch, if any. */
  lastBatchOffset: number | undefined;
  /** Why the scan stopped before fileSize (undefined when it reached it). */
  problem: string | undefined;
}

/** The header fields the log walks by (a subset of the protocol's BatchHeader). */
export interface FrameHeader {
  baseOffset: number;
  batchLength: number;
  magic: number;
  lastOffsetDelta: number;
  maxTimestamp: number;
}


/** Reads just the walked fields: the read path does this for every batch it serves. */
function readFrame(buf: Buffer, pos: number): FrameHeader {
  return {
    baseOffset: readInt64BE(buf, pos),
    batchLength: buf.readInt32BE(pos + 8),
    magic: buf.readInt8(pos + 16),
    lastOffsetDelta: buf.readInt32BE(pos + 23),
    maxTimestamp: readInt64BE(buf, pos + 35),
  };
}

/**
 * Checks the batch framing at `pos` of `buf` (which must hold its whole header), against the
 * offset it must carry: returns the header or a reason it is not a batch here. With
 * `verifyCrc`, the whole batch must be in `buf` and is fully verified.
 */
export function checkBatchAt(buf: Buffer, pos: number, expectedOffset: number, verifyCrc: boolean): FrameHeader | string {
  let header: FrameHeader;
  try {
    header = verifyCrc ? verifyBatch(buf, pos) : readFrame(buf, pos);
  } catch (err) {
    return (err as Error).message;
  }
  if (header.magic !== 2) return `magic ${header.magic}`;
  if (header.batchLength + 12 < BATCH_HEADER_SIZE) return `batchLength ${header.batchLength}`;
  if (header.lastOffsetDelta < 0) return `lastOffsetDelta ${header.lastOffsetDelta}`;
  if (header.baseOffset !== expectedOffset) return `base offset ${header.baseOffset}, expected ${expectedOffset}`;
  return header;
}

export async function scanBatches(fh: FileHandle, options: ScanOptions): Promise<ScanResult> {
  const { fileSize, verifyCrc, onBatch } = options;
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;
  let pos = options.from;
  let expected = options.expectedOffset;
  let lastBatchOffset: number | undefined;
  let chunk = Buffer.alloc(0);
  let chunkStart = pos;
  const stop = (problem: string): ScanResult => ({ validEnd: pos, endOffset: expected, lastBatchOffset, problem });

  // True when file bytes [pos, pos + need) are in `chunk` (checked first: spares an await).
  const has = (need: number): boolean => pos + need <= chunkStart + chunk.length;
  // Makes them present, reading ahead a whole chunk.
  const fill = async (need: number): Promise<boolean> => {
    const want = Math.min(fileSize - pos, Math.max(chunkBytes, need));
    chunk = Buffer.allocUnsafe(want);
    chunk = chunk.subarray(0, await readFully(fh, chunk, 0, want, pos));
    chunkStart = pos;
    return chunk.length >= need;
  };

  while (pos < fileSize) {
    if (fileSize - pos < BATCH_HEADER_SIZE) return stop(`${fileSize - pos} bytes at ${pos}, less than a batch header`);
    if (!has(BATCH_HEADER_SIZE) && !(await fill(BATCH_HEADER_SIZE))) return stop(`file ended at ${pos}`);
    const size = batchSizeAt(chunk, pos - chunkStart) ?? 0;
    if (size < BATCH_HEADER_SIZE || size > fileSize - pos) {
      return stop(`batch at ${pos} claims ${size} bytes, ${fileSize - pos} remain`);
    }
    if (!has(size) && !(await fill(size))) return stop(`file ended inside the batch at ${pos}`);
    const header = checkBatchAt(chunk, pos - chunkStart, expected, verifyCrc);
    if (typeof header === 'string') return stop(`batch at ${pos}: ${header}`);
    onBatch?.(header, pos, size);
    lastBatchOffset = header.baseOffset;
    expected = header.baseOffset + header.lastOffsetDelta + 1;
    pos += size;
  }
  return { validEnd: pos, endOffset: expected, lastBatchOffset, problem: undefined };
}
