import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeRecordBatch, setBaseOffset } from '../../../../client/protocol/record-batch.js';
import { scanBatches } from '../../../../broker/log/batch-scan.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';

/** A segment image: batches of the given record counts from `base`, and where each one starts. */
function segment(base: number, counts: number[]): { bytes: Buffer; starts: number[]; ends: number[] } {
  const parts: Buffer[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  let offset = base;
  let pos = 0;
  for (const [i, n] of counts.entries()) {
    const b = encodeRecordBatch(Array.from({ length: n }, (_, j) => ({ value: Buffer.from(`b${i}r${j}`.repeat(1 + (i % 5))), timestamp: 1000 + i })));
    setBaseOffset(b, offset);
    starts.push(pos);
    parts.push(b);
    offset += n;
    pos += b.length;
    ends.push(offset);
  }
  return { bytes: Buffer.concat(parts), starts, ends };
}

async function scan(bytes: Buffer, base: number, chunkBytes: number) {
  const io = new CrashFS();
  io.writeFileSync('/s.log', bytes);
  const fh = await io.open('/s.log', 'read');
  const seen: number[] = [];
  const result = await scanBatches(fh, {
    fileSize: bytes.length,
    from: 0,
    expectedOffset: base,
    verifyCrc: true,
    chunkBytes,
    onBatch: (h) => seen.push(h.baseOffset),
  });
  return { ...result, seen };
}

describe('scanBatches', () => {
  it('finds every batch whatever the read size (refills across chunk edges)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 700 }), async (counts, chunk) => {
        const seg = segment(500, counts);
        const r = await scan(seg.bytes, 500, chunk);
        expect(r.problem).toBeUndefined();
        expect(r.validEnd).toBe(seg.bytes.length);
        expect(r.endOffset).toBe(seg.ends[seg.ends.length - 1]);
        expect(r.seen).toEqual(seg.starts.map((_, i) => (i === 0 ? 500 : seg.ends[i - 1]!)));
      }),
      { seed: 11, numRuns: 150 },
    );
  });

  it('stops at the batch holding the first damaged byte', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 20 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.integer({ min: 1, max: 700 }),
        async (counts, at, flip, chunk) => {
          const seg = segment(0, counts);
          const pos = at % seg.bytes.length;
          // Bytes 12..16 (partition leader epoch) are covered by nothing: damage there is benign.
          const within = pos - seg.starts.filter((s) => s <= pos).at(-1)!;
          fc.pre(within < 12 || within >= 16);
          const damaged = Buffer.from(seg.bytes);
          damaged[pos]! ^= flip;
          const r = await scan(damaged, 0, chunk);
          const victim = seg.starts.filter((s) => s <= pos).length - 1;
          expect(r.problem).toBeDefined();
          expect(r.validEnd).toBe(seg.starts[victim]);
          expect(r.endOffset).toBe(victim === 0 ? 0 : seg.ends[victim - 1]);
        },
      ),
      { seed: 12, numRuns: 300 },
    );
  });
});
