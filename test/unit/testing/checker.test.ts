import { describe, expect, it } from 'vitest';
import { checkHistory, formatCheck, type CheckResult } from '../../../testing/checker.js';
import type { HistoryEvent, HistoryEventInput, RecordRef } from '../../../testing/history.js';

/** Stamps events with index = time = position, as one recorder would. */
function stamp(events: readonly HistoryEventInput[]): HistoryEvent[] {
  return events.map((event, index) => ({ ...event, index, time: index }) as HistoryEvent);
}

const check = (...events: (HistoryEventInput | HistoryEventInput[])[]): CheckResult => checkHistory(stamp(events.flat()));

const rec = (partition: number, offset: number, value: string, topic = 't'): RecordRef => ({ topic, partition, offset, value });

/** A send's invoke and its ok at (partition, offset). */
function acked(value: string, partition: number, offset: number, txn?: string): HistoryEventInput[] {
  const base = { process: 'p', f: 'send', topic: 't', value, ...(txn === undefined ? {} : { txn }) } as const;
  return [
    { ...base, type: 'invoke' },
    { ...base, type: 'ok', partition, offset },
  ];
}

function sendEnds(value: string, type: 'fail' | 'unknown', txn?: string): HistoryEventInput[] {
  const base = { process: 'p', f: 'send', topic: 't', value, ...(txn === undefined ? {} : { txn }) } as const;
  return [
    { ...base, type: 'invoke' },
    { ...base, type, error: 'TIMEOUT' },
  ];
}

const txn = (id: string, type: 'ok' | 'fail' | 'unknown'): HistoryEventInput[] => [
  { process: 'p', f: 'txn', type: 'invoke', txn: id },
  { process: 'p', f: 'txn', type, txn: id },
];
const poll = (process: string, ...records: RecordRef[]): HistoryEventInput => ({ process, f: 'poll', type: 'ok', records });
const deliver = (process: string, ...records: RecordRef[]): HistoryEventInput => ({ process, f: 'deliver', type: 'ok', records });
const ack = (process: string, type: 'ok' | 'fail', ...records: RecordRef[]): HistoryEventInput =>
  type === 'ok' ? { process, f: 'ack', type, records } : { process, f: 'ack', type, records, error: 'GONE' };
const assign = (process: string, partition: number, offset: number): HistoryEventInput => ({
  process,
  f: 'assign',
  type: 'ok',
  partitions: [{ topic: 't', partition, offset }],
});

/** Three acked values at offsets 0..2 of partition 0. */
const threeSends = [acked('a', 0, 0), acked('b', 0, 1), acked('c', 0, 2)];

describe('checkHistory', () => {
  it('passes a clean history and counts it', () => {
    const result = check(
      ...threeSends,
      sendEnds('f', 'fail'),
      sendEnds('u', 'unknown'),
      assign('c1', 0, 0),
      poll('c1', rec(0, 0, 'a'), rec(0, 1, 'b')),
      { process: 'nemesis', f: 'fault', type: 'ok', fault: 'kill', detail: 'broker' },
      poll('c1', rec(0, 2, 'c')),
    );
    expect(result.valid).toBe(true);
    expect(result.stats).toEqual({
      sends: { invoked: 5, acked: 3, failed: 1, unknown: 1 },
      reads: { polled: 3, delivered: 0, acked: 0 },
      consumed: 3,
      redeliveries: 0,
    });
    expect(formatCheck(result)).toMatch(/^VALID: 5 sent \(3 acked, 1 failed, 1 unknown\)/);
  });

  describe('lost', () => {
    it('splits lost values into prefix, middle and postfix against the offsets read', () => {
      const sends = [acked('a', 0, 0), acked('b', 0, 1), acked('c', 0, 2), acked('d', 0, 3), acked('e', 0, 4)];
      const result = check(...sends, poll('c1', rec(0, 1, 'b')), poll('c2', rec(0, 3, 'd')));
      expect(result.lost.map((l) => [l.value, l.region, l.ackedAt])).toEqual([
        ['a', 'prefix', 1],
        ['c', 'middle', 5],
        ['e', 'postfix', 9],
      ]);
      expect(result.unreadPartitions).toEqual([]);
      expect(result.valid).toBe(false);
    });

    it('calls everything in a partition nobody read postfix, and lists the partition', () => {
      const result = check(acked('a', 0, 0), acked('b', 1, 0), poll('c1', rec(0, 0, 'a')));
      expect(result.lost).toEqual([{ topic: 't', partition: 1, offset: 0, value: 'b', region: 'postfix', ackedAt: 3 }]);
      expect(result.unreadPartitions).toEqual([{ topic: 't', partition: 1 }]);
    });

    it('counts a poll and any ack (the handler finished) as consumed, not a delivery alone', () => {
      const observed = [deliver('s1', rec(0, 0, 'a'), rec(0, 1, 'b')), ack('s1', 'fail', rec(0, 1, 'b'))];
      expect(check(acked('a', 0, 0), acked('b', 0, 1), ...observed).lost.map((l) => l.value)).toEqual(['a']);
      const consumed = check(acked('a', 0, 0), acked('b', 0, 1), ...observed, ack('s1', 'ok', rec(0, 0, 'a'), rec(0, 1, 'b')));
      expect(consumed.valid).toBe(true);
      expect(consumed.stats.reads).toEqual({ polled: 0, delivered: 2, acked: 2 });
    });

    it('never counts an unknown or uncommitted send as lost', () => {
      const result = check(
        sendEnds('u', 'unknown'),
        acked('x', 0, 0, 'tx1'),
        txn('tx1', 'unknown'),
        acked('y', 0, 1, 'tx2'),
        txn('tx2', 'fail'),
        acked('z', 0, 2, 'tx3'), // a transaction never ended
        sendEnds('f', 'fail'),
      );
      expect(result.valid).toBe(true);
      expect(result.stats.sends).toEqual({ invoked: 5, acked: 0, failed: 2, unknown: 3 });
    });

    it('counts a committed transactional send as acked', () => {
      const result = check(acked('x', 0, 0, 'tx1'), txn('tx1', 'ok'));
      expect(result.lost.map((l) => l.value)).toEqual(['x']);
    });
  });

  describe('unexpected', () => {
    it('reports a value no send ever invoked, once, at its first read', () => {
      const result = check(acked('a', 0, 0), poll('c1', rec(0, 0, 'a'), rec(0, 1, 'ghost')), deliver('s1', rec(0, 1, 'ghost')));
      expect(result.unexpected).toEqual([{ topic: 't', partition: 0, offset: 1, value: 'ghost', process: 'c1', index: 2, via: 'poll' }]);
      expect(formatCheck(result)).toContain('unexpected: 1\n  t/0@1 "ghost" by c1 (poll, event 2)');
    });

    it('accepts a read of a send whose outcome is unknown', () => {
      expect(check(sendEnds('u', 'unknown'), poll('c1', rec(0, 0, 'u'))).valid).toBe(true);
    });
  });

  describe('duplicated', () => {
    it('reports a value at two positions, from sends and reads together', () => {
      const result = check(acked('a', 0, 0), poll('c1', rec(0, 0, 'a')), poll('c2', rec(0, 5, 'a')));
      expect(result.duplicated).toEqual([
        {
          value: 'a',
          positions: [
            { topic: 't', partition: 0, offset: 0 },
            { topic: 't', partition: 0, offset: 5 },
          ],
        },
      ]);
    });

    it('does not count reading one position again (a redelivery)', () => {
      const result = check(
        acked('a', 0, 0),
        deliver('s1', rec(0, 0, 'a')),
        deliver('s1', rec(0, 0, 'a')),
        deliver('s2', rec(0, 0, 'a')),
        ack('s2', 'ok', rec(0, 0, 'a')),
        poll('c1', rec(0, 0, 'a')),
      );
      expect(result.valid).toBe(true);
      expect(result.stats.redeliveries).toBe(2);
    });
  });

  describe('inconsistent offsets', () => {
    it('reports one offset read with two values', () => {
      const result = check(acked('a', 0, 0), acked('b', 0, 1), poll('c1', rec(0, 0, 'a'), rec(0, 1, 'b')), poll('c2', rec(0, 0, 'b')));
      expect(result.inconsistentOffsets).toEqual([{ topic: 't', partition: 0, offset: 0, values: ['a', 'b'] }]);
      expect(result.duplicated.map((d) => d.value)).toEqual(['b']);
    });

    it('reports two sends acked at one offset', () => {
      const result = check(acked('a', 0, 0), acked('b', 0, 0), poll('c1', rec(0, 0, 'a')));
      expect(result.inconsistentOffsets).toEqual([{ topic: 't', partition: 0, offset: 0, values: ['a', 'b'] }]);
    });

    it('keeps the same offset in different partitions apart', () => {
      const result = check(acked('a', 0, 0), acked('b', 1, 0), poll('c1', rec(0, 0, 'a'), rec(1, 0, 'b')));
      expect(result.valid).toBe(true);
    });
  });

  describe('non-monotonic polls', () => {
    it('reports a poll read at or below the previous one, across and within polls', () => {
      const result = check(
        ...threeSends,
        poll('c1', rec(0, 0, 'a'), rec(0, 1, 'b')),
        poll('c1', rec(0, 1, 'b'), rec(0, 2, 'c')),
        poll('c1', rec(0, 2, 'c'), rec(0, 0, 'a')),
      );
      expect(result.nonMonotonicPolls).toEqual([
        { process: 'c1', topic: 't', partition: 0, previous: 1, offset: 1, index: 7 },
        { process: 'c1', topic: 't', partition: 0, previous: 2, offset: 2, index: 8 },
        { process: 'c1', topic: 't', partition: 0, previous: 2, offset: 0, index: 8 },
      ]);
      expect(formatCheck(result)).toContain('non-monotonic polls: 3\n  c1 t/0: 1 after 1 (event 7)');
    });

    it('accepts a rewind after an assign, another process, and push redeliveries', () => {
      const result = check(
        ...threeSends,
        poll('c1', rec(0, 0, 'a'), rec(0, 1, 'b')),
        assign('c1', 0, 1),
        poll('c1', rec(0, 1, 'b'), rec(0, 2, 'c')),
        poll('c2', rec(0, 0, 'a')),
        deliver('s1', rec(0, 2, 'c')),
        deliver('s1', rec(0, 1, 'b')),
      );
      expect(result.valid).toBe(true);
    });

    it('tracks partitions separately', () => {
      const result = check(acked('a', 0, 5), acked('b', 1, 0), poll('c1', rec(0, 5, 'a'), rec(1, 0, 'b')));
      expect(result.nonMonotonicPolls).toEqual([]);
    });
  });

  describe('skipped offsets', () => {
    it('reports a poll jump past an acked offset', () => {
      const result = check(...threeSends, poll('c1', rec(0, 0, 'a')), poll('c1', rec(0, 2, 'c')), poll('c2', rec(0, 1, 'b')));
      expect(result.skippedOffsets).toEqual([{ process: 'c1', topic: 't', partition: 0, from: 0, to: 2, skipped: [1], count: 1 }]);
      expect(result.lost).toEqual([]);
      expect(formatCheck(result)).toContain('skipped offsets: 1\n  c1 t/0: 0 -> 2 skipped 1 [1]');
    });

    it('reports a first read past the assigned offset', () => {
      const result = check(...threeSends, assign('c1', 0, 0), poll('c1', rec(0, 1, 'b'), rec(0, 2, 'c')), poll('c2', rec(0, 0, 'a')));
      expect(result.skippedOffsets).toEqual([{ process: 'c1', topic: 't', partition: 0, from: 0, to: 1, skipped: [0], count: 1 }]);
    });

    it('counts an offset another consumer read as visible, even with no send recorded', () => {
      const result = check(
        sendEnds('u', 'unknown'),
        poll('c1', rec(0, 0, 'x0'), rec(0, 2, 'x2')),
        poll('c2', rec(0, 1, 'u')),
      );
      expect(result.skippedOffsets.map((s) => s.skipped)).toEqual([[1]]);
    });

    it('passes offsets nobody knows of and aborted data', () => {
      const result = check(
        acked('a', 0, 0),
        acked('x', 0, 1, 'tx1'),
        txn('tx1', 'fail'), // aborted data at 1, its marker at 2
        acked('y', 0, 3, 'tx2'),
        txn('tx2', 'unknown'), // maybe committed, nobody read it
        acked('c', 0, 5),
        assign('c1', 0, 0),
        poll('c1', rec(0, 0, 'a'), rec(0, 5, 'c')),
      );
      expect(result.valid).toBe(true);
    });

    it('caps the listed offsets but counts them all', () => {
      const sends = Array.from({ length: 150 }, (_, i) => acked(`v${i}`, 0, i));
      const reads = Array.from({ length: 150 }, (_, i) => poll('c2', rec(0, i, `v${i}`)));
      const result = check(...sends, ...reads, poll('c1', rec(0, 0, 'v0'), rec(0, 149, 'v149')));
      expect(result.skippedOffsets).toHaveLength(1);
      expect(result.skippedOffsets[0]?.count).toBe(148);
      expect(result.skippedOffsets[0]?.skipped).toHaveLength(100);
    });
  });

  describe('aborted reads', () => {
    it('reports a read of an aborted transaction and of a failed send', () => {
      const result = check(
        acked('x', 0, 0, 'tx1'),
        txn('tx1', 'fail'),
        sendEnds('f', 'fail'),
        poll('c1', rec(0, 0, 'x')),
        deliver('s1', rec(0, 1, 'f')),
      );
      expect(result.abortedReads.map((r) => [r.value, r.reason, r.via])).toEqual([
        ['x', 'txn-aborted', 'poll'],
        ['f', 'send-failed', 'deliver'],
      ]);
      expect(result.unexpected).toEqual([]);
    });

    it('does not make an aborted offset one a poll consumer must read', () => {
      const result = check(
        acked('a', 0, 0),
        acked('x', 0, 1, 'tx1'),
        txn('tx1', 'fail'),
        acked('c', 0, 2),
        poll('c1', rec(0, 0, 'a'), rec(0, 2, 'c')),
        poll('rogue', rec(0, 1, 'x')),
      );
      expect(result.abortedReads.map((r) => r.value)).toEqual(['x']);
      expect(result.skippedOffsets).toEqual([]);
    });

    it('accepts a read of a committed or unresolved transaction', () => {
      const result = check(
        acked('x', 0, 0, 'tx1'),
        txn('tx1', 'ok'),
        acked('y', 0, 1, 'tx2'),
        txn('tx2', 'unknown'),
        poll('c1', rec(0, 0, 'x'), rec(0, 1, 'y')),
      );
      expect(result.valid).toBe(true);
    });
  });

  it('sorts its output whatever the event order', () => {
    const sends = [acked('b', 1, 0), acked('a', 0, 1), acked('c', 0, 0)];
    const forward = check(...sends);
    const backward = check(...[...sends].reverse());
    expect(forward.lost.map((l) => l.value)).toEqual(['c', 'a', 'b']);
    expect(backward.lost.map((l) => [l.value, l.partition, l.offset])).toEqual(forward.lost.map((l) => [l.value, l.partition, l.offset]));
  });

  it('formats counts per anomaly and a few examples', () => {
    const sends = Array.from({ length: 8 }, (_, i) => acked(`v${i}`, 0, i));
    const report = formatCheck(check(...sends, poll('c1', rec(0, 3, 'v3'))));
    expect(report.split('\n').slice(0, 3)).toEqual([
      'INVALID: 8 sent (8 acked, 0 failed, 0 unknown); read 1 polled, 0 delivered, 0 acked; 1 consumed, 0 redelivered',
      'lost: 7 (prefix 3, middle 0, postfix 4)',
      '  t/0@0 "v0" prefix, acked at 1',
    ]);
    expect(report).toContain('  ... and 2 more');
  });
});
