import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OffsetIndex } from '../../../../broker/log/offset-index.js';

describe('OffsetIndex', () => {
  it('finds the floor entry, with (0, 0) implicit', () => {
    const index = new OffsetIndex(2);
    for (const [o, p] of [[10, 100], [20, 250], [35, 400]] as const) index.append(o, p);
    expect(index.floor(0)).toEqual({ relativeOffset: 0, position: 0 });
    expect(index.floor(9)).toEqual({ relativeOffset: 0, position: 0 });
    expect(index.floor(10)).toEqual({ relativeOffset: 10, position: 100 });
    expect(index.floor(34)).toEqual({ relativeOffset: 20, position: 250 });
    expect(index.floor(1e9)).toEqual({ relativeOffset: 35, position: 400 });
    expect(() => index.append(35, 500)).toThrow();
  });

  it('round-trips through its file format and rejects files that cannot be right', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 1e6 }), { maxLength: 50 }), (offsets) => {
        const sorted = [...offsets].sort((a, b) => a - b);
        const index = new OffsetIndex();
        for (const o of sorted) index.append(o, o * 3);
        const decoded = OffsetIndex.decode(index.encode(), 3e6 + 1, 1e6 + 1);
        expect(decoded?.encode()).toEqual(index.encode());
      }),
      { seed: 1, numRuns: 100 },
    );
    const index = new OffsetIndex();
    index.append(5, 50);
    index.append(9, 90);
    const buf = index.encode();
    expect(OffsetIndex.decode(buf.subarray(0, 12), 100, 10)).toBeUndefined(); // partial entry
    expect(OffsetIndex.decode(buf, 90, 10)).toBeUndefined(); // position past the segment
    expect(OffsetIndex.decode(buf, 100, 9)).toBeUndefined(); // offset past the segment
    expect(OffsetIndex.decode(Buffer.concat([buf.subarray(8), buf.subarray(0, 8)]), 100, 10)).toBeUndefined(); // not increasing
  });
});
