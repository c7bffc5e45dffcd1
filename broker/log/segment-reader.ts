/**
 * The read path of one segment: find the batch holding an offset through the sparse index, then
 * return whole batches from there as one slice of one positional read.
 *
 * Every header on the way is checked against the offset it must carry, and every batch served
 * is CRC-checked unless its bytes are already known good (see verified-ranges.ts): a damaged
 * batch is never served. A read that reaches damage after serving at least one batch stops
 * short of it; a read that starts at damage fails with CORRUPT_RECORD. Either way, reads that
 * start past the damage (the next index entry onwards) keep working.
 */
import { SluiceError } from '../../client/protocol/errors.js';
import { BATCH_HEADER_SIZE, verifyBatch } from '../../client/protocol/record-batch.js';
import { type FrameHeader, checkBatchAt } from './batch-scan.js';
import { type FileHandle, readFully } from './file-io.js';
import type { IndexBuilder } from './index-builder.js';
import type { Segment } from './segment.js';

/** A read-ahead buffer over [start, start + buf.length) of one file. */
class Window {
  buf: Buffer = Buffer.alloc(0);
  start = 0;
  readonly #fh: FileHandle;
  readonly #fileEnd: number;
  readonly #readAhead: number;

  constructor(fh: FileHandle, fileEnd: number, readAhead: number) {
    this.#fh = fh;
    this.#fileEnd = fileEnd;
    this.#readAhead = readAhead;
  }

  /**
   * True when file bytes [from, from + length) are in the buffer. Callers check this before
   * `span`, which costs a promise and a microtask turn even when it has nothing to read.
   */
  has(from: number, length: number): boolean {
    return from >= this.start && from + length <= this.start + this.buf.length;
  }

  /** Makes file bytes [from, from + length) present; false if the file ends first. */
  async span(from: number, length: number): Promise<boolean> {
    if (this.has(from, length)) return true;
    if (from + length > this.#fileEnd) return false;
    const want = Math.min(this.#fileEnd - from, Math.max(length, this.#readAhead));
    const buf = Buffer.allocUnsafe(want);
    this.buf = buf.subarray(0, await readFully(this.#fh, buf, 0, want, from));
    this.start = from;
    return this.buf.length >= length;
  }
}

function corrupt(seg: Segment, offset: number, position: number, reason: string): SluiceError {
  seg.reportCorruption(position, offset, reason);
  return new SluiceError('CORRUPT_RECORD', `offset ${offset}: log segment ${seg.baseOffset} is damaged at byte ${position}: ${reason}`, {
    details: { offset, segment: seg.baseOffset, position },
  });
}

const INDEX_MISMATCH = Symbol('index mismatch');

interface Located {
  window: Window;
  position: number;
  expected: number;
}

/**
 * Walks from the index entry at or before `offset` to the batch holding it. Returns
 * INDEX_MISMATCH when the index entry itself points at the wrong bytes.
 */
async function locate(seg: Segment, indexes: IndexBuilder, offset: number, readAhead: number): Promise<Located | typeof INDEX_MISMATCH> {
  const entry = indexes.offsetIndex.floor(offset - seg.baseOffset);
  const window = new Window(await seg.handle(), seg.size, readAhead);
  let position = entry.position;
  let expected = seg.baseOffset + entry.relativeOffset;
  for (let first = true; ; first = false) {
    if (!window.has(position, BATCH_HEADER_SIZE) && !(await window.span(position, BATCH_HEADER_SIZE))) {
      throw corrupt(seg, offset, position, `the file ends before offset ${offset}`);
    }
    const header = checkBatchAt(window.buf, position - window.start, expected, false);
    if (typeof header === 'string') {
      if (first && entry.position > 0) return INDEX_MISMATCH;
      throw corrupt(seg, offset, position, header);
    }
    const last = header.baseOffset + header.lastOffsetDelta;
    if (last >= offset) return { window, position, expected };
    position += header.batchLength + 12;
    expected = last + 1;
  }
}

/**
 * Whole batches starting with the one holding `offset`, at most `maxBytes` unless the first is
 * bigger, none with a base offset at or past `limitOffset` (the high watermark).
 * The caller guarantees seg.baseOffset <= offset < min(seg.endOffset, limitOffset).
 */
export async function readFromSegment(
  seg: Segment,
  offset: number,
  maxBytes: number,
  limitOffset: number,
  indexIntervalBytes: number,
): Promise<Buffer> {
  // One read normally covers the walk from the index entry and the whole answer.
  const readAhead = Math.max(maxBytes, 0) + indexIntervalBytes + BATCH_HEADER_SIZE;
  let located = await locate(seg, await seg.indexes(), offset, readAhead);
  if (located === INDEX_MISMATCH) {
    const rebuilt = await seg.rebuildIndexes(`index entry before offset ${offset} points at the wrong batch`);
    located = rebuilt ? await locate(seg, rebuilt, offset, readAhead) : INDEX_MISMATCH;
    if (located === INDEX_MISMATCH) throw corrupt(seg, offset, 0, 'index and log disagree');
  }
  const { window } = located;
  const start = located.position;
  let position = start;
  let expected = located.expected;
  let total = 0;
  while (position < seg.size) {
    // Keep [start, position + header) in one buffer so the answer is a single slice.
    // The answer is normally in the buffer already: `has` first spares an await per check.
    const headerEnd = position - start + BATCH_HEADER_SIZE;
    if (!window.has(start, headerEnd) && !(await window.span(start, headerEnd))) break;
    const header = checkBatchAt(window.buf, position - window.start, expected, false);
    if (typeof header === 'string') {
      if (total === 0) throw corrupt(seg, offset, position, header);
      seg.reportCorruption(position, expected, header);
      break;
    }
    if (header.baseOffset >= limitOffset) break;
    const size = header.batchLength + 12;
    if (total > 0 && total + size > maxBytes) break;
    if (!window.has(start, position - start + size) && !(await window.span(start, position - start + size))) {
      if (total === 0) throw corrupt(seg, offset, position, 'the file ends inside the batch');
      break;
    }
    if (!seg.verified.covers(position, position + size)) {
      const bad = verifyOrReason(window.buf, position - window.start);
      if (bad !== undefined) {
        if (total === 0) throw corrupt(seg, offset, position, bad);
        seg.reportCorruption(position, header.baseOffset, bad);
        break;
      }
      seg.verified.add(position, position + size);
    }
    total += size;
    position += size;
    expected = header.baseOffset + header.lastOffsetDelta + 1;
  }
  const from = start - window.start;
  const slice = window.buf.subarray(from, from + total);
  // Do not pin a big read-ahead buffer behind a small answer that may sit in a queue for a while.
  return slice.length * 2 < window.buf.length ? Buffer.from(slice) : slice;
}

function verifyOrReason(buf: Buffer, pos: number): string | undefined {
  try {
    verifyBatch(buf, pos);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Base offset of the first batch below `limitOffset` whose maxTimestamp >= `timestamp`, or
 * undefined when this segment has none. Reads headers only, from the time index's hint onwards.
 */
export async function findOffsetByTimestamp(seg: Segment, timestamp: number, limitOffset: number): Promise<number | undefined> {
  const indexes = await seg.indexes();
  if (indexes.maxTimestamp < timestamp) return undefined;
  const relative = indexes.timeIndex.scanStart(timestamp);
  const entry = indexes.offsetIndex.floor(relative);
  const window = new Window(await seg.handle(), seg.size, 64 * 1024);
  let position = entry.position;
  let expected = seg.baseOffset + entry.relativeOffset;
  while (position < seg.size && expected < limitOffset) {
    if (!window.has(position, BATCH_HEADER_SIZE) && !(await window.span(position, BATCH_HEADER_SIZE))) break;
    const header: FrameHeader | string = checkBatchAt(window.buf, position - window.start, expected, false);
    if (typeof header === 'string') throw corrupt(seg, expected, position, header);
    if (header.maxTimestamp >= timestamp) return header.baseOffset;
    position += header.batchLength + 12;
    expected = header.baseOffset + header.lastOffsetDelta + 1;
  }
  return undefined;
}
