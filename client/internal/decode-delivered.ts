import { SluiceError } from '../protocol/errors.js';
import { BATCH_HEADER_SIZE, BATCH_OVERHEAD, decodeBatches, verifyBatch, type LogRecord, type RecordHeader } from '../protocol/record-batch.js';
import { readVarint, readVarlong, type Cursor } from '../protocol/varint.js';

/** Smallest record: length, attributes, timestampDelta, offsetDelta, key and value lengths, header count. */
const MIN_RECORD_SIZE = 7;
const NO_HEADERS: RecordHeader[] = [];
const EMPTY = Buffer.alloc(0);

function invalidRecord(message: string): SluiceError {
  return new SluiceError('INVALID_RECORD', message);
}

/**
 * The records a Deliver frame delivers, ascending. The frame carries whole stored batches, which
 * hold many more records than it delivers (a batch of thousands is sent again with every window
 * of its offsets), so only the delivered records are decoded: each batch is verified whole (CRC
 * and header, as decodeBatches does), records before a delivered one are skipped by their length,
 * and the walk stops after the batch's last delivered offset. A delivered record is checked as
 * decodeRecords checks it. Offsets out of order fall back to decoding everything.
 */
export function decodeDelivered(buf: Buffer, offsets: readonly number[]): LogRecord[] {
  for (let i = 1; i < offsets.length; i++) if ((offsets[i] as number) <= (offsets[i - 1] as number)) return decodeBatches(buf);
  const out: LogRecord[] = [];
  const cur: Cursor = { pos: 0 };
  let k = 0;
  for (let pos = 0; pos < buf.length; ) {
    const h = verifyBatch(buf, pos);
    const end = pos + h.batchLength + BATCH_OVERHEAD;
    const last = h.baseOffset + h.lastOffsetDelta;
    while (k < offsets.length && (offsets[k] as number) < h.baseOffset) k++;
    // verifyBatch checked lastOffsetDelta = recordCount - 1, and offset deltas must rise strictly
    // from 0 to it: record i has offsetDelta i, so records are skipped by counting.
    cur.pos = pos + BATCH_HEADER_SIZE;
    for (let i = 0; i < h.recordCount && k < offsets.length && (offsets[k] as number) <= last; i++) {
      const at = cur.pos;
      const length = readVarint(buf, cur, end);
      if (length < MIN_RECORD_SIZE - 1 || length > end - cur.pos) throw invalidRecord(`batch at byte ${pos}: record ${i}: length ${length} at byte ${at} does not fit the batch`);
      const recordEnd = cur.pos + length;
      if (h.baseOffset + i !== offsets[k]) {
        cur.pos = recordEnd;
        continue;
      }
      out.push(decodeRecord(buf, cur, recordEnd, h.baseOffset, h.baseTimestamp, i, pos));
      k++;
    }
    pos = end;
  }
  return out;
}

/** One record from `cur.pos` (past its length) to `recordEnd`, the i-th of the batch at `batchPos`. */
function decodeRecord(buf: Buffer, cur: Cursor, recordEnd: number, baseOffset: number, baseTimestamp: number, i: number, batchPos: number): LogRecord {
  const where = (): string => `batch at byte ${batchPos}: record ${i}`;
  cur.pos++; // attributes: unused in v2
  const timestampDelta = readVarlong(buf, cur, recordEnd);
  const offsetDelta = readVarint(buf, cur, recordEnd);
  if (offsetDelta !== i) throw invalidRecord(`${where()}: offsetDelta ${offsetDelta}, expected ${i}`);
  const key = readBytes(buf, cur, recordEnd, where, 'key');
  const value = readBytes(buf, cur, recordEnd, where, 'value');
  const headerCount = readVarint(buf, cur, recordEnd);
  if (headerCount < 0) throw invalidRecord(`${where()}: headerCount ${headerCount}`);
  let headers = NO_HEADERS;
  if (headerCount > 0) {
    headers = [];
    for (let h = 0; h < headerCount; h++) {
      const keyAt = cur.pos;
      const keyLength = readVarint(buf, cur, recordEnd);
      if (keyLength < 0 || keyLength > recordEnd - cur.pos) throw invalidRecord(`${where()}: header key length ${keyLength} at byte ${keyAt} does not fit the record`);
      const headerKey = buf.toString('utf8', cur.pos, cur.pos + keyLength);
      cur.pos += keyLength;
      // A null header value reads as empty, as in decodeRecords.
      headers.push({ key: headerKey, value: readBytes(buf, cur, recordEnd, where, 'header value') ?? EMPTY });
    }
  }
  if (cur.pos !== recordEnd) throw invalidRecord(`${where()}: ${recordEnd - cur.pos} bytes left over at byte ${cur.pos}`);
  const timestamp = baseTimestamp + timestampDelta;
  if (!Number.isSafeInteger(timestamp)) throw invalidRecord(`${where()}: timestamp is outside the safe integer range`);
  return { offset: baseOffset + i, timestamp, key, value, headers };
}

/** A nullable length-prefixed byte string, as a view into `buf`. */
function readBytes(buf: Buffer, cur: Cursor, end: number, where: () => string, what: string): Buffer | null {
  const at = cur.pos;
  const length = readVarint(buf, cur, end);
  if (length === -1) return null;
  if (length < -1 || length > end - cur.pos) throw invalidRecord(`${where()}: ${what} length ${length} at byte ${at} does not fit the record`);
  const bytes = buf.subarray(cur.pos, cur.pos + length);
  cur.pos += length;
  return bytes;
}
