/**
 * The producer's record accumulator pieces: a RecordBatch v2 written record by record as sends
 * arrive (no per-record objects kept, values copied in at send time), and a coarse send clock.
 *
 * The bytes are exactly what `encodeRecordBatch` (client/protocol/record-batch.ts) produces for
 * the same records, header order included; the unit tests hold the two to that.
 */
import { Buffer } from 'node:buffer';
import { crc32c } from '../protocol/crc32c.js';
import { ATTR_TRANSACTIONAL, BATCH_HEADER_SIZE, BATCH_OVERHEAD, MAGIC } from '../protocol/record-batch.js';
import { writeVarlong, varlongSize } from '../protocol/varint.js';
import { writeInt64BE } from '../protocol/int64.js';

/** A record's value as the builder takes it: bytes, a string (written as UTF-8) or null. */
export type RecordValue = Buffer | string | null;

/**
 * Headers as the builder takes them: a flat list of key, value, key, value... Keys are strings,
 * values strings (written as UTF-8) or Buffers. One shared empty list for the common case.
 */
export type FlatHeaders = readonly (string | Buffer)[];
export const NO_HEADERS: FlatHeaders = Object.freeze([]) as FlatHeaders;

/**
 * What an idempotent (or transactional) producer writes into a batch header (docs/protocol.md,
 * "InitProducer"): its id and epoch, the sequence number of the batch's first record in its
 * partition, and whether the batch belongs to a transaction (the TRANSACTIONAL attribute).
 */
export interface ProducerStamp {
  readonly producerId: number;
  readonly producerEpoch: number;
  readonly baseSequence: number;
  readonly transactional: boolean;
}

/** Sequence numbers are int32 and wrap from 2^31 - 1 to 0, as Kafka's do. */
const SEQUENCE_SPACE = 0x8000_0000;

/** The sequence after `count` records from `sequence`: where a partition's next batch starts. */
export function advanceSequence(sequence: number, count: number): number {
  return (sequence + count) % SEQUENCE_SPACE;
}

/** Bytes of a record besides its per-batch fields: a record's encoded size is this plus at most 21. */
export const RECORD_FIXED_OVERHEAD = 21;

const ATTRIBUTES_OFFSET = 21;
const CRC_OFFSET = 17;
/** Timestamp deltas in [0, 2^29) take the int fast path below (zigzag 2n fits 30 bits). */
const SMALL_DELTA = 0x2000_0000;

/** Bytes of an unsigned varint `u` (u < 2^32). */
function uvarintSize(u: number): number {
  if (u < 0x80) return 1;
  if (u < 0x4000) return 2;
  if (u < 0x20_0000) return 3;
  if (u < 0x1000_0000) return 4;
  return 5;
}

/** Writes unsigned `u` (< 2^31) as a varint; the caller zigzagged it. */
function putUvarint(buf: Buffer, u: number, pos: number): number {
  while (u >= 0x80) {
    buf[pos++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[pos++] = u;
  return pos;
}

/** Zigzag varint bytes of a length field, -1 (null) included. */
function lengthFieldSize(length: number): number {
  return length < 0 ? 1 : uvarintSize(length * 2) + length;
}

/** UTF-8 bytes of a string or Buffer header part / value. */
function byteLength(v: string | Buffer): number {
  return typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
}

/**
 * The bytes of a record that do not depend on where it sits in its batch: key, value and
 * headers with their length fields. A record's encoded size is
 * `recordSize(fixed, timestampDelta, offsetDelta)`, at most `fixed + RECORD_FIXED_OVERHEAD`.
 */
export function recordFixedSize(key: Buffer | null, value: RecordValue, headers: FlatHeaders): number {
  let size = (key === null ? 1 : uvarintSize(key.length * 2) + key.length) + (value === null ? 1 : lengthFieldSize(byteLength(value)));
  const n = headers.length;
  size += uvarintSize(n); // header count n / 2, zigzagged: n
  for (let i = 0; i < n; i++) size += lengthFieldSize(byteLength(headers[i]!));
  return size;
}

function deltaSize(delta: number): number {
  return delta >= 0 && delta < SMALL_DELTA ? uvarintSize(delta * 2) : varlongSize(delta);
}

/**
 * One RecordBatch v2 being filled: records are written at append time into a buffer that
 * doubles as needed (up to the size the caller allows); `build()` fills in the header and the
 * CRC and returns the batch without copying it.
 */
export class BatchBuilder {
  #buf: Buffer;
  #pos = BATCH_HEADER_SIZE;
  #count = 0;
  #baseTimestamp = 0;
  #maxTimestamp = 0;
  #built: Buffer | undefined;

  constructor(capacity: number) {
    this.#buf = Buffer.allocUnsafe(Math.max(capacity, BATCH_HEADER_SIZE + 64));
  }

  /** Bytes so far, the batch header included: what `build()` will return. */
  get size(): number {
    return this.#pos;
  }

  get count(): number {
    return this.#count;
  }

  /** Encoded size of the next record appended with `fixed` (recordFixedSize) and `timestamp`. */
  recordSize(fixed: number, timestamp: number): number {
    const body = 1 + (this.#count === 0 ? 1 : deltaSize(timestamp - this.#baseTimestamp)) + uvarintSize(this.#count * 2) + fixed;
    return uvarintSize(body * 2) + body;
  }

  /**
   * Appends a record; returns the bytes it took. `fixed` must be recordFixedSize of the same
   * key, value and headers; `timestamp` a non-negative safe integer. The caller checked that the
   * record fits the batch it wants: this grows the buffer as needed.
   */
  append(key: Buffer | null, value: RecordValue, headers: FlatHeaders, timestamp: number, fixed: number): number {
    if (this.#built !== undefined) throw new Error('record batch already built');
    const index = this.#count;
    if (index === 0) {
      this.#baseTimestamp = timestamp;
      this.#maxTimestamp = timestamp;
    } else if (timestamp > this.#maxTimestamp) this.#maxTimestamp = timestamp;
    const delta = timestamp - this.#baseTimestamp;
    const small = delta >= 0 && delta < SMALL_DELTA;
    const body = 1 + (small ? uvarintSize(delta * 2) : varlongSize(delta)) + uvarintSize(index * 2) + fixed;
    const size = uvarintSize(body * 2) + body;
    const start = this.#pos;
    if (start + size > this.#buf.length) this.#grow(start + size);
    const buf = this.#buf;
    let pos = putUvarint(buf, body * 2, start);
    buf[pos++] = 0; // attributes
    pos = small ? putUvarint(buf, delta * 2, pos) : writeVarlong(buf, delta, pos);
    pos = putUvarint(buf, index * 2, pos);
    if (key === null) buf[pos++] = 1; // zigzag(-1)
    else {
      pos = putUvarint(buf, key.length * 2, pos);
      buf.set(key, pos);
      pos += key.length;
    }
    if (value === null) buf[pos++] = 1;
    else pos = putBytes(buf, value, pos);
    const n = headers.length;
    pos = putUvarint(buf, n, pos); // (n / 2) * 2
    for (let i = 0; i < n; i++) pos = putBytes(buf, headers[i]!, pos);
    if (pos !== start + size) throw new Error(`record sized ${size} bytes but wrote ${pos - start}`);
    this.#pos = pos;
    this.#count = index + 1;
    return size;
  }

  /**
   * The finished batch (baseOffset 0, CRC set). Without `stamp` it carries no producer id (-1, as
   * a plain Kafka producer writes it); with one, the producer's id, epoch, base sequence and the
   * TRANSACTIONAL attribute as asked. Appending afterwards throws; a second call returns the same
   * bytes whatever it is given, so a retried batch is always resent unchanged.
   */
  build(stamp?: ProducerStamp): Buffer {
    if (this.#built !== undefined) return this.#built;
    if (this.#count === 0) throw new Error('a record batch needs at least one record');
    const buf = this.#buf;
    const size = this.#pos;
    buf.fill(0, 0, 8); // baseOffset: the broker assigns it
    buf.writeInt32BE(size - BATCH_OVERHEAD, 8);
    buf.writeInt32BE(-1, 12); // partitionLeaderEpoch
    buf[16] = MAGIC;
    buf.writeInt16BE(stamp?.transactional === true ? ATTR_TRANSACTIONAL : 0, ATTRIBUTES_OFFSET);
    buf.writeInt32BE(this.#count - 1, 23);
    writeInt64BE(buf, this.#baseTimestamp, 27);
    writeInt64BE(buf, this.#maxTimestamp, 35);
    if (stamp === undefined) {
      buf.writeInt32BE(-1, 43); // producerId -1
      buf.writeInt32BE(-1, 47);
      buf.writeInt16BE(-1, 51); // producerEpoch
      buf.writeInt32BE(-1, 53); // baseSequence
    } else {
      writeInt64BE(buf, stamp.producerId, 43);
      buf.writeInt16BE(stamp.producerEpoch, 51);
      buf.writeInt32BE(stamp.baseSequence, 53);
    }
    buf.writeInt32BE(this.#count, 57);
    const batch = buf.subarray(0, size);
    batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    this.#built = batch;
    return batch;
  }

  #grow(needed: number): void {
    let capacity = this.#buf.length * 2;
    while (capacity < needed) capacity *= 2;
    const next = Buffer.allocUnsafe(capacity);
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
  }
}

function putBytes(buf: Buffer, v: string | Buffer, pos: number): number {
  if (typeof v === 'string') {
    const length = Buffer.byteLength(v, 'utf8');
    pos = putUvarint(buf, length * 2, pos);
    if (length > 0) buf.write(v, pos, length, 'utf8');
    return pos + length;
  }
  pos = putUvarint(buf, v.length * 2, pos);
  buf.set(v, pos);
  return pos + v.length;
}


/**
 * Milliseconds since the epoch, read once per turn of the event loop (and again every 256
 * reads within a long synchronous run) instead of once per call: Date.now() costs about as much
 * as the rest of a send. A send's default timestamp is thus its send() time to within one
 * synchronous run of the caller's code.
 */
let clockNow = 0;
let clockReads = 0;
let clockResetQueued = false;
function resetClock(): void {
  clockResetQueued = false;
  clockReads = 0;
}

export function sendClock(): number {
  if (clockReads === 0) {
    clockNow = Date.now();
    if (!clockResetQueued) {
      clockResetQueued = true;
      queueMicrotask(resetClock);
    }
  }
  clockReads = (clockReads + 1) & 255;
  return clockNow;
}
