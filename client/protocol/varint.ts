/**
 * Zigzag varints as Kafka's record format uses them (the protobuf encoding: zigzag, then
 * little-endian groups of 7 bits, high bit set on every byte but the last).
 *
 *   varint   a signed int32, at most 5 bytes
 *   varlong  a signed int64, at most 10 bytes; here limited to JS safe integers
 *            (|n| <= 2^53 - 1), so timestamp deltas never lose precision and never need BigInt
 *
 * Writers take the position and return the next one. Readers advance a `Cursor` (one object
 * per decode call, not per value) and never read at or past `end`; any malformed input throws
 * SluiceError('INVALID_RECORD').
 */
import { SluiceError } from './errors.js';

/** A read position that the readers advance. */
export interface Cursor {
  pos: number;
}

function zigzag32(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}

function sizeOfUnsigned32(u: number): number {
  if (u < 0x80) return 1;
  if (u < 0x4000) return 2;
  if (u < 0x20_0000) return 3;
  if (u < 0x1000_0000) return 4;
  return 5;
}

function assertInt32(value: number): void {
  if ((value | 0) !== value) throw new RangeError(`varint value ${value} is not an int32`);
}

function assertSafe(value: number): void {
  if (!Number.isSafeInteger(value)) throw new RangeError(`varlong value ${value} is not a safe integer`);
}

/** Bytes `writeVarint(value)` takes. RangeError if `value` is not an int32. */
export function varintSize(value: number): number {
  assertInt32(value);
  return sizeOfUnsigned32(zigzag32(value));
}

/** Writes `value` (an int32) at `pos`; returns the position after it. The caller sized `buf`. */
export function writeVarint(buf: Uint8Array, value: number, pos: number): number {
  assertInt32(value);
  let u = zigzag32(value);
  while (u >= 0x80) {
    buf[pos++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[pos++] = u;
  return pos;
}

/** Bytes `writeVarlong(value)` takes. RangeError if `value` is not a safe integer. */
export function varlongSize(value: number): number {
  if ((value | 0) === value) return sizeOfUnsigned32(zigzag32(value));
  assertSafe(value);
  // zigzag(n) = 2m + sign with m = n or -n-1; the first byte carries 6 bits of m, every
  // further byte 7. Working on m keeps every intermediate value exact (m <= 2^53 - 1).
  let rest = Math.floor((value >= 0 ? value : -value - 1) / 64);
  let size = 1;
  while (rest > 0) {
    size++;
    rest = Math.floor(rest / 128);
  }
  return size;
}

/** Writes `value` (a safe integer) at `pos`; returns the position after it. */
export function writeVarlong(buf: Uint8Array, value: number, pos: number): number {
  if ((value | 0) === value) return writeVarint(buf, value, pos);
  assertSafe(value);
  const negative = value < 0;
  const m = negative ? -value - 1 : value;
  let rest = Math.floor(m / 64);
  const first = ((m % 64) << 1) | (negative ? 1 : 0);
  if (rest === 0) {
    buf[pos++] = first;
    return pos;
  }
  buf[pos++] = first | 0x80;
  while (rest >= 0x80) {
    buf[pos++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  buf[pos++] = rest;
  return pos;
}

function malformed(start: number, what: string): SluiceError {
  return new SluiceError('INVALID_RECORD', `${what} at byte ${start}`);
}

/** Reads a zigzag varint (int32) at `cur.pos`, not reading at or past `end`. */
export function readVarint(buf: Uint8Array, cur: Cursor, end: number): number {
  const start = cur.pos;
  let pos = start;
  let u = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (pos >= end) throw malformed(start, 'truncated varint');
    const b = buf[pos++]!;
    if (shift === 28 && b > 0x0f) throw malformed(start, 'varint longer than 32 bits');
    u |= (b & 0x7f) << shift;
    if (b < 0x80) {
      cur.pos = pos;
      u >>>= 0;
      return (u >>> 1) ^ -(u & 1);
    }
  }
  // Unreachable: the 5th byte either ends the varint or fails the 32-bit check above.
  throw malformed(start, 'varint longer than 5 bytes');
}

/** Reads a zigzag varlong at `cur.pos`; its value must be a safe integer. */
export function readVarlong(buf: Uint8Array, cur: Cursor, end: number): number {
  const start = cur.pos;
  let pos = start;
  if (pos >= end) throw malformed(start, 'truncated varlong');
  const b0 = buf[pos++]!;
  if (b0 < 0x80) {
    cur.pos = pos;
    return (b0 >>> 1) ^ -(b0 & 1);
  }
  // m = zigzag >>> 1 accumulated as a float: every term is an exact power-of-two multiple and
  // any partial sum above 2^53 - 1 rounds to >= 2^53, so the bound check below is exact.
  const negative = (b0 & 1) === 1;
  let m = (b0 & 0x7f) >>> 1;
  let scale = 64;
  for (let i = 1; i < 10; i++) {
    if (pos >= end) throw malformed(start, 'truncated varlong');
    const b = buf[pos++]!;
    m += (b & 0x7f) * scale;
    if (m > (negative ? Number.MAX_SAFE_INTEGER - 1 : Number.MAX_SAFE_INTEGER)) {
      throw malformed(start, 'varlong outside the safe integer range');
    }
    if (b < 0x80) {
      cur.pos = pos;
      return negative ? -m - 1 : m;
    }
    scale *= 128;
  }
  throw malformed(start, 'varlong longer than 10 bytes');
}
