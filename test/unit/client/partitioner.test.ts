import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StickyPartitioner, murmur2, partitionForKey } from '../../../client/partitioner.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('murmur2', () => {
  // Kafka's own vectors (clients UtilsTest.testMurmur2): tails of length 0, 2 and 3.
  it.each([
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ])('matches Kafka for %j', (input, expected) => {
    expect(murmur2(bytes(input))).toBe(expected);
  });

  // Published by other clients checked against Kafka's implementation; these add tails of 1.
  it.each([
    ['1', -1993445489],
    ['12', 126087238],
    ['123', -267702483],
    ['1234', -1614185708],
    ['12345', -1188365604],
  ])('matches Kafka for %j (one-byte tails included)', (input, expected) => {
    expect(murmur2(bytes(input))).toBe(expected);
  });

  it('treats bytes as unsigned and returns a signed int32 for any input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (data) => {
        const h = murmur2(data);
        expect(Number.isInteger(h)).toBe(true);
        expect(h).toBeGreaterThanOrEqual(-(2 ** 31));
        expect(h).toBeLessThan(2 ** 31);
        expect(murmur2(Buffer.from(data))).toBe(h);
      }),
      { seed: 42, numRuns: 500 },
    );
  });
});

describe('partitionForKey', () => {
  it('is toPositive(murmur2) modulo the count, like Kafka', () => {
    // murmur2("21") = -973932308; & 0x7fffffff = 1173551340; % 7 = 5.
    expect(partitionForKey(bytes('21'), 7)).toBe(1173551340 % 7);
    expect(partitionForKey(bytes('abc'), 10)).toBe(479470107 % 10);
  });

  it('is stable and in range', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 1, max: 1000 }), (key, n) => {
        const p = partitionForKey(key, n);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThan(n);
        expect(partitionForKey(Uint8Array.from(key), n)).toBe(p);
      }),
      { seed: 7, numRuns: 500 },
    );
  });

  it('spreads keys evenly enough', () => {
    const n = 8;
    const counts = new Array<number>(n).fill(0);
    const total = 16_000;
    for (let i = 0; i < total; i++) counts[partitionForKey(bytes(`user-${i}`), n)]!++;
    // Expected 2000 each; a uniform hash stays well within +-10% at this size.
    for (const c of counts) expect(Math.abs(c - total / n)).toBeLessThan(total / n / 10);
  });

  it('refuses a partition count below 1', () => {
    expect(() => partitionForKey(bytes('k'), 0)).toThrow(RangeError);
  });
});

describe('StickyPartitioner', () => {
  it('keeps a partition until its batch is sealed, then moves round-robin', () => {
    const sticky = new StickyPartitioner(() => 0.5);
    const first = sticky.partition('t', 4);
    expect(first).toBe(2);
    expect(sticky.partition('t', 4)).toBe(2);
    sticky.batchSealed('t', 1, 4); // another partition's batch: no move
    expect(sticky.partition('t', 4)).toBe(2);
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      const p = sticky.partition('t', 4);
      seen.push(p);
      sticky.batchSealed('t', p, 4);
    }
    expect(seen).toEqual([2, 3, 0, 1, 2, 3, 0, 1]);
  });

  it('keeps topics apart and drops a choice that no longer exists', () => {
    const sticky = new StickyPartitioner(() => 0.99);
    expect(sticky.partition('a', 4)).toBe(3);
    expect(sticky.partition('b', 2)).toBe(1);
    // Topic `a` recreated with 2 partitions: partition 3 is gone.
    expect(sticky.partition('a', 2)).toBe(1);
  });
});
