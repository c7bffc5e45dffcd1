import { describe, expect, it } from 'vitest';
import { type ErrorName, isSluiceError } from '../../../../client/protocol/errors.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL } from '../../../../client/protocol/record-batch.js';
import { ControlType } from '../../../../broker/txn/control-record.js';
import { type AppendOffsets, type ProducerBatch, ProducerStateTable, RECENT_BATCHES } from '../../../../broker/txn/producer-state.js';
import { MAX_SEQUENCE, addSequence, isBehind, lastSequenceOf, sequenceDistance } from '../../../../broker/txn/sequence.js';

const batch = (producerId: number, epoch: number, baseSequence: number, count = 1, attributes = 0): ProducerBatch => ({
  producerId,
  producerEpoch: epoch,
  baseSequence,
  lastOffsetDelta: count - 1,
  attributes,
  maxTimestamp: 1_000,
});

const marker = (producerId: number, epoch: number): ProducerBatch => batch(producerId, epoch, -1, 1, ATTR_CONTROL | ATTR_TRANSACTIONAL);

/** A table plus a fake log end offset: `append` checks and applies like the real append path. */
function harness() {
  const table = new ProducerStateTable();
  let end = 0;
  return {
    table,
    get end() {
      return end;
    },
    append(b: ProducerBatch, options: { pending?: Promise<AppendOffsets>; control?: ControlType } = {}): AppendOffsets | { duplicate: AppendOffsets } {
      const decision = table.check(b);
      if (decision.kind === 'duplicate') return { duplicate: { baseOffset: decision.baseOffset, lastOffset: decision.lastOffset } };
      const offsets = { baseOffset: end, lastOffset: end + b.lastOffsetDelta };
      end = offsets.lastOffset + 1;
      table.apply(b, offsets, options);
      return offsets;
    },
  };
}

function errorOf(fn: () => unknown): { code: ErrorName; details: Record<string, unknown> } {
  try {
    fn();
  } catch (err) {
    if (isSluiceError(err)) return { code: err.code, details: { ...err.details } };
    throw err;
  }
  throw new Error('expected a SluiceError');
}

describe('sequence arithmetic', () => {
  it('wraps after 2^31 - 1 like Kafka', () => {
    expect(addSequence(MAX_SEQUENCE, 1)).toBe(0);
    expect(addSequence(-1, 1)).toBe(0);
    expect(lastSequenceOf(MAX_SEQUENCE - 1, 4)).toBe(2);
    expect(sequenceDistance(MAX_SEQUENCE, 0)).toBe(1);
    expect(sequenceDistance(5, 3)).toBe(2 ** 31 - 2);
    expect(isBehind(MAX_SEQUENCE, 3)).toBe(true);
    expect(isBehind(3, MAX_SEQUENCE)).toBe(false);
    expect(isBehind(4, 4)).toBe(false);
  });
});

describe('ProducerStateTable: idempotence', () => {
  it('appends in-sequence batches and answers a retry of a recent one with its offsets', () => {
    const h = harness();
    expect(h.append(batch(7, 0, 0, 3))).toEqual({ baseOffset: 0, lastOffset: 2 });
    expect(h.append(batch(7, 0, 3, 2))).toEqual({ baseOffset: 3, lastOffset: 4 });
    expect(h.append(batch(7, 0, 0, 3))).toEqual({ duplicate: { baseOffset: 0, lastOffset: 2 } });
    expect(h.append(batch(7, 0, 3, 2))).toEqual({ duplicate: { baseOffset: 3, lastOffset: 4 } });
    expect(h.end).toBe(5);
    expect(h.table.producer(7)).toMatchObject({ epoch: 0, lastSequence: 4 });
  });

  it('keeps the last five batches; an older retry is DUPLICATE_SEQUENCE', () => {
    const h = harness();
    for (let i = 0; i < RECENT_BATCHES + 2; i++) h.append(batch(1, 0, i));
    expect(h.table.producer(1)!.batches.map((b) => b.firstSeq)).toEqual([2, 3, 4, 5, 6]);
    expect(h.append(batch(1, 0, 2))).toEqual({ duplicate: { baseOffset: 2, lastOffset: 2 } });
    expect(errorOf(() => h.append(batch(1, 0, 1)))).toMatchObject({ code: 'DUPLICATE_SEQUENCE', details: { lastSequence: 6, got: 1 } });
    // Same first sequence as a recent batch but a different length is not that batch.
    expect(errorOf(() => h.append(batch(1, 0, 5, 2))).code).toBe('DUPLICATE_SEQUENCE');
  });

  it('refuses a gap with OUT_OF_ORDER_SEQUENCE { expected, got }', () => {
    const h = harness();
    h.append(batch(1, 0, 0, 5));
    expect(errorOf(() => h.append(batch(1, 0, 6)))).toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE', details: { expected: 5, got: 6 } });
    expect(h.end).toBe(5);
    expect(h.append(batch(1, 0, 5))).toEqual({ baseOffset: 5, lastOffset: 5 });
  });

  it('wraps sequences past 2^31 - 1', () => {
    const h = harness();
    h.append(batch(1, 0, MAX_SEQUENCE - 2, 1)); // unknown producer: any start
    expect(h.append(batch(1, 0, MAX_SEQUENCE - 1, 3))).toEqual({ baseOffset: 1, lastOffset: 3 }); // ..., MAX, 0
    expect(h.table.producer(1)!.lastSequence).toBe(0);
    expect(h.append(batch(1, 0, 1, 2))).toEqual({ baseOffset: 4, lastOffset: 5 });
    expect(h.append(batch(1, 0, MAX_SEQUENCE - 1, 3))).toEqual({ duplicate: { baseOffset: 1, lastOffset: 3 } });
    // Behind across the wrap: a duplicate too old to answer, not a gap.
    expect(errorOf(() => h.append(batch(1, 0, MAX_SEQUENCE)))).toMatchObject({ code: 'DUPLICATE_SEQUENCE' });
    expect(errorOf(() => h.append(batch(1, 0, 9)))).toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE', details: { expected: 3, got: 9 } });
  });

  it('fences an older epoch and starts a newer one at sequence 0 only', () => {
    const h = harness();
    h.append(batch(1, 3, 0, 4));
    expect(errorOf(() => h.append(batch(1, 2, 4)))).toMatchObject({ code: 'PRODUCER_FENCED', details: { epoch: 2, currentEpoch: 3 } });
    expect(errorOf(() => h.append(batch(1, 4, 4)))).toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE', details: { expected: 0, got: 4 } });
    expect(h.append(batch(1, 4, 0, 2))).toEqual({ baseOffset: 4, lastOffset: 5 });
    expect(h.table.producer(1)).toMatchObject({ epoch: 4, lastSequence: 1 });
    // The old epoch's batches are forgotten: its retries are fenced, not duplicates.
    expect(errorOf(() => h.append(batch(1, 3, 0, 4))).code).toBe('PRODUCER_FENCED');
  });

  it('lets a producer with no state here start at any sequence (Kafka since KIP-360)', () => {
    const h = harness();
    expect(h.append(batch(9, 2, 41))).toEqual({ baseOffset: 0, lastOffset: 0 });
    expect(errorOf(() => h.append(batch(9, 2, 43))).code).toBe('OUT_OF_ORDER_SEQUENCE');
  });

  it('ignores batches without a producer id', () => {
    const h = harness();
    expect(h.append(batch(-1, -1, -1, 3))).toEqual({ baseOffset: 0, lastOffset: 2 });
    expect(h.append(batch(-1, -1, -1, 3))).toEqual({ baseOffset: 3, lastOffset: 5 });
    expect(h.table.size).toBe(0);
  });

  it('answers a retry of a batch still in flight with its pending append, then forgets the promise', async () => {
    const h = harness();
    let settle!: (v: AppendOffsets) => void;
    const pending = new Promise<AppendOffsets>((resolve) => (settle = resolve));
    h.append(batch(1, 0, 0, 2), { pending });
    const decision = h.table.check(batch(1, 0, 0, 2));
    expect(decision).toMatchObject({ kind: 'duplicate', baseOffset: 0, lastOffset: 1 });
    expect(decision.kind === 'duplicate' && decision.pending).toBe(pending);
    settle({ baseOffset: 0, lastOffset: 1 });
    await pending;
    await Promise.resolve();
    const later = h.table.check(batch(1, 0, 0, 2));
    expect(later.kind === 'duplicate' && later.pending).toBeUndefined();
  });

  it('keeps a failed append pending, so a retry sees the same failure', async () => {
    const h = harness();
    const failed = Promise.reject(new Error('disk on fire'));
    failed.catch(() => undefined);
    h.append(batch(1, 0, 0), { pending: failed });
    await new Promise((r) => setImmediate(r));
    const decision = h.table.check(batch(1, 0, 0));
    expect(decision.kind === 'duplicate' && decision.pending).toBe(failed);
  });
});

describe('ProducerStateTable: transactions', () => {
  it('bounds the last stable offset by the first offset of each open transaction', () => {
    const h = harness();
    h.append(batch(1, 0, 0, 2)); // 0-1, not transactional
    h.append(batch(2, 0, 0, 1, ATTR_TRANSACTIONAL)); // 2: opens 2's transaction
    h.append(batch(3, 0, 0, 1, ATTR_TRANSACTIONAL)); // 3: opens 3's
    h.append(batch(2, 0, 1, 1, ATTR_TRANSACTIONAL)); // 4
    expect(h.table.lastStableOffset(5)).toBe(2);
    expect(h.table.lastStableOffset(1)).toBe(1);
    h.append(marker(2, 0), { control: ControlType.COMMIT }); // 5
    expect(h.table.lastStableOffset(6)).toBe(3);
    h.append(marker(3, 0), { control: ControlType.ABORT }); // 6
    expect(h.table.lastStableOffset(7)).toBe(7);
    expect(h.table.firstUnstableOffset()).toBeUndefined();
    expect(h.table.abortedTransactions(0)).toEqual([{ producerId: 3, firstOffset: 3, lastOffset: 6 }]);
  });

  it('indexes aborted transactions and answers overlap queries', () => {
    const h = harness();
    const txn = (pid: number, seq: number) => h.append(batch(pid, 0, seq, 1, ATTR_TRANSACTIONAL));
    txn(1, 0); // 0
    h.append(marker(1, 0), { control: ControlType.ABORT }); // 1
    txn(1, 1); // 2
    txn(2, 0); // 3
    h.append(marker(1, 0), { control: ControlType.ABORT }); // 4
    h.append(marker(2, 0), { control: ControlType.COMMIT }); // 5
    txn(2, 1); // 6
    h.append(marker(2, 0), { control: ControlType.ABORT }); // 7
    expect(h.table.abortedTransactions(0)).toEqual([
      { producerId: 1, firstOffset: 0, lastOffset: 1 },
      { producerId: 1, firstOffset: 2, lastOffset: 4 },
      { producerId: 2, firstOffset: 6, lastOffset: 7 },
    ]);
    expect(h.table.abortedTransactions(2, 6).map((t) => t.firstOffset)).toEqual([2]);
    expect(h.table.abortedTransactions(5).map((t) => t.firstOffset)).toEqual([6]);
    h.table.pruneAbortedBefore(2);
    expect(h.table.abortedTransactions(0).map((t) => t.firstOffset)).toEqual([2, 6]);
  });

  it('a marker ends no transaction when none is open, and one with a higher epoch bumps the epoch', () => {
    const h = harness();
    h.append(batch(1, 0, 0, 3));
    h.append(marker(1, 1), { control: ControlType.ABORT });
    expect(h.table.abortedTransactions(0)).toEqual([]);
    expect(h.table.producer(1)).toMatchObject({ epoch: 1, lastSequence: -1, batches: [] });
    expect(errorOf(() => h.append(batch(1, 0, 3))).code).toBe('PRODUCER_FENCED');
    expect(errorOf(() => h.append(batch(1, 1, 3))).code).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(h.append(batch(1, 1, 0))).toEqual({ baseOffset: 4, lastOffset: 4 });
    // A marker from a fenced epoch is refused like its data.
    expect(errorOf(() => h.table.check(marker(1, 0))).code).toBe('PRODUCER_FENCED');
  });

  it('an unknown control record changes nothing but the epoch', () => {
    const h = harness();
    h.append(batch(1, 0, 0, 1, ATTR_TRANSACTIONAL));
    h.append(marker(1, 0));
    expect(h.table.firstUnstableOffset()).toBe(0);
  });
});

describe('ProducerStateTable: expiry and data', () => {
  it('expires idle producers, never one with an open transaction or an append in flight', () => {
    const table = new ProducerStateTable();
    table.apply(batch(1, 0, 0), { baseOffset: 0, lastOffset: 0 }, { now: 100 });
    table.apply(batch(2, 0, 0, 1, ATTR_TRANSACTIONAL), { baseOffset: 1, lastOffset: 1 }, { now: 100 });
    table.apply(batch(3, 0, 0), { baseOffset: 2, lastOffset: 2 }, { now: 100, pending: new Promise(() => undefined) });
    table.apply(batch(4, 0, 0), { baseOffset: 3, lastOffset: 3 }, { now: 900 });
    expect(table.expire(1_000, 500)).toBe(1);
    expect(table.producers().map((p) => p.producerId)).toEqual([2, 3, 4]);
  });

  it('round-trips through toData / fromData', () => {
    const h = harness();
    h.append(batch(5, 1, 10, 3));
    h.append(batch(6, 0, 0, 1, ATTR_TRANSACTIONAL));
    h.append(batch(7, 0, 0, 1, ATTR_TRANSACTIONAL));
    h.append(marker(7, 0), { control: ControlType.ABORT });
    const copy = ProducerStateTable.fromData(JSON.parse(JSON.stringify(h.table.toData())));
    expect(copy.toData()).toEqual(h.table.toData());
    expect(copy.lastStableOffset(100)).toBe(3);
    expect(copy.check(batch(5, 1, 10, 3))).toMatchObject({ kind: 'duplicate', baseOffset: 0, lastOffset: 2 });
    expect(copy.abortedTransactions(0)).toEqual([{ producerId: 7, firstOffset: 4, lastOffset: 5 }]);
  });
});
