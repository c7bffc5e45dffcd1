import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IndexBuilder } from '../../../../broker/log/index-builder.js';
import { TimeIndex } from '../../../../broker/log/time-index.js';

describe('TimeIndex', () => {
  it('keeps strictly increasing entries and finds where a timestamp search starts', () => {
    const index = new TimeIndex(1);
    expect(index.maybeAppend(100, 0)).toBe(true);
    expect(index.maybeAppend(100, 5)).toBe(false); // timestamp did not grow
    expect(index.maybeAppend(200, 10)).toBe(true);
    expect(index.maybeAppend(300, 20)).toBe(true);
    expect(index.scanStart(50)).toBe(0);
    expect(index.scanStart(100)).toBe(0);
    expect(index.scanStart(201)).toBe(10);
    expect(index.scanStart(1e12)).toBe(20);
  });

  it('round-trips, negative timestamps included', () => {
    const index = new TimeIndex();
    index.maybeAppend(-5, 1);
    index.maybeAppend(1_700_000_000_000, 2);
    const decoded = TimeIndex.decode(index.encode(), 3);
    expect(decoded?.last()).toEqual({ timestamp: 1_700_000_000_000, relativeOffset: 2 });
    expect(TimeIndex.decode(index.encode(), 2)).toBeUndefined();
    expect(TimeIndex.decode(Buffer.alloc(13), 10)).toBeUndefined();
  });

  it('never points a search past the first batch with maxTimestamp >= t (the invariant)', () => {
    // Batches with arbitrary (non-monotonic) timestamps through the real index builder.
    fc.assert(
      fc.property(
        fc.array(fc.record({ ts: fc.integer({ min: 0, max: 1000 }), size: fc.integer({ min: 61, max: 400 }) }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 1100 }),
        (batches, t) => {
          const builder = new IndexBuilder(0, 256);
          let pos = 0;
          batches.forEach((b, i) => {
            builder.add(i, b.ts, pos, b.size);
            pos += b.size;
          });
          builder.finish();
          const firstHit = batches.findIndex((b) => b.ts >= t);
          const start = builder.timeIndex.scanStart(t);
          if (firstHit >= 0) expect(start).toBeLessThanOrEqual(firstHit);
          expect(builder.timeIndex.last()?.timestamp).toBe(Math.max(...batches.map((b) => b.ts)));
        },
      ),
      { seed: 7, numRuns: 300 },
    );
  });
});
