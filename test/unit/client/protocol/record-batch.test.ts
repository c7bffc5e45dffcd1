import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../../../client/protocol/crc32c.js';
import { hasCode, isSluiceError } from '../../../../client/protocol/errors.js';
import {
  ATTR_CONTROL,
  ATTR_TRANSACTIONAL,
  BATCH_HEADER_SIZE,
  BATCH_LENGTH_OFFSET,
  BATCH_OVERHEAD,
  type BatchOptions,
  type LogRecord,
  MAGIC,
  type RecordInput,
  batchSizeAt,
  decodeBatches,
  decodeRecords,
  encodeRecordBatch,
  readBatchHeader,
  setBaseOffset,
  verifyBatch,
} from '../../../../client/protocol/record-batch.js';

const BUDGET = { interruptAfterTimeLimit: 15_000 };

// ---- helpers -------------------------------------------------------------------------------

/** Runs `fn`; returns 'ok' or the SluiceError code. Anything else escapes and fails the test. */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return err.code;
  }
}

/** Recomputes and stores the CRC of the batch at `pos`, so a mutation gets past the CRC check. */
function fixCrc(buf: Buffer, pos = 0): void {
  const size = buf.readInt32BE(pos + BATCH_LENGTH_OFFSET) + BATCH_OVERHEAD;
  buf.writeUInt32BE(crc32c(buf.subarray(pos + 21, pos + size)), pos + 17);
}

const hex = (b: Buffer | null) => (b === null ? null : b.toString('hex'));

function plain(records: readonly LogRecord[]) {
  return records.map((r) => ({
    offset: r.offset,
    timestamp: r.timestamp,
    key: hex(r.key),
    value: hex(r.value),
    headers: r.headers.map((h) => ({ key: h.key, value: h.value.toString('hex') })),
  }));
}

function expected(inputs: readonly RecordInput[], baseOffset: number) {
  return inputs.map((r, i) => ({
    offset: baseOffset + i,
    timestamp: r.timestamp,
    key: hex(r.key ?? null),
    value: hex(r.value),
    headers: (r.headers ?? []).map((h) => ({ key: h.key, value: h.value.toString('hex') })),
  }));
}

// ---- arbitraries ---------------------------------------------------------------------------

const bytes = fc.uint8Array({ maxLength: 48 }).map((u) => Buffer.from(u));
const header = fc.record({ key: fc.string({ unit: 'binary', maxLength: 6 }), value: bytes });
const timestamp = fc.oneof(
  fc.integer({ min: 1_600_000_000_000, max: 1_800_000_000_000 }),
  // Any two must differ by a safe integer (the varlong delta), so stay within +-(2^52 - 1).
  fc.integer({ min: -(2 ** 52 - 1), max: 2 ** 52 - 1 }),
  fc.constantFrom(0, -1, 2 ** 52 - 1, -(2 ** 52 - 1)),
);
const recordInput: fc.Arbitrary<RecordInput> = fc.record({
  key: fc.option(bytes, { nil: null }),
  value: fc.option(bytes, { nil: null }),
  headers: fc.array(header, { maxLength: 3 }),
  timestamp,
});
const records = fc.array(recordInput, { minLength: 1, maxLength: 12 });
const options: fc.Arbitrary<Required<BatchOptions>> = fc.record({
  baseOffset: fc.oneof(fc.nat(1_000_000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 100 })),
  partitionLeaderEpoch: fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }),
  attributes: fc.constantFrom(0, 0x08, ATTR_TRANSACTIONAL, ATTR_CONTROL, ATTR_TRANSACTIONAL | ATTR_CONTROL),
  producerId: fc.oneof(fc.constant(-1), fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER })),
  producerEpoch: fc.integer({ min: -1, max: 0x7fff }),
  baseSequence: fc.integer({ min: -1, max: 0x7fff_ffff }),
});
const batch = fc.tuple(records, options).map(([rs, opts]) => ({ rs, opts, buf: encodeRecordBatch(rs, opts) }));

// ---- the pinned layout ---------------------------------------------------------------------

describe('known bytes (hand-computed from the RecordBatch v2 spec)', () => {
  // One record: key "k", value "hello", header "ü" -> 0x2a, timestamp 1700000000000
  // (0x0000018B_CFE56800), baseOffset 2^32 + 7 so both int64 halves are exercised.
  // Record body = attributes 1 + tsDelta 1 + offsetDelta 1 + key 1+1 + value 1+5 + headerCount 1
  //             + header key 1+2 + header value 1+1 = 17 bytes; record = 18; batch = 61 + 18 = 79.
  // CRC-32C over bytes [21, 79), computed independently with a bit-at-a-time implementation.
  const expectedHex = [
    '0000000100000007', // baseOffset 4294967303
    '00000043', //         batchLength 67 = 79 - 12
    'ffffffff', //         partitionLeaderEpoch -1
    '02', //               magic
    '1ccc4ed7', //         crc
    '0000', //             attributes
    '00000000', //         lastOffsetDelta 0
    '0000018bcfe56800', // baseTimestamp
    '0000018bcfe56800', // maxTimestamp
    'ffffffffffffffff', // producerId -1
    'ffff', //             producerEpoch -1
    'ffffffff', //         baseSequence -1
    '00000001', //         recordCount 1
    '22', //               record length 17 (zigzag 34)
    '00', //               record attributes
    '00', //               timestampDelta 0
    '00', //               offsetDelta 0
    '02', '6b', //         keyLength 1, "k"
    '0a', '68656c6c6f', // valueLength 5, "hello"
    '02', //               headerCount 1
    '04', 'c3bc', //       header key length 2, "ü" in UTF-8
    '02', '2a', //         header value length 1, 0x2a
  ].join('');
  const input: RecordInput = {
    key: Buffer.from('k'),
    value: Buffer.from('hello'),
    headers: [{ key: 'ü', value: Buffer.from([0x2a]) }],
    timestamp: 1_700_000_000_000,
  };

  it('encodes to exactly these bytes', () => {
    const buf = encodeRecordBatch([input], { baseOffset: 2 ** 32 + 7 });
    expect(buf.toString('hex')).toBe(expectedHex);
    expect(buf.length).toBe(79);
  });

  it('reads the header fields back', () => {
    const buf = Buffer.from(expectedHex, 'hex');
    expect(crc32c(buf.subarray(21))).toBe(0x1ccc4ed7);
    const h = verifyBatch(buf);
    expect(h).toEqual({
      baseOffset: 4_294_967_303,
      batchLength: 67,
      partitionLeaderEpoch: -1,
      magic: 2,
      crc: 0x1ccc4ed7,
      attributes: 0,
      lastOffsetDelta: 0,
      baseTimestamp: 1_700_000_000_000,
      maxTimestamp: 1_700_000_000_000,
      producerId: -1,
      producerEpoch: -1,
      baseSequence: -1,
      recordCount: 1,
    });
    expect(readBatchHeader(buf)).toEqual(h);
    expect(batchSizeAt(buf, 0)).toBe(79);
    expect(plain(decodeRecords(buf))).toEqual(expected([input], 4_294_967_303));
  });

  it('detects every single-bit flip in the CRC-covered bytes as CORRUPT_RECORD', () => {
    const clean = Buffer.from(expectedHex, 'hex');
    for (let bit = 21 * 8; bit < clean.length * 8; bit++) {
      const buf = Buffer.from(clean);
      buf[bit >> 3]! ^= 1 << (bit & 7);
      expect(outcome(() => verifyBatch(buf)), `bit ${bit}`).toBe('CORRUPT_RECORD');
    }
  });

  it('names what was wrong in the message', () => {
    const buf = Buffer.from(expectedHex, 'hex');
    buf[70]! ^= 0x01;
    expect(() => verifyBatch(buf)).toThrow(/^batch at byte 0: crc 0x1ccc4ed7 != computed 0x[0-9a-f]{8}$/);
  });

  it('pins the constants', () => {
    expect([BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, BATCH_OVERHEAD, MAGIC]).toEqual([61, 8, 12, 2]);
    expect([ATTR_TRANSACTIONAL, ATTR_CONTROL]).toEqual([0x10, 0x20]);
  });
});

// ---- round trips ---------------------------------------------------------------------------

describe('round trip', () => {
  it('decodes what it encodes, header included', () => {
    fc.assert(
      fc.property(batch, ({ rs, opts, buf }) => {
        const h = verifyBatch(buf);
        expect(h).toEqual({
          ...opts,
          batchLength: buf.length - 12,
          magic: 2,
          crc: buf.readUInt32BE(17),
          lastOffsetDelta: rs.length - 1,
          baseTimestamp: rs[0]!.timestamp,
          maxTimestamp: Math.max(...rs.map((r) => r.timestamp!)),
          recordCount: rs.length,
        });
        expect(batchSizeAt(buf, 0)).toBe(buf.length);
        expect(plain(decodeRecords(buf))).toEqual(expected(rs, opts.baseOffset));
        expect(plain(decodeBatches(buf))).toEqual(expected(rs, opts.baseOffset));
      }),
      BUDGET,
    );
  });

  it('decodes back-to-back batches in order, and one batch at any position', () => {
    fc.assert(
      fc.property(fc.array(batch, { minLength: 1, maxLength: 4 }), (batches) => {
        const all = Buffer.concat(batches.map((b) => b.buf));
        expect(plain(decodeBatches(all))).toEqual(batches.flatMap((b) => expected(b.rs, b.opts.baseOffset)));
        let pos = 0;
        for (const b of batches) {
          expect(batchSizeAt(all, pos)).toBe(b.buf.length);
          expect(verifyBatch(all, pos).recordCount).toBe(b.rs.length);
          expect(plain(decodeRecords(all, pos))).toEqual(expected(b.rs, b.opts.baseOffset));
          pos += b.buf.length;
        }
      }),
      BUDGET,
    );
  });

  it('defaults: baseOffset 0, producer fields -1, timestamp Date.now()', () => {
    const before = Date.now();
    const buf = encodeRecordBatch([{ value: Buffer.from('a') }, { value: null, key: null }]);
    const after = Date.now();
    const h = verifyBatch(buf);
    expect([h.baseOffset, h.producerId, h.producerEpoch, h.baseSequence, h.partitionLeaderEpoch, h.attributes]).toEqual([
      0, -1, -1, -1, -1, 0,
    ]);
    const [a, b] = decodeRecords(buf);
    expect(a!.timestamp).toBeGreaterThanOrEqual(before);
    expect(a!.timestamp).toBeLessThanOrEqual(after);
    expect(b!.timestamp).toBe(a!.timestamp);
    expect([a!.key, b!.key, b!.value, a!.headers, b!.offset]).toEqual([null, null, null, [], 1]);
  });

  it('keeps empty values distinct from null values', () => {
    const buf = encodeRecordBatch([{ value: Buffer.alloc(0), key: Buffer.alloc(0) }, { value: null }]);
    const [a, b] = decodeRecords(buf);
    expect(a!.value).toEqual(Buffer.alloc(0));
    expect(a!.key).toEqual(Buffer.alloc(0));
    expect(b!.value).toBeNull();
  });

  it('round-trips large fields whose length varints take several bytes', () => {
    const value = Buffer.alloc(70_000, 7);
    const headerValue = Buffer.alloc(300, 1);
    const buf = encodeRecordBatch([{ value, headers: [{ key: 'k'.repeat(200), value: headerValue }], timestamp: 5 }]);
    const [r] = decodeBatches(buf);
    expect(r!.value!.equals(value)).toBe(true);
    expect(r!.headers[0]!.key).toBe('k'.repeat(200));
    expect(r!.headers[0]!.value.equals(headerValue)).toBe(true);
  });
});

// ---- setBaseOffset -------------------------------------------------------------------------

describe('setBaseOffset', () => {
  it('rewrites the base offset in place, keeps the CRC valid and shifts decoded offsets', () => {
    fc.assert(
      fc.property(batch, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 100 }), fc.nat(8), ({ rs, buf }, base, at) => {
        const framed = Buffer.concat([Buffer.alloc(at, 0xee), buf]);
        const crcBefore = framed.readUInt32BE(at + 17);
        setBaseOffset(framed, base, at);
        expect(framed.readUInt32BE(at + 17)).toBe(crcBefore);
        expect(verifyBatch(framed, at).baseOffset).toBe(base);
        expect(plain(decodeRecords(framed, at)).map((r) => r.offset)).toEqual(rs.map((_, i) => base + i));
        expect(framed.subarray(0, at).every((b) => b === 0xee)).toBe(true);
      }),
      BUDGET,
    );
  });

  it('refuses offsets that are not safe non-negative integers', () => {
    const buf = encodeRecordBatch([{ value: null }]);
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) expect(outcome(() => setBaseOffset(buf, bad))).toBe('INVALID_RECORD');
    expect(outcome(() => setBaseOffset(buf.subarray(0, 60), 1))).toBe('INVALID_RECORD');
  });
});

// ---- corruption and hostile input ----------------------------------------------------------

describe('integrity', () => {
  it('reports any single-bit flip in the CRC-covered region as CORRUPT_RECORD', () => {
    fc.assert(
      fc.property(batch, fc.nat(), ({ buf }, n) => {
        const bit = 21 * 8 + (n % ((buf.length - 21) * 8));
        const copy = Buffer.from(buf);
        copy[bit >> 3]! ^= 1 << (bit & 7);
        expect(outcome(() => verifyBatch(copy))).toBe('CORRUPT_RECORD');
        expect(outcome(() => decodeBatches(copy))).toBe('CORRUPT_RECORD');
      }),
      { ...BUDGET, numRuns: 500 },
    );
  });

  it('reports a flip in the crc field as CORRUPT_RECORD and never misbehaves on other header flips', () => {
    fc.assert(
      fc.property(batch, fc.nat(21 * 8 - 1), ({ buf }, bit) => {
        const copy = Buffer.from(buf);
        copy[bit >> 3]! ^= 1 << (bit & 7);
        const result = outcome(() => verifyBatch(copy));
        if (bit >= 17 * 8) expect(result).toBe('CORRUPT_RECORD');
        else if (bit >= 16 * 8) expect(result).toBe('INVALID_RECORD'); // magic
        // batchLength: too small, too large, or a shorter span whose CRC no longer matches.
        else if (bit >= 8 * 8 && bit < 12 * 8) expect(['INVALID_RECORD', 'CORRUPT_RECORD']).toContain(result);
        else expect(['ok', 'INVALID_RECORD']).toContain(result); // baseOffset, leader epoch: not covered
      }),
      BUDGET,
    );
  });

  it('rejects every truncation with INVALID_RECORD', () => {
    fc.assert(
      fc.property(batch, ({ buf }) => {
        for (let len = 0; len < buf.length; len++) {
          const cut = buf.subarray(0, len);
          expect(outcome(() => verifyBatch(cut))).toBe('INVALID_RECORD');
          expect(outcome(() => decodeRecords(cut))).toBe('INVALID_RECORD');
          expect(outcome(() => decodeBatches(cut))).toBe(len === 0 ? 'ok' : 'INVALID_RECORD');
          if (len < 12) expect(batchSizeAt(cut, 0)).toBeUndefined();
          else expect(batchSizeAt(cut, 0)).toBe(buf.length);
        }
      }),
      { ...BUDGET, numRuns: 30 },
    );
  });

  it('rejects a torn second batch in a fetch', () => {
    const a = encodeRecordBatch([{ value: Buffer.from('a') }]);
    const b = encodeRecordBatch([{ value: Buffer.from('b') }], { baseOffset: 1 });
    const all = Buffer.concat([a, b]);
    expect(outcome(() => decodeBatches(all.subarray(0, all.length - 1)))).toBe('INVALID_RECORD');
    expect(outcome(() => decodeBatches(all.subarray(0, a.length + 5)))).toBe('INVALID_RECORD');
  });

  it('throws only SluiceError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)), (buf) => {
        for (const fn of [() => verifyBatch(buf), () => decodeRecords(buf), () => decodeBatches(buf), () => readBatchHeader(buf)]) {
          expect(['ok', 'INVALID_RECORD', 'CORRUPT_RECORD']).toContain(outcome(fn));
        }
        batchSizeAt(buf, 0);
      }),
      BUDGET,
    );
  });

  it('throws only SluiceError on plausible garbage that passes the CRC', () => {
    // A valid frame whose CRC-covered bytes are overwritten at random and the CRC recomputed:
    // exercises the record framing checks. The batch also sits between foreign bytes, and the
    // outcome must not depend on them (nothing outside the batch is ever read).
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(batch, mutation, fc.nat(8), fc.uint8Array({ maxLength: 16 }), ({ buf }, edits, at, tail) => {
        const copy = Buffer.from(buf);
        for (const [n, byte] of edits) copy[21 + (n % (copy.length - 21))] = byte;
        fixCrc(copy);
        const alone = outcome(() => decodeRecords(copy));
        const verified = outcome(() => verifyBatch(copy));
        expect(['ok', 'INVALID_RECORD']).toContain(alone);
        expect(['ok', 'INVALID_RECORD']).toContain(verified);
        const framed = Buffer.concat([Buffer.alloc(at, 0x80), copy, Buffer.from(tail)]);
        expect(outcome(() => decodeRecords(framed, at))).toBe(alone);
        if (alone === 'ok') expect(plain(decodeRecords(framed, at))).toEqual(plain(decodeRecords(copy)));
      }),
      { ...BUDGET, numRuns: 500 },
    );
  });

  it('throws only SluiceError on random header fields with a valid CRC', () => {
    fc.assert(
      fc.property(batch, fc.uint8Array({ minLength: 40, maxLength: 40 }), ({ buf }, fields) => {
        const copy = Buffer.from(buf);
        copy.set(fields, 21); // attributes .. recordCount
        fixCrc(copy);
        for (const fn of [() => verifyBatch(copy), () => decodeRecords(copy), () => decodeBatches(copy)]) {
          expect(['ok', 'INVALID_RECORD']).toContain(outcome(fn));
        }
      }),
      BUDGET,
    );
  });
});

describe('shape checks (CRC fixed so each check is reached)', () => {
  const base = () => encodeRecordBatch([{ value: Buffer.from('x') }, { value: Buffer.from('y') }], { baseOffset: 10 });
  const expectInvalid = (buf: Buffer, pattern: RegExp) => {
    for (const fn of [() => verifyBatch(buf), () => decodeRecords(buf)]) {
      try {
        fn();
        expect.unreachable();
      } catch (err) {
        expect(hasCode(err, 'INVALID_RECORD'), String(err)).toBe(true);
        expect((err as Error).message).toMatch(pattern);
      }
    }
  };

  it('magic other than 2', () => {
    const buf = base();
    buf[16] = 1;
    expectInvalid(buf, /magic 1, expected 2/);
  });

  it('batchLength under 49 or past the buffer', () => {
    const small = base();
    small.writeInt32BE(48, 8);
    expectInvalid(small, /batchLength 48 is under the minimum 49/);
    const negative = base();
    negative.writeInt32BE(-5, 8);
    expectInvalid(negative, /batchLength -5/);
    const big = base();
    big.writeInt32BE(big.length, 8);
    expectInvalid(big, /needs \d+ bytes, \d+ remain/);
  });

  it('compression bits', () => {
    for (const codec of [1, 2, 3, 4]) {
      const buf = base();
      buf.writeInt16BE(codec, 21);
      fixCrc(buf);
      expectInvalid(buf, /compression codec/);
    }
  });

  it('recordCount under 1 and lastOffsetDelta != recordCount - 1', () => {
    const zero = base();
    zero.writeInt32BE(0, 57);
    zero.writeInt32BE(-1, 23);
    fixCrc(zero);
    expectInvalid(zero, /recordCount 0 is under 1/);
    const delta = base();
    delta.writeInt32BE(5, 23);
    fixCrc(delta);
    expectInvalid(delta, /lastOffsetDelta 5 != recordCount - 1 \(1\)/);
  });

  it('a recordCount that disagrees with the records present', () => {
    const tooMany = base(); // two 8-byte records cannot hold three of at least 7 bytes
    tooMany.writeInt32BE(3, 57);
    tooMany.writeInt32BE(2, 23);
    fixCrc(tooMany);
    expectInvalid(tooMany, /3 records cannot fit in 16 bytes/);
    const more = encodeRecordBatch([{ value: Buffer.alloc(20) }, { value: Buffer.alloc(20) }]);
    more.writeInt32BE(3, 57);
    more.writeInt32BE(2, 23);
    fixCrc(more);
    expect(outcome(() => verifyBatch(more))).toBe('ok'); // verifyBatch does not walk records
    expect(outcome(() => decodeRecords(more))).toBe('INVALID_RECORD');
    const fewer = base();
    fewer.writeInt32BE(1, 57);
    fewer.writeInt32BE(0, 23);
    fixCrc(fewer);
    expect(() => decodeRecords(fewer)).toThrow(/bytes after the last record/);
  });

  it('an int64 header field outside the safe integer range', () => {
    const buf = base();
    buf.writeInt32BE(0x7fffffff, 43); // producerId high half
    fixCrc(buf);
    expectInvalid(buf, /producerId is outside the safe integer range/);
  });

  it('a null header value reads as an empty buffer (Kafka allows null, RecordHeader has none)', () => {
    const buf = encodeRecordBatch([{ value: null, headers: [{ key: 'h', value: Buffer.alloc(0) }] }]);
    // Record: len, attr, tsDelta, offDelta, key -1, value -1, count 1, key len 1, 'h', value len 0 (last byte).
    expect(buf[buf.length - 1]).toBe(0);
    buf[buf.length - 1] = 1; // zigzag(-1): null
    fixCrc(buf);
    expect(decodeRecords(buf)[0]!.headers).toEqual([{ key: 'h', value: Buffer.alloc(0) }]);
  });
});

describe('encoder input checks', () => {
  it('refuses an empty batch', () => {
    expect(outcome(() => encodeRecordBatch([]))).toBe('INVALID_RECORD');
  });

  it('refuses bad options', () => {
    const one = [{ value: null }];
    const bad: BatchOptions[] = [
      { baseOffset: -1 },
      { baseOffset: 2 ** 53 },
      { attributes: 1 },
      { attributes: 0x8000 },
      { producerId: -2 },
      { producerEpoch: 0x8000 },
      { baseSequence: 2 ** 31 },
      { partitionLeaderEpoch: 2 ** 31 },
      { baseOffset: 1.5 },
    ];
    for (const opts of bad) expect(outcome(() => encodeRecordBatch(one, opts)), JSON.stringify(opts)).toBe('INVALID_RECORD');
  });

  it('refuses unsafe timestamps and non-Buffer fields', () => {
    expect(outcome(() => encodeRecordBatch([{ value: null, timestamp: Number.NaN }]))).toBe('INVALID_RECORD');
    expect(outcome(() => encodeRecordBatch([{ value: null, timestamp: 2 ** 60 }]))).toBe('INVALID_RECORD');
    expect(
      outcome(() => encodeRecordBatch([{ value: null, timestamp: 2 ** 52 }, { value: null, timestamp: -(2 ** 52) - 1 }])),
    ).toBe('INVALID_RECORD');
    expect(outcome(() => encodeRecordBatch([{ value: 'text' as unknown as Buffer }]))).toBe('INVALID_RECORD');
  });

  it('accepts timestamps out of order and records the maximum', () => {
    const buf = encodeRecordBatch([
      { value: null, timestamp: 1000 },
      { value: null, timestamp: 5000 },
      { value: null, timestamp: 10 },
    ]);
    const h = verifyBatch(buf);
    expect([h.baseTimestamp, h.maxTimestamp]).toEqual([1000, 5000]);
    expect(decodeRecords(buf).map((r) => r.timestamp)).toEqual([1000, 5000, 10]);
  });
});

describe('checkRecords', () => {
  it('accepts exactly what decodeRecords accepts, without building records', async () => {
    const { checkRecords, decodeRecords: decode, encodeRecordBatch: encode } = await import('../../../../client/protocol/record-batch.js');
    const fcm = (await import('fast-check')).default;
    fcm.assert(
      fcm.property(fcm.uint8Array({ minLength: 1, maxLength: 40 }), fcm.nat(), (noise, at) => {
        const batch = encode([{ key: Buffer.from('k'), value: Buffer.from('value'), headers: [{ key: 'h', value: Buffer.from('v') }] }, { value: null }]);
        // Damage the record area (after the header), leaving the frame intact.
        const pos = 61 + (at % (batch.length - 61));
        const damaged = Buffer.from(batch);
        damaged.set(noise.subarray(0, Math.min(noise.length, damaged.length - pos)), pos);
        let decoded = true;
        let checked = true;
        try {
          decode(damaged);
        } catch {
          decoded = false;
        }
        try {
          checkRecords(damaged);
        } catch {
          checked = false;
        }
        expect(checked).toBe(decoded);
      }),
      { seed: 11, numRuns: 500 },
    );
  });
});
