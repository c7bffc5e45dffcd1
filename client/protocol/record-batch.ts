/**
 * Record batches: Kafka's RecordBatch v2 (magic 2), the unit Sluice producers send, the log
 * stores and fetchers receive, all as the same bytes. See docs/record-batch.md.
 *
 * The CRC starts at `attributes`, so the broker can write the base offset (and leader epoch)
 * into a verified batch in place without recomputing it. Compressed batches are refused for now.
 *
 * 64-bit fields are JS numbers: they are read and written as two 32-bit halves (no BigInt on the
 * hot path) and must be safe integers; a field outside that range is INVALID_RECORD.
 */
import { Buffer } from 'node:buffer';
import { crc32c } from './crc32c.js';
import { SluiceError } from './errors.js';
import { type Cursor, readVarint, readVarlong, varintSize, varlongSize, writeVarint, writeVarlong } from './varint.js';
import { readInt64BE, writeInt64BE } from './int64.js';

export const BATCH_HEADER_SIZE = 61; // bytes before the first record
export const BATCH_LENGTH_OFFSET = 8; // where the int32 batchLength sits
export const BATCH_OVERHEAD = 12; // baseOffset + batchLength: bytes batchLength does not count
export const MAGIC = 2;
export const ATTR_TRANSACTIONAL = 0x10;
export const ATTR_CONTROL = 0x20;

/** Attribute bits 0-2: the compression codec. Only 0 (none) is accepted for now. */
const ATTR_COMPRESSION_MASK = 0x07;
const PARTITION_LEADER_EPOCH_OFFSET = 12;
const MAGIC_OFFSET = 16;
const CRC_OFFSET = 17;
const ATTRIBUTES_OFFSET = 21; // also where the CRC-covered bytes begin
const MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - BATCH_OVERHEAD; // 49: a header and no records
/** The smallest record: length, attributes, timestampDelta, offsetDelta, key, value and header count, one byte each. */
const MIN_RECORD_SIZE = 7;
const MAX_BATCH_LENGTH = 0x7fff_ffff;
const EMPTY = Buffer.alloc(0);

export interface RecordHeader {
  readonly key: string;
  readonly value: Buffer;
}

export interface RecordInput {
  readonly key?: Buffer | null;
  readonly value: Buffer | null;
  readonly headers?: readonly RecordHeader[];
  /** Milliseconds since the epoch; defaults to Date.now() at encoding. */
  readonly timestamp?: number;
}

export interface BatchOptions {
  /** Default 0; the broker overwrites it with setBaseOffset on append. */
  baseOffset?: number;
  /** Default -1 (none), as Kafka producers send it. */
  partitionLeaderEpoch?: number;
  /** Default 0. Compression bits (0-2) must be 0 and bit 15 is refused (attributes are int16). */
  attributes?: number;
  /** Default -1 (not idempotent). */
  producerId?: number;
  /** Default -1. */
  producerEpoch?: number;
  /** Default -1. */
  baseSequence?: number;
}

export interface BatchHeader {
  baseOffset: number;
  batchLength: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export interface LogRecord {
  offset: number;
  timestamp: number;
  /** A view into the decoded batch (no copy), or null. */
  key: Buffer | null;
  /** A view into the decoded batch (no copy), or null. */
  value: Buffer | null;
  headers: RecordHeader[];
}

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_RECORD', message);
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

function readSafeInt64BE(buf: Buffer, at: number, field: string, pos: number): number {
  const value = readInt64BE(buf, at);
  // Any int64 above 2^53 - 1 in magnitude rounds to a non-safe double, so this check is exact.
  if (!Number.isSafeInteger(value)) throw invalid(`batch at byte ${pos}: ${field} is outside the safe integer range`);
  return value;
}

function checkOption(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${name} ${value} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function lengthSize(length: number): number {
  if (length > MAX_BATCH_LENGTH) throw new SluiceError('RECORD_TOO_LARGE', `a field of ${length} bytes cannot be framed`);
  return varintSize(length);
}

function checkBytes(value: unknown, what: string, index: number): void {
  if (!(value instanceof Uint8Array)) throw invalid(`record ${index}: ${what} must be a Buffer`);
}

/*
 * Wire grammar (big-endian; varint/varlong are zigzag, see varint.ts):
 *
 * RecordBatch =>
 *   baseOffset int64             @0   first offset of the batch; set by the broker on append
 *   batchLength int32            @8   bytes after this field (total size - 12)
 *   partitionLeaderEpoch int32   @12
 *   magic int8                   @16  always 2
 *   crc uint32                   @17  CRC-32C of bytes [21, end)
 *   attributes int16             @21  bits 0-2 compression (must be 0), 3 timestamp type,
 *                                     4 transactional, 5 control
 *   lastOffsetDelta int32        @23  recordCount - 1
 *   baseTimestamp int64          @27  timestamp of the first record
 *   maxTimestamp int64           @35  largest record timestamp
 *   producerId int64             @43  -1 unless idempotent
 *   producerEpoch int16          @51
 *   baseSequence int32           @53
 *   recordCount int32            @57
 *   records [Record]             @61  recordCount times, back to back
 *
 * Record =>
 *   length varint                bytes of the record after this field
 *   attributes int8              unused, 0
 *   timestampDelta varlong       timestamp - baseTimestamp
 *   offsetDelta varint           offset - baseOffset
 *   keyLength varint             -1 for a null key
 *   key bytes
 *   valueLength varint           -1 for a null value
 *   value bytes
 *   headerCount varint
 *   headers [Header]
 *
 * Header =>
 *   headerKeyLength varint
 *   headerKey UTF-8 bytes
 *   headerValueLength varint
 *   headerValue bytes
 *
 * The encoder sizes everything first and fills one allocation; keys and values are copied
 * straight into it and header keys are encoded into it with Buffer#write.
 */

/**
 * Encodes `records` as one batch with offset deltas 0..n-1. Throws SluiceError('INVALID_RECORD')
 * for an empty list, a bad option or a record field of the wrong type, and
 * SluiceError('RECORD_TOO_LARGE') when the batch would not fit batchLength's int32.
 */
export function encodeRecordBatch(records: readonly RecordInput[], options: BatchOptions = {}): Buffer {
  const count = records.length;
  if (count === 0) throw invalid('a record batch needs at least one record');
  const baseOffset = checkOption('baseOffset', options.baseOffset ?? 0, 0, Number.MAX_SAFE_INTEGER);
  const leaderEpoch = checkOption('partitionLeaderEpoch', options.partitionLeaderEpoch ?? -1, -0x8000_0000, 0x7fff_ffff);
  const attributes = checkOption('attributes', options.attributes ?? 0, 0, 0x7fff);
  if ((attributes & ATTR_COMPRESSION_MASK) !== 0) throw invalid(`attributes ${hex32(attributes)}: compression is not supported`);
  const producerId = checkOption('producerId', options.producerId ?? -1, -1, Number.MAX_SAFE_INTEGER);
  const producerEpoch = checkOption('producerEpoch', options.producerEpoch ?? -1, -1, 0x7fff);
  const baseSequence = checkOption('baseSequence', options.baseSequence ?? -1, -1, 0x7fff_ffff);

  // Pass 1: exact size. Body sizes and header key byte lengths are kept for pass 2.
  const now = Date.now();
  const baseTimestamp = records[0]!.timestamp ?? now;
  let maxTimestamp = baseTimestamp;
  const bodySizes = new Int32Array(count);
  const headerKeyLengths: number[] = [];
  let size = BATCH_HEADER_SIZE;
  for (let i = 0; i < count; i++) {
    const r = records[i]!;
    const timestamp = r.timestamp ?? now;
    const delta = timestamp - baseTimestamp;
    if (!Number.isSafeInteger(timestamp) || !Number.isSafeInteger(delta)) {
      throw invalid(`record ${i}: timestamp ${timestamp} is not a safe integer within 2^53 of the first`);
    }
    if (timestamp > maxTimestamp) maxTimestamp = timestamp;
    let body = 1 + varlongSize(delta) + varintSize(i);
    const key = r.key ?? null;
    if (key === null) body += 1;
    else {
      checkBytes(key, 'key', i);
      body += lengthSize(key.length) + key.length;
    }
    const value = r.value;
    if (value === null) body += 1;
    else {
      checkBytes(value, 'value', i);
      body += lengthSize(value.length) + value.length;
    }
    const headers = r.headers;
    const headerCount = headers === undefined ? 0 : headers.length;
    body += varintSize(headerCount);
    for (let h = 0; h < headerCount; h++) {
      const header = headers![h]!;
      if (typeof header.key !== 'string') throw invalid(`record ${i}: header ${h} key must be a string`);
      checkBytes(header.value, `header ${h} value`, i);
      const keyLength = Buffer.byteLength(header.key, 'utf8');
      headerKeyLengths.push(keyLength);
      body += lengthSize(keyLength) + keyLength + lengthSize(header.value.length) + header.value.length;
    }
    if (body > MAX_BATCH_LENGTH) throw new SluiceError('RECORD_TOO_LARGE', `record ${i} is ${body} bytes`);
    bodySizes[i] = body;
    size += varintSize(body) + body;
    if (size - BATCH_OVERHEAD > MAX_BATCH_LENGTH) {
      throw new SluiceError('RECORD_TOO_LARGE', `batch exceeds ${MAX_BATCH_LENGTH} bytes at record ${i}`);
    }
  }

  // Pass 2: fill. Every byte is written (asserted below), so allocUnsafe leaks nothing.
  const buf = Buffer.allocUnsafe(size);
  writeInt64BE(buf, baseOffset, 0);
  buf.writeInt32BE(size - BATCH_OVERHEAD, BATCH_LENGTH_OFFSET);
  buf.writeInt32BE(leaderEpoch, PARTITION_LEADER_EPOCH_OFFSET);
  buf[MAGIC_OFFSET] = MAGIC;
  buf.writeInt16BE(attributes, ATTRIBUTES_OFFSET);
  buf.writeInt32BE(count - 1, 23);
  writeInt64BE(buf, baseTimestamp, 27);
  writeInt64BE(buf, maxTimestamp, 35);
  writeInt64BE(buf, producerId, 43);
  buf.writeInt16BE(producerEpoch, 51);
  buf.writeInt32BE(baseSequence, 53);
  buf.writeInt32BE(count, 57);

  let pos = BATCH_HEADER_SIZE;
  let keyIndex = 0;
  for (let i = 0; i < count; i++) {
    const r = records[i]!;
    pos = writeVarint(buf, bodySizes[i]!, pos);
    buf[pos++] = 0;
    pos = writeVarlong(buf, (r.timestamp ?? now) - baseTimestamp, pos);
    pos = writeVarint(buf, i, pos);
    const key = r.key ?? null;
    if (key === null) buf[pos++] = 1; // zigzag(-1)
    else {
      pos = writeVarint(buf, key.length, pos);
      buf.set(key, pos);
      pos += key.length;
    }
    const value = r.value;
    if (value === null) buf[pos++] = 1;
    else {
      pos = writeVarint(buf, value.length, pos);
      buf.set(value, pos);
      pos += value.length;
    }
    const headers = r.headers;
    const headerCount = headers === undefined ? 0 : headers.length;
    pos = writeVarint(buf, headerCount, pos);
    for (let h = 0; h < headerCount; h++) {
      const header = headers![h]!;
      const keyLength = headerKeyLengths[keyIndex++]!;
      pos = writeVarint(buf, keyLength, pos);
      if (keyLength > 0) buf.write(header.key, pos, keyLength, 'utf8');
      pos += keyLength;
      pos = writeVarint(buf, header.value.length, pos);
      buf.set(header.value, pos);
      pos += header.value.length;
    }
  }
  if (pos !== size) throw new Error(`record batch encoder sized ${size} bytes but wrote ${pos}`);
  buf.writeUInt32BE(crc32c(buf.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
  return buf;
}

/**
 * Total bytes of the batch at `pos` (batchLength + 12), or undefined when fewer than 12 bytes
 * remain. Does not validate: the result may be negative, under 61 or past the end of `buf`.
 */
export function batchSizeAt(buf: Buffer, pos: number): number | undefined {
  if (buf.length - pos < BATCH_OVERHEAD) return undefined;
  return buf.readInt32BE(pos + BATCH_LENGTH_OFFSET) + BATCH_OVERHEAD;
}

function checkHeaderRoom(buf: Buffer, pos: number): void {
  if (!Number.isInteger(pos) || pos < 0) throw new RangeError(`batch position ${pos} is not a non-negative integer`);
  const available = buf.length - pos;
  if (available < BATCH_HEADER_SIZE) {
    throw invalid(`batch at byte ${pos}: ${Math.max(available, 0)} bytes, a batch header takes ${BATCH_HEADER_SIZE}`);
  }
}

/**
 * Reads the header fields of the batch at `pos` without checking them. INVALID_RECORD if fewer
 * than 61 bytes remain or a 64-bit field is not a safe integer.
 */
export function readBatchHeader(buf: Buffer, pos = 0): BatchHeader {
  checkHeaderRoom(buf, pos);
  return {
    baseOffset: readSafeInt64BE(buf, pos, 'baseOffset', pos),
    batchLength: buf.readInt32BE(pos + BATCH_LENGTH_OFFSET),
    partitionLeaderEpoch: buf.readInt32BE(pos + PARTITION_LEADER_EPOCH_OFFSET),
    magic: buf.readInt8(pos + MAGIC_OFFSET),
    crc: buf.readUInt32BE(pos + CRC_OFFSET),
    attributes: buf.readInt16BE(pos + ATTRIBUTES_OFFSET),
    lastOffsetDelta: buf.readInt32BE(pos + 23),
    baseTimestamp: readSafeInt64BE(buf, pos + 27, 'baseTimestamp', pos),
    maxTimestamp: readSafeInt64BE(buf, pos + 35, 'maxTimestamp', pos),
    producerId: readSafeInt64BE(buf, pos + 43, 'producerId', pos),
    producerEpoch: buf.readInt16BE(pos + 51),
    baseSequence: buf.readInt32BE(pos + 53),
    recordCount: buf.readInt32BE(pos + 57),
  };
}

/**
 * Checks the fields outside the CRC (room for the header, batchLength, magic) and returns the
 * batch's total size. Magic comes before the CRC because the CRC's coverage depends on it.
 */
function checkFrame(buf: Buffer, pos: number): number {
  checkHeaderRoom(buf, pos);
  const batchLength = buf.readInt32BE(pos + BATCH_LENGTH_OFFSET);
  if (batchLength < MIN_BATCH_LENGTH) {
    throw invalid(`batch at byte ${pos}: batchLength ${batchLength} is under the minimum ${MIN_BATCH_LENGTH}`);
  }
  const size = batchLength + BATCH_OVERHEAD;
  if (size > buf.length - pos) {
    throw invalid(`batch at byte ${pos}: batchLength ${batchLength} needs ${size} bytes, ${buf.length - pos} remain`);
  }
  const magic = buf.readInt8(pos + MAGIC_OFFSET);
  if (magic !== MAGIC) throw invalid(`batch at byte ${pos}: magic ${magic}, expected ${MAGIC}`);
  return size;
}

/** Checks the CRC-covered header fields; run only after the CRC matched (or by decodeRecords). */
function checkContents(header: BatchHeader, pos: number): void {
  if ((header.attributes & ATTR_COMPRESSION_MASK) !== 0) {
    throw invalid(`batch at byte ${pos}: compression codec ${header.attributes & ATTR_COMPRESSION_MASK} is not supported`);
  }
  const { recordCount, lastOffsetDelta } = header;
  if (recordCount < 1) throw invalid(`batch at byte ${pos}: recordCount ${recordCount} is under 1`);
  if (lastOffsetDelta !== recordCount - 1) {
    throw invalid(`batch at byte ${pos}: lastOffsetDelta ${lastOffsetDelta} != recordCount - 1 (${recordCount - 1})`);
  }
  const recordBytes = header.batchLength - MIN_BATCH_LENGTH;
  if (recordCount > recordBytes / MIN_RECORD_SIZE) {
    throw invalid(`batch at byte ${pos}: ${recordCount} records cannot fit in ${recordBytes} bytes`);
  }
  if (!Number.isSafeInteger(header.baseOffset + lastOffsetDelta)) {
    throw invalid(`batch at byte ${pos}: last offset is outside the safe integer range`);
  }
}

/**
 * Fully checks the one batch at `pos` (see docs/record-batch.md, "What the broker checks") and
 * returns its header. CRC mismatch: SluiceError('CORRUPT_RECORD'); any other problem:
 * SluiceError('INVALID_RECORD'). Every check of a CRC-covered field runs after the CRC, so a
 * damaged byte there is always reported as corruption. Record framing is not walked here;
 * decodeRecords does that.
 */
export function verifyBatch(buf: Buffer, pos = 0): BatchHeader {
  const size = checkFrame(buf, pos);
  const stored = buf.readUInt32BE(pos + CRC_OFFSET);
  const computed = crc32c(buf.subarray(pos + ATTRIBUTES_OFFSET, pos + size));
  if (stored !== computed) {
    throw new SluiceError('CORRUPT_RECORD', `batch at byte ${pos}: crc ${hex32(stored)} != computed ${hex32(computed)}`);
  }
  const header = readBatchHeader(buf, pos);
  checkContents(header, pos);
  return header;
}

/** Writes `baseOffset` into the batch at `pos` in place. The CRC does not cover it. */
export function setBaseOffset(buf: Buffer, baseOffset: number, pos = 0): void {
  checkHeaderRoom(buf, pos);
  checkOption('baseOffset', baseOffset, 0, Number.MAX_SAFE_INTEGER);
  writeInt64BE(buf, baseOffset, pos);
}

/** Reads a nullable length-prefixed byte string; with `view` false only checks and skips it. */
function readBytes(buf: Buffer, cur: Cursor, end: number, what: string, view = true): Buffer | null {
  const at = cur.pos;
  const length = readVarint(buf, cur, end);
  if (length === -1) return null;
  if (length < -1 || length > end - cur.pos) {
    throw invalid(`${what} length ${length} at byte ${at} does not fit the record`);
  }
  const bytes = view ? buf.subarray(cur.pos, cur.pos + length) : EMPTY;
  cur.pos += length;
  return bytes;
}

/**
 * Walks the records of an already checked batch, checking every record's framing. With `out`,
 * appends the decoded records to it; with null, only checks (no allocation per record), which is
 * what the broker does to each produced batch.
 */
function decodeInto(buf: Buffer, pos: number, header: BatchHeader, out: LogRecord[] | null): void {
  const end = pos + header.batchLength + BATCH_OVERHEAD;
  const { baseOffset, baseTimestamp, lastOffsetDelta, recordCount } = header;
  const cur: Cursor = { pos: pos + BATCH_HEADER_SIZE };
  let previousDelta = -1;
  let i = 0;
  try {
    for (; i < recordCount; i++) {
      const at = cur.pos;
      const length = readVarint(buf, cur, end);
      if (length < MIN_RECORD_SIZE - 1 || length > end - cur.pos) {
        throw invalid(`length ${length} at byte ${at} does not fit the batch`);
      }
      const recordEnd = cur.pos + length;
      cur.pos++; // attributes: unused in v2
      const timestampDelta = readVarlong(buf, cur, recordEnd);
      const offsetDelta = readVarint(buf, cur, recordEnd);
      if (offsetDelta <= previousDelta || offsetDelta > lastOffsetDelta) {
        throw invalid(`offsetDelta ${offsetDelta} after ${previousDelta}, lastOffsetDelta ${lastOffsetDelta}`);
      }
      previousDelta = offsetDelta;
      const view = out !== null;
      const key = readBytes(buf, cur, recordEnd, 'key', view);
      const value = readBytes(buf, cur, recordEnd, 'value', view);
      const headerCount = readVarint(buf, cur, recordEnd);
      if (headerCount < 0) throw invalid(`headerCount ${headerCount}`);
      const headers: RecordHeader[] = [];
      for (let h = 0; h < headerCount; h++) {
        const keyAt = cur.pos;
        const keyLength = readVarint(buf, cur, recordEnd);
        if (keyLength < 0 || keyLength > recordEnd - cur.pos) {
          throw invalid(`header key length ${keyLength} at byte ${keyAt} does not fit the record`);
        }
        const headerKey = view ? buf.toString('utf8', cur.pos, cur.pos + keyLength) : '';
        cur.pos += keyLength;
        // Kafka allows a null header value; our RecordHeader has none, so it reads as empty.
        const headerValue = readBytes(buf, cur, recordEnd, 'header value', view) ?? EMPTY;
        if (view) headers.push({ key: headerKey, value: headerValue });
      }
      if (cur.pos !== recordEnd) throw invalid(`${recordEnd - cur.pos} bytes left over at byte ${cur.pos}`);
      const timestamp = baseTimestamp + timestampDelta;
      if (!Number.isSafeInteger(timestamp)) throw invalid(`timestamp is outside the safe integer range`);
      out?.push({ offset: baseOffset + offsetDelta, timestamp, key, value, headers });
    }
  } catch (err) {
    if (err instanceof SluiceError) {
      throw new SluiceError(err.code, `batch at byte ${pos}: record ${i}: ${err.message}`, { cause: err });
    }
    throw err;
  }
  if (cur.pos !== end) throw invalid(`batch at byte ${pos}: ${end - cur.pos} bytes after the last record`);
}

/**
 * The records of the one batch at `pos`, with absolute offsets and timestamps. Checks the
 * batch's shape and every record's framing (INVALID_RECORD, never a read outside the batch) but
 * not the CRC: call verifyBatch first on untrusted bytes. Keys and values are views into `batch`.
 */
export function decodeRecords(batch: Buffer, pos = 0): LogRecord[] {
  checkFrame(batch, pos);
  const header = readBatchHeader(batch, pos);
  checkContents(header, pos);
  const out: LogRecord[] = [];
  decodeInto(batch, pos, header, out);
  return out;
}

/**
 * Checks the framing of every record of the one batch at `pos` (as decodeRecords does) without
 * building them: no consumer can later be handed a batch it cannot decode. Not the CRC.
 */
export function checkRecords(batch: Buffer, pos = 0): void {
  checkFrame(batch, pos);
  const header = readBatchHeader(batch, pos);
  checkContents(header, pos);
  decodeInto(batch, pos, header, null);
}

/**
 * All records of back-to-back batches, in order, each batch verified (CRC included). Trailing
 * bytes that are not a whole batch are INVALID_RECORD. Control batches are returned like any
 * other: filter on readBatchHeader(...).attributes & ATTR_CONTROL if that matters.
 */
export function decodeBatches(buf: Buffer): LogRecord[] {
  const out: LogRecord[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const header = verifyBatch(buf, pos);
    decodeInto(buf, pos, header, out);
    pos += header.batchLength + BATCH_OVERHEAD;
  }
  return out;
}
