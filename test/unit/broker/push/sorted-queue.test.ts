import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SortedQueue } from '../../../../broker/push/sorted-queue.js';

interface Item {
  readonly at: number;
  readonly id: number;
}

const before = (a: Item, b: Item): boolean => a.at < b.at || (a.at === b.at && a.id < b.id);

type Op = { kind: 'push'; at: number } | { kind: 'pop' } | { kind: 'peek' } | { kind: 'retain'; mod: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  // Mostly ascending pushes (the FIFO path), some going back in time (the heap path).
  { weight: 6, arbitrary: fc.integer({ min: -3, max: 5 }).map((at) => ({ kind: 'push' as const, at })) },
  { weight: 3, arbitrary: fc.constant({ kind: 'pop' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'peek' as const }) },
  { weight: 1, arbitrary: fc.integer({ min: 2, max: 4 }).map((mod) => ({ kind: 'retain' as const, mod })) },
);

describe('SortedQueue', () => {
  it('yields items in comparator order, whatever the mix of in-order and out-of-order pushes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 3_000 }), (ops) => {
        const q = new SortedQueue<Item>(before);
        let model: Item[] = [];
        let clock = 0;
        let nextId = 0;
        for (const op of ops) {
          if (op.kind === 'push') {
            clock += op.at;
            const item = { at: clock, id: nextId++ };
            q.push(item);
            model.push(item);
            model.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
          } else if (op.kind === 'pop') {
            expect(q.pop()).toBe(model.shift());
          } else if (op.kind === 'peek') {
            expect(q.peek()).toBe(model[0]);
          } else {
            const keep = (x: Item): boolean => x.id % op.mod !== 0;
            q.retain(keep);
            model = model.filter(keep);
          }
          expect(q.size).toBe(model.length);
        }
        while (model.length > 0) expect(q.pop()).toBe(model.shift());
        expect(q.pop()).toBeUndefined();
        expect(q.size).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('keeps FIFO order for long in-order runs and compacts as it goes', () => {
    const q = new SortedQueue<Item>(before);
    for (let i = 0; i < 10_000; i++) q.push({ at: i, id: i });
    for (let i = 0; i < 9_000; i++) expect(q.pop()?.id).toBe(i);
    q.push({ at: 5, id: -1 }); // behind the FIFO's tail: the heap
    expect(q.peek()?.id).toBe(-1);
    expect(q.pop()?.id).toBe(-1);
    for (let i = 9_000; i < 10_000; i++) expect(q.pop()?.id).toBe(i);
    expect(q.size).toBe(0);
  });
});
