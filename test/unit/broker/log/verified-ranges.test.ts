import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VerifiedRanges } from '../../../../broker/log/verified-ranges.js';

describe('VerifiedRanges', () => {
  it('merges touching and overlapping ranges', () => {
    const r = new VerifiedRanges();
    r.add(0, 10);
    r.add(10, 20);
    r.add(30, 40);
    r.add(15, 35);
    expect(r.count).toBe(1);
    expect(r.covers(0, 40)).toBe(true);
    expect(r.covers(0, 41)).toBe(false);
  });

  it('covers only what was added (against a bitmap model)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 30 })), { maxLength: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 220 }), fc.integer({ min: 1, max: 30 })), { maxLength: 20 }),
        (adds, queries) => {
          const r = new VerifiedRanges();
          const bits = new Array<boolean>(300).fill(false);
          for (const [s, len] of adds) {
            r.add(s, s + len);
            for (let i = s; i < s + len; i++) bits[i] = true;
          }
          for (const [s, len] of queries) {
            // Never claims a byte that was not added; with under 64 ranges it forgets nothing.
            const all = bits.slice(s, s + len).every(Boolean);
            if (r.covers(s, s + len)) expect(all).toBe(true);
          }
        },
      ),
      { seed: 3, numRuns: 300 },
    );
  });

  it('stays bounded under random reads', () => {
    const r = new VerifiedRanges();
    for (let i = 0; i < 1000; i++) r.add(i * 10, i * 10 + 5);
    expect(r.count).toBeLessThanOrEqual(64);
  });
});
