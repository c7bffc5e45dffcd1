import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchBuilder, NO_HEADERS, RECORD_FIXED_OVERHEAD, advanceSequence, recordFixedSize, sendClock, type FlatHeaders, type RecordValue } from '../../../client/internal/accumulator.js';
import { ATTR_TRANSACTIONAL, decodeRecords, encodeRecordBatch, readBatchHeader, verifyBatch, type RecordInput } from '../../../client/protocol/record-batch.js';

interface Rec {
  key: Buffer | null;
  value: RecordValue;
  headers: FlatHeaders;
  timestamp: number;
}

/** The same record as encodeRecordBatch takes it. */
function toInput(r: Rec): RecordInput {
  const headers = [];
  for (let i = 0; i < r.headers.length; i += 2) {
    const v = r.headers[i + 1]!;
    headers.push({ key: r.headers[i] as string, value: typeof v === 'string' ? Buffer.from(v, 'utf8') : v });
  }
  return { key: r.key, value: typeof r.value === 'string' ? Buffer.from(r.value, 'utf8') : r.value, headers, timestamp: r.timestamp };
}

function build(records: readonly Rec[], capacity = 64): { batch: Buffer; sizes: number[]; predicted: number[] } {
  const builder = new BatchBuilder(capacity);
  const sizes: number[] = [];
  const predicted: number[] = [];
  for (const r of records) {
    const fixed = recordFixedSize(r.key, r.value, r.headers);
    predicted.push(builder.recordSize(fixed, r.timestamp));
    expect(predicted.at(-1)!).toBeLessThanOrEqual(fixed + RECORD_FIXED_OVERHEAD);
    sizes.push(builder.append(r.key, r.value, r.headers, r.timestamp, fixed));
  }
  return { batch: builder.build(), sizes, predicted };
}

const T0 = 1_700_000_000_000;

describe('BatchBuilder', () => {
  it('writes exactly the bytes encodeRecordBatch writes for the same records', () => {
    const records: Rec[] = [
      { key: null, value: Buffer.alloc(100, 7), headers: NO_HEADERS, timestamp: T0 },
      { key: Buffer.from('k'), value: 'héllo wörld ✓', headers: ['content-type', 'text/plain; charset=utf-8'], timestamp: T0 + 1 },
      { key: Buffer.alloc(0), value: null, headers: ['a', Buffer.from([0, 255]), 'ünï', '', '', 'empty key'], timestamp: T0 - 5 },
      { key: null, value: '', headers: NO_HEADERS, timestamp: T0 + 2 ** 31 }, // a varlong delta
      { key: null, value: Buffer.alloc(0), headers: NO_HEADERS, timestamp: 0 }, // a large negative delta
    ];
    const { batch, sizes, predicted } = build(records);
    expect(batch).toEqual(encodeRecordBatch(records.map(toInput)));
    expect(sizes).toEqual(predicted);
    const header = readBatchHeader(batch, 0);
    expect(header.baseTimestamp).toBe(T0);
    expect(header.maxTimestamp).toBe(T0 + 2 ** 31);
    expect(header.recordCount).toBe(records.length);
    expect(decodeRecords(batch).map((r) => r.timestamp)).toEqual(records.map((r) => r.timestamp));
  });

  it('matches encodeRecordBatch for arbitrary records, growing from any capacity', () => {
    const header = fc.tuple(fc.string(), fc.oneof(fc.string(), fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a))));
    const rec = fc.record({
      key: fc.option(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a))),
      value: fc.oneof(fc.constant(null), fc.string({ unit: 'grapheme', maxLength: 60 }), fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a))),
      headers: fc.array(header, { maxLength: 4 }).map((hs) => hs.flat() as FlatHeaders),
      timestamp: fc.oneof(fc.integer({ min: -10_000, max: 10_000 }).map((d) => T0 + d), fc.maxSafeNat()),
    });
    fc.assert(
      fc.property(fc.array(rec, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 4096 }), (records, capacity) => {
        const { batch, sizes, predicted } = build(records, capacity);
        expect(batch).toEqual(encodeRecordBatch(records.map(toInput)));
        expect(sizes).toEqual(predicted);
        expect(batch.length).toBe(61 + sizes.reduce((a, b) => a + b, 0));
      }),
      { numRuns: 200 },
    );
  });

  it('builds once: build() returns the same bytes again, and appending afterwards throws', () => {
    const builder = new BatchBuilder(0);
    expect(() => builder.build()).toThrow(/at least one record/);
    const fixed = recordFixedSize(null, Buffer.from('x'), NO_HEADERS);
    builder.append(null, Buffer.from('x'), NO_HEADERS, T0, fixed);
    const batch = builder.build();
    expect(builder.build()).toBe(batch);
    expect(builder.size).toBe(batch.length);
    expect(builder.count).toBe(1);
    expect(() => builder.append(null, Buffer.from('y'), NO_HEADERS, T0, fixed)).toThrow(/already built/);
  });

  it('stamps producer id, epoch, base sequence and the transactional attribute, as encodeRecordBatch does', () => {
    const stamp = fc.record({
      producerId: fc.oneof(fc.nat(1_000), fc.maxSafeNat()),
      producerEpoch: fc.nat(0x7fff),
      baseSequence: fc.nat(0x7fff_ffff),
      transactional: fc.boolean(),
    });
    fc.assert(
      fc.property(stamp, fc.array(fc.string({ maxLength: 20 }), { minLength: 1, maxLength: 10 }), (s, values) => {
        const builder = new BatchBuilder(0);
        for (const v of values) builder.append(null, v, NO_HEADERS, T0, recordFixedSize(null, v, NO_HEADERS));
        const batch = builder.build(s);
        const expected = encodeRecordBatch(
          values.map((v) => ({ value: Buffer.from(v), timestamp: T0 })),
          { producerId: s.producerId, producerEpoch: s.producerEpoch, baseSequence: s.baseSequence, attributes: s.transactional ? ATTR_TRANSACTIONAL : 0 },
        );
        expect(batch).toEqual(expected);
        const header = verifyBatch(batch); // the CRC covers the stamp
        expect([header.producerId, header.producerEpoch, header.baseSequence, header.attributes]).toEqual([s.producerId, s.producerEpoch, s.baseSequence, s.transactional ? ATTR_TRANSACTIONAL : 0]);
        // A retry resends the same bytes, whatever it is asked.
        expect(builder.build({ ...s, baseSequence: 0 })).toBe(batch);
      }),
      { numRuns: 100, seed: 6 },
    );
  });

  it('advances sequences with int32 wrap-around: after 2^31 - 1 comes 0', () => {
    expect(advanceSequence(0, 5)).toBe(5);
    expect(advanceSequence(0x7fff_fffe, 1)).toBe(0x7fff_ffff);
    expect(advanceSequence(0x7fff_ffff, 1)).toBe(0);
    expect(advanceSequence(0x7fff_fff0, 0x20)).toBe(0x10);
  });

  it('copies values at append time: a reused buffer does not change records already written', () => {
    const value = Buffer.from('first');
    const builder = new BatchBuilder(0);
    builder.append(null, value, NO_HEADERS, T0, recordFixedSize(null, value, NO_HEADERS));
    value.write('later');
    builder.append(null, value, NO_HEADERS, T0, recordFixedSize(null, value, NO_HEADERS));
    expect(decodeRecords(builder.build()).map((r) => r.value?.toString())).toEqual(['first', 'later']);
  });
});

describe('sendClock', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('reads Date.now() once per synchronous run, and again every 256 reads', async () => {
    await Promise.resolve(); // start from a fresh turn
    let t = 1_000;
    const now = vi.spyOn(Date, 'now').mockImplementation(() => ++t);
    const first = sendClock();
    expect(sendClock()).toBe(first);
    expect(now).toHaveBeenCalledTimes(1);
    await Promise.resolve();
    const second = sendClock();
    expect(second).toBeGreaterThan(first);
    for (let i = 0; i < 600; i++) sendClock();
    // 601 reads in one run: refreshed after 256 and 512.
    expect(now).toHaveBeenCalledTimes(4);
    expect(sendClock()).toBe(t);
  });
});
