import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasCode, isSluiceError } from '../../../../client/protocol/errors.js';
import {
  readVarint,
  readVarlong,
  varintSize,
  varlongSize,
  writeVarint,
  writeVarlong,
} from '../../../../client/protocol/varint.js';

const BUDGET = { interruptAfterTimeLimit: 10_000 };
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;

/** Reference zigzag encoder over BigInt (tests only), independent of the code under test. */
function referenceEncode(n: bigint): number[] {
  let z = n >= 0n ? n << 1n : ((-n) << 1n) - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return out;
}

/** Reference decoder: the value and byte count, or undefined when unterminated within maxBytes. */
function referenceDecode(bytes: Uint8Array, maxBytes: number): { value: bigint; size: number } | undefined {
  let z = 0n;
  for (let i = 0; i < Math.min(bytes.length, maxBytes); i++) {
    const b = bytes[i]!;
    z |= BigInt(b & 0x7f) << BigInt(7 * i);
    if (b < 0x80) return { value: (z >> 1n) ^ -(z & 1n), size: i + 1 };
  }
  return undefined;
}

function encodeInt(value: number): number[] {
  const buf = new Uint8Array(varintSize(value));
  expect(writeVarint(buf, value, 0)).toBe(buf.length);
  return [...buf];
}

function encodeLong(value: number): number[] {
  const buf = new Uint8Array(varlongSize(value));
  expect(writeVarlong(buf, value, 0)).toBe(buf.length);
  return [...buf];
}

function outcome(read: () => number): number | string {
  try {
    return read();
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return err.code;
  }
}

describe('varint (zigzag int32)', () => {
  it('matches known encodings', () => {
    expect(encodeInt(0)).toEqual([0x00]);
    expect(encodeInt(-1)).toEqual([0x01]);
    expect(encodeInt(1)).toEqual([0x02]);
    expect(encodeInt(63)).toEqual([0x7e]);
    expect(encodeInt(-64)).toEqual([0x7f]);
    expect(encodeInt(64)).toEqual([0x80, 0x01]);
    expect(encodeInt(300)).toEqual([0xd8, 0x04]);
    expect(encodeInt(INT32_MAX)).toEqual([0xfe, 0xff, 0xff, 0xff, 0x0f]);
    expect(encodeInt(INT32_MIN)).toEqual([0xff, 0xff, 0xff, 0xff, 0x0f]);
  });

  it('round-trips every int32 and sizes it exactly', () => {
    fc.assert(
      fc.property(fc.integer({ min: INT32_MIN, max: INT32_MAX }), fc.nat(4), (value, offset) => {
        const size = varintSize(value);
        expect(encodeInt(value)).toEqual(referenceEncode(BigInt(value)));
        const buf = new Uint8Array(offset + size + 3).fill(0xff);
        expect(writeVarint(buf, value, offset)).toBe(offset + size);
        const cur = { pos: offset };
        expect(readVarint(buf, cur, offset + size)).toBe(value);
        expect(cur.pos).toBe(offset + size);
      }),
      BUDGET,
    );
  });

  it('refuses to encode non-int32 values', () => {
    for (const bad of [INT32_MAX + 1, INT32_MIN - 1, 1.5, Number.NaN]) {
      expect(() => varintSize(bad)).toThrow(RangeError);
      expect(() => writeVarint(new Uint8Array(10), bad, 0)).toThrow(RangeError);
    }
  });

  it('rejects truncated, over-long and over-wide input with INVALID_RECORD', () => {
    const read = (bytes: number[], end = bytes.length) => outcome(() => readVarint(Uint8Array.from(bytes), { pos: 0 }, end));
    expect(read([])).toBe('INVALID_RECORD');
    expect(read([0x80])).toBe('INVALID_RECORD');
    // Bytes past `end` are never used to complete a varint.
    expect(read([0x80, 0x01], 1)).toBe('INVALID_RECORD');
    expect(read([0xff, 0xff, 0xff, 0xff, 0x10])).toBe('INVALID_RECORD');
    expect(read([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])).toBe('INVALID_RECORD');
    // A redundant (non-minimal) encoding is accepted, as Kafka does.
    expect(read([0x80, 0x00])).toBe(0);
  });

  it('agrees with the reference on arbitrary bytes and throws only SluiceError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 8 }), (bytes) => {
        const ref = referenceDecode(bytes, 5);
        const cur = { pos: 0 };
        const got = outcome(() => readVarint(bytes, cur, bytes.length));
        if (ref !== undefined && ref.value >= BigInt(INT32_MIN) && ref.value <= BigInt(INT32_MAX)) {
          expect(got).toBe(Number(ref.value));
          expect(cur.pos).toBe(ref.size);
        } else {
          expect(got).toBe('INVALID_RECORD');
        }
      }),
      BUDGET,
    );
  });
});

describe('varlong (zigzag int64, safe integers)', () => {
  it('matches known encodings', () => {
    expect(encodeLong(0)).toEqual([0x00]);
    expect(encodeLong(-1)).toEqual([0x01]);
    expect(encodeLong(2 ** 31)).toEqual([0x80, 0x80, 0x80, 0x80, 0x10]);
    expect(encodeLong(Number.MAX_SAFE_INTEGER)).toEqual(referenceEncode(BigInt(Number.MAX_SAFE_INTEGER)));
    expect(encodeLong(Number.MIN_SAFE_INTEGER)).toEqual(referenceEncode(BigInt(Number.MIN_SAFE_INTEGER)));
    expect(encodeLong(Number.MAX_SAFE_INTEGER)).toEqual([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f]);
  });

  const edges = [
    0, 1, -1, 63, -64, 64, -65, INT32_MAX, INT32_MIN, INT32_MAX + 1, INT32_MIN - 1, 2 ** 32, -(2 ** 32),
    2 ** 35 - 1, 2 ** 52, -(2 ** 52), Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER - 1, Number.MIN_SAFE_INTEGER + 1, 1_700_000_000_000, -1_700_000_000_000,
  ];
  const safeInts = fc.oneof(
    fc.constantFrom(...edges),
    fc.integer({ min: INT32_MIN, max: INT32_MAX }),
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  );

  it('round-trips every safe integer, matching the BigInt reference byte for byte', () => {
    fc.assert(
      fc.property(safeInts, fc.nat(4), (value, offset) => {
        const size = varlongSize(value);
        expect(encodeLong(value)).toEqual(referenceEncode(BigInt(value)));
        const buf = new Uint8Array(offset + size + 3).fill(0xff);
        expect(writeVarlong(buf, value, offset)).toBe(offset + size);
        const cur = { pos: offset };
        expect(readVarlong(buf, cur, offset + size)).toBe(value);
        expect(cur.pos).toBe(offset + size);
      }),
      { ...BUDGET, examples: edges.map((e) => [e, 0] as [number, number]) },
    );
  });

  it('refuses to encode unsafe values', () => {
    for (const bad of [2 ** 53, -(2 ** 53), 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => varlongSize(bad)).toThrow(RangeError);
      expect(() => writeVarlong(new Uint8Array(12), bad, 0)).toThrow(RangeError);
    }
  });

  it('rejects encodings of values outside the safe range instead of rounding them', () => {
    for (const big of [2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n)]) {
      const bytes = Uint8Array.from(referenceEncode(big));
      expect(outcome(() => readVarlong(bytes, { pos: 0 }, bytes.length))).toBe('INVALID_RECORD');
    }
  });

  it('rejects truncated and over-long input', () => {
    const read = (bytes: number[], end = bytes.length) => outcome(() => readVarlong(Uint8Array.from(bytes), { pos: 0 }, end));
    expect(read([])).toBe('INVALID_RECORD');
    expect(read([0x80, 0x80])).toBe('INVALID_RECORD');
    expect(read([0x80, 0x01], 1)).toBe('INVALID_RECORD');
    expect(read([...Array<number>(10).fill(0x80), 0x00])).toBe('INVALID_RECORD');
    expect(read([...Array<number>(9).fill(0x80), 0x00])).toBe(0);
  });

  it('agrees with the reference on arbitrary bytes and throws only SluiceError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (bytes) => {
        const ref = referenceDecode(bytes, 10);
        const cur = { pos: 0 };
        const got = outcome(() => readVarlong(bytes, cur, bytes.length));
        const safe = ref !== undefined && ref.value <= BigInt(Number.MAX_SAFE_INTEGER) && ref.value >= BigInt(Number.MIN_SAFE_INTEGER);
        if (safe) {
          expect(got).toBe(Number(ref.value));
          expect(cur.pos).toBe(ref.size);
        } else {
          expect(got).toBe('INVALID_RECORD');
        }
      }),
      BUDGET,
    );
  });

  it('reports errors as SluiceError INVALID_RECORD naming the byte', () => {
    try {
      readVarlong(Uint8Array.from([0, 0, 0x80]), { pos: 2 }, 3);
      expect.unreachable();
    } catch (err) {
      expect(hasCode(err, 'INVALID_RECORD')).toBe(true);
      expect((err as Error).message).toContain('at byte 2');
    }
  });
});
