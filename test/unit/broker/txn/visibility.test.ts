import { describe, expect, it } from 'vitest';
import { ATTR_TRANSACTIONAL, decodeBatches, encodeRecordBatch, setBaseOffset } from '../../../../client/protocol/record-batch.js';
import { ControlType, encodeControlBatch } from '../../../../broker/txn/control-record.js';
import { ProducerStateTable } from '../../../../broker/txn/producer-state.js';
import { forEachVisibleBatch, visibleRecords } from '../../../../broker/txn/visibility.js';

/**
 * A log image: batches back to back at consecutive offsets, and the producer state a log
 * holding them would have. Each entry: [producerId, values] (transactional when producerId >= 0),
 * or a marker.
 */
function image(entries: ReadonlyArray<readonly [number, readonly string[]] | readonly ['COMMIT' | 'ABORT', number]>): { bytes: Buffer; table: ProducerStateTable } {
  const table = new ProducerStateTable();
  const parts: Buffer[] = [];
  let offset = 0;
  const seq = new Map<number, number>();
  for (const e of entries) {
    let batch: Buffer;
    if (e[0] === 'COMMIT' || e[0] === 'ABORT') {
      batch = encodeControlBatch({ producerId: e[1], producerEpoch: 0, type: e[0] === 'COMMIT' ? ControlType.COMMIT : ControlType.ABORT });
      table.apply({ producerId: e[1], producerEpoch: 0, baseSequence: -1, lastOffsetDelta: 0, attributes: 0x30, maxTimestamp: 0 }, { baseOffset: offset, lastOffset: offset }, { control: e[0] === 'COMMIT' ? ControlType.COMMIT : ControlType.ABORT });
      offset += 1;
    } else {
      const [pid, values] = e as readonly [number, readonly string[]];
      const baseSequence = pid < 0 ? -1 : (seq.get(pid) ?? 0);
      if (pid >= 0) seq.set(pid, baseSequence + values.length);
      batch = encodeRecordBatch(values.map((v) => ({ value: Buffer.from(v) })), pid < 0 ? {} : { producerId: pid, producerEpoch: 0, baseSequence, attributes: ATTR_TRANSACTIONAL });
      table.apply({ producerId: pid, producerEpoch: 0, baseSequence, lastOffsetDelta: values.length - 1, attributes: pid < 0 ? 0 : ATTR_TRANSACTIONAL, maxTimestamp: 0 }, { baseOffset: offset, lastOffset: offset + values.length - 1 });
      offset += values.length;
    }
    setBaseOffset(batch, offset - (e[0] === 'COMMIT' || e[0] === 'ABORT' ? 1 : (e[1] as readonly string[]).length));
    parts.push(batch);
  }
  return { bytes: Buffer.concat(parts), table };
}

const vals = (records: Buffer): string[] => decodeBatches(records).map((r) => r.value!.toString());

describe('visibility of batches to readers', () => {
  //            0        1,2          3         4           5        6         7
  const log = image([[1, ['a']], [2, ['x', 'y']], [-1, ['p']], ['COMMIT', 1], ['ABORT', 2], [3, ['o']], [-1, ['q']]]);

  it('read_uncommitted: everything but the markers', () => {
    const read = visibleRecords(log.bytes, 0, 8, undefined);
    expect(vals(read.records)).toEqual(['a', 'x', 'y', 'p', 'o', 'q']);
    expect(read.nextOffset).toBe(8);
  });

  it('read_committed: below the last stable offset, without aborted transactions', () => {
    const lso = log.table.lastStableOffset(8);
    expect(lso).toBe(6);
    const read = visibleRecords(log.bytes, 0, lso, log.table.abortedTransactions(0, lso));
    expect(vals(read.records)).toEqual(['a', 'p']);
    expect(read.nextOffset).toBe(6);
  });

  it('a read from inside an aborted range skips it; one that finds only left-out batches still moves on', () => {
    const read = visibleRecords(log.bytes, 2, 6, log.table.abortedTransactions(2, 6));
    expect(vals(read.records)).toEqual(['p']);
    expect(read.nextOffset).toBe(6);
    const onlyMarkers = image([['COMMIT', 9], ['ABORT', 9]]);
    const skipped = visibleRecords(onlyMarkers.bytes, 0, 2, []);
    expect(skipped.records.length).toBe(0);
    expect(skipped.nextOffset).toBe(2);
  });

  it('hands back the read buffer itself, or a view, when it can', () => {
    const plain = image([[-1, ['a']], [-1, ['b']]]);
    expect(visibleRecords(plain.bytes, 0, 2, undefined).records).toBe(plain.bytes);
    const cut = visibleRecords(plain.bytes, 0, 1, undefined).records;
    expect(cut.buffer).toBe(plain.bytes.buffer);
    expect(vals(cut)).toEqual(['a']);
  });

  it('visits kept batches with their offsets', () => {
    const seen: Array<[number, number]> = [];
    forEachVisibleBatch(log.bytes, 1, 8, undefined, ({ baseOffset, lastOffset }) => seen.push([baseOffset, lastOffset]));
    expect(seen).toEqual([[1, 2], [3, 3], [6, 6], [7, 7]]);
  });
});
