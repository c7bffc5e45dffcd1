import { describe, expect, it } from 'vitest';
import { hasCode, type ErrorName } from '../../../../client/protocol/errors.js';
import {
  PartitionDeliveryState,
  type OfferedMessage,
  type PartitionStateOptions,
  type PersistedPartitionState,
} from '../../../../broker/push/partition-state.js';

const ACK_WAIT = 1_000;

function options(o: Partial<PartitionStateOptions> = {}): PartitionStateOptions {
  return { ackWaitMs: ACK_WAIT, maxDeliveries: 3, backoffMs: [], ordering: 'partition', ...o };
}

function state(o: Partial<PartitionStateOptions> = {}, persisted?: PersistedPartitionState): PartitionDeliveryState {
  return new PartitionDeliveryState(options(o), persisted);
}

function plain(...offsets: number[]): OfferedMessage[] {
  return offsets.map((offset) => ({ offset, key: null }));
}

function keyed(...pairs: Array<[number, string | null]>): OfferedMessage[] {
  return pairs.map(([offset, key]) => ({ offset, key }));
}

function offsets(ds: ReadonlyArray<{ offset: number }>): number[] {
  return ds.map((d) => d.offset);
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

function expectCode(fn: () => unknown, code: ErrorName): void {
  const err = errorOf(fn);
  expect(hasCode(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
}

/** JSON round trip, as the lead's store does. */
function restart(s: PartitionDeliveryState, o: Partial<PartitionStateOptions> = {}): PartitionDeliveryState {
  return state(o, JSON.parse(JSON.stringify(s.snapshot())) as PersistedPartitionState);
}

describe('PartitionDeliveryState: offer and take', () => {
  it('delivers offered messages in offset order, first attempts, up to max', () => {
    const s = state();
    s.offer(plain(0, 1, 2, 3));
    expect(s.take(3, 'c1', 0)).toEqual([
      { offset: 0, attempt: 1, redelivered: false, consumerId: 'c1' },
      { offset: 1, attempt: 1, redelivered: false, consumerId: 'c1' },
      { offset: 2, attempt: 1, redelivered: false, consumerId: 'c1' },
    ]);
    expect(offsets(s.take(5, 'c2', 0))).toEqual([3]);
    expect(s.take(5, 'c2', 0)).toEqual([]);
    expect(s.take(0, 'c2', 0)).toEqual([]);
    expect([s.inFlightOf('c1'), s.inFlightOf('c2'), s.inFlightOf('c3')]).toEqual([3, 1, 0]);
  });

  it('moves the read position past the last offer, across log gaps, and counts what is buffered', () => {
    const s = state({}, { ackFloor: 10, acked: [], deliveryCounts: [] });
    expect(s.readPosition).toBe(10);
    s.offer(plain(10, 13, 14));
    expect(s.readPosition).toBe(15);
    expect(s.buffered).toBe(3);
    s.take(2, 'c', 0);
    expect(s.buffered).toBe(1);
    s.offer([]);
    expect(s.readPosition).toBe(15);
  });

  it('refuses an offer that does not continue from the read position in order', () => {
    const s = state();
    s.offer(plain(0, 1));
    expect(() => s.offer(plain(1))).toThrow(/does not follow/);
    expect(() => s.offer(plain(5, 4))).toThrow(/does not follow/);
    expect(s.readPosition).toBe(2); // a refused offer changes nothing
    expect(s.buffered).toBe(2);
  });

  it('offerRanges offers every offset of its ranges, as offer() would, and refuses ranges out of order', () => {
    const persisted: PersistedPartitionState = { ackFloor: 10, acked: [[12, 14], [20, 22]], deliveryCounts: [[11, 2], [16, 1]] };
    const a = state({}, persisted);
    const b = state({}, persisted);
    a.offer(plain(10, 11, 12, 13, 15, 16, 17, 18));
    b.offerRanges([[10, 14], [15, 19]]);
    expect(b.readPosition).toBe(a.readPosition);
    expect(b.snapshot()).toEqual(a.snapshot());
    expect(b.stats()).toEqual(a.stats());
    expect(b.take(100, 'c', 0)).toEqual(a.take(100, 'c', 0));
    expect(() => b.offerRanges([[18, 30]])).toThrow(/does not follow/);
    expect(() => b.offerRanges([[30, 32], [31, 33]])).toThrow(/does not follow/);
    expect(() => b.offerRanges([[30, 30]])).toThrow(/does not follow/);
    b.offerRanges([]);
    expect(b.readPosition).toBe(a.readPosition); // a refused or empty offer changes nothing
  });

  it('hands out due redeliveries before new messages, lowest offset first', () => {
    const s = state();
    s.offer(plain(0, 1, 2, 3, 4));
    s.take(3, 'c', 0);
    s.nack(2, 1, 0);
    s.nack(0, 1, 0, 50); // not due yet at 10
    expect(s.take(10, 'c', 10)).toEqual([
      { offset: 2, attempt: 2, redelivered: true, consumerId: 'c' },
      { offset: 3, attempt: 1, redelivered: false, consumerId: 'c' },
      { offset: 4, attempt: 1, redelivered: false, consumerId: 'c' },
    ]);
    expect(s.take(10, 'c', 50)).toEqual([{ offset: 0, attempt: 2, redelivered: true, consumerId: 'c' }]);
    expect(s.stats().redeliveries).toBe(2);
  });
});

describe('PartitionDeliveryState: ack', () => {
  it('advances the floor over the settled prefix and log gaps; the snapshot keeps settled ranges above it', () => {
    const s = state();
    s.offer(plain(0, 1, 2, 5, 6));
    s.take(5, 'c', 0);
    s.ack(1, 1);
    s.ack(5, 1);
    expect(s.snapshot()).toEqual({ ackFloor: 0, acked: [[1, 2], [3, 6]], deliveryCounts: [[0, 1], [2, 1], [6, 1]] });
    expect(s.stats().oldestUnsettled).toBe(0);
    s.ack(0, 1);
    expect(s.snapshot()).toEqual({ ackFloor: 2, acked: [[3, 6]], deliveryCounts: [[2, 1], [6, 1]] });
    s.ack(2, 1);
    s.ack(6, 1);
    expect(s.snapshot()).toEqual({ ackFloor: 7, acked: [], deliveryCounts: [] });
    expect(s.ackFloor).toBe(7);
    expect(s.stats()).toEqual({ inFlight: 0, awaitingRedelivery: 0, buffered: 0, redeliveries: 0, deadLettered: 0, oldestUnsettled: undefined });
  });

  it('refuses a superseded attempt with STALE_ACK, never applying it to the new attempt', () => {
    const s = state();
    s.offer(plain(0, 1));
    s.take(1, 'c0', 0); // holds the floor at 0 throughout
    s.take(1, 'c1', 1);
    expect(s.expire(ACK_WAIT + 1)).toEqual([
      { offset: 0, attempt: 1, consumerId: 'c0', outcome: 'requeued' },
      { offset: 1, attempt: 1, consumerId: 'c1', outcome: 'requeued' },
    ]);
    expect(s.take(2, 'c2', ACK_WAIT + 1)).toEqual([
      { offset: 0, attempt: 2, redelivered: true, consumerId: 'c2' },
      { offset: 1, attempt: 2, redelivered: true, consumerId: 'c2' },
    ]);
    expectCode(() => s.ack(1, 1), 'STALE_ACK');
    expectCode(() => s.nack(1, 1, ACK_WAIT), 'STALE_ACK');
    expectCode(() => s.reject(1, 1), 'STALE_ACK');
    expectCode(() => s.inProgress(1, 1, ACK_WAIT), 'STALE_ACK');
    expect(s.inFlightOf('c2')).toBe(2);
    expect(s.ack(1, 2)).toBe('acked');
    expect(s.ack(1, 2)).toBe('acked');
    // Settled above the floor at attempt 2: still told apart.
    expectCode(() => s.ack(1, 1), 'STALE_ACK');
    expectCode(() => s.ack(1, 3), 'UNKNOWN_DELIVERY');
    const err = errorOf(() => s.ack(0, 1));
    expect(hasCode(err, 'STALE_ACK') ? err.details : err).toEqual({ offset: 0, attempt: 1, currentAttempt: 2 });
  });

  it('answers UNKNOWN_DELIVERY for never-delivered offsets, unread offsets and attempts not made yet', () => {
    const s = state();
    s.offer(plain(0, 1));
    s.take(1, 'c', 0);
    expectCode(() => s.ack(1, 1), 'UNKNOWN_DELIVERY'); // offered, never delivered
    expectCode(() => s.ack(7, 1), 'UNKNOWN_DELIVERY'); // not read yet
    expectCode(() => s.ack(0, 2), 'UNKNOWN_DELIVERY'); // attempt 2 never happened
    expectCode(() => s.ack(0, 0), 'UNKNOWN_DELIVERY');
    expectCode(() => s.ack(0.5, 1), 'UNKNOWN_DELIVERY');
    expectCode(() => s.nack(1, 1, 0), 'UNKNOWN_DELIVERY');
    expect(s.stats().inFlight).toBe(1);
  });

  it('settles on a late ack of the current attempt: past the deadline, and after expiry until redelivered', () => {
    const s = state({ backoffMs: [5_000] });
    s.offer(plain(0, 1));
    s.take(2, 'c', 0);
    expect(s.ack(0, 1)).toBe('acked'); // deadline passed, expire() not run yet
    expect(s.expire(2 * ACK_WAIT)).toEqual([{ offset: 1, attempt: 1, consumerId: 'c', outcome: 'requeued' }]);
    expect(s.ack(1, 1)).toBe('acked'); // awaiting redelivery
    expect(s.take(5, 'c', 10_000)).toEqual([]);
    expect(s.ackFloor).toBe(2);
  });

  it('is idempotent for settled offsets: the settling attempt, or any attempt below the floor', () => {
    const s = state();
    s.offer(plain(0, 1, 2));
    s.take(3, 'c', 0);
    s.ack(1, 1);
    expect(s.ack(1, 1)).toBe('acked');
    expect(s.ackFloor).toBe(0);
    s.ack(0, 1);
    expect(s.ackFloor).toBe(2);
    expect(s.ack(0, 1)).toBe('acked');
    expect(s.ack(0, 9)).toBe('acked'); // below the floor, the attempt is no longer known
    expect(s.stats().inFlight).toBe(1);
    expectCode(() => s.nack(1, 1, 0), 'STALE_ACK'); // acked: a nack can no longer be applied
  });
});

describe('PartitionDeliveryState: nack and backoff', () => {
  it('requeues after the given delay', () => {
    const s = state();
    s.offer(plain(0));
    s.take(1, 'c', 100);
    expect(s.nack(0, 1, 200, 500)).toBe('requeued');
    expect(s.nextWakeAt()).toBe(700);
    expect(s.take(1, 'c', 699)).toEqual([]);
    expect(s.stats().awaitingRedelivery).toBe(1);
    expect(s.take(1, 'c', 700)).toEqual([{ offset: 0, attempt: 2, redelivered: true, consumerId: 'c' }]);
  });

  it('without a delay, waits backoffMs[attempt - 1], the last element repeating', () => {
    const s = state({ maxDeliveries: 5, backoffMs: [100, 1_000] });
    s.offer(plain(0));
    let now = 0;
    const waits: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      expect(s.take(1, 'c', now)).toEqual([{ offset: 0, attempt, redelivered: attempt > 1, consumerId: 'c' }]);
      s.nack(0, attempt, now);
      const at = s.nextWakeAt() as number;
      waits.push(at - now);
      expect(s.take(1, 'c', at - 1)).toEqual([]);
      now = at;
    }
    expect(waits).toEqual([100, 1_000, 1_000, 1_000]);
  });

  it('with an empty backoff, requeues at once', () => {
    const s = state();
    s.offer(plain(0));
    s.take(1, 'c', 0);
    s.nack(0, 1, 0);
    expect(s.nextWakeAt()).toBeUndefined();
    expect(offsets(s.take(1, 'c', 0))).toEqual([0]);
  });

  it('does nothing for a nack of a delivery already requeued', () => {
    const s = state({ backoffMs: [1_000] });
    s.offer(plain(0));
    s.take(1, 'c', 0);
    s.expire(ACK_WAIT);
    expect(s.nack(0, 1, ACK_WAIT, 0)).toBe('requeued');
    expect(s.take(1, 'c', ACK_WAIT)).toEqual([]); // still waits out the backoff of the timeout
    expect(s.take(1, 'c', 2 * ACK_WAIT)).toEqual([{ offset: 0, attempt: 2, redelivered: true, consumerId: 'c' }]);
  });

  it('delivers a poison message exactly maxDeliveries times, then reports dead-letter once', () => {
    const s = state({ maxDeliveries: 4, backoffMs: [10] });
    s.offer(plain(0, 1));
    let now = 0;
    const outcomes: string[] = [];
    let deliveries = 0;
    for (let round = 0; round < 20; round++, now += 10) {
      for (const d of s.take(10, 'c', now)) {
        if (d.offset === 0) {
          deliveries++;
          outcomes.push(s.nack(0, d.attempt, now));
        } else s.ack(d.offset, d.attempt);
      }
    }
    expect(deliveries).toBe(4);
    expect(outcomes).toEqual(['requeued', 'requeued', 'requeued', 'dead-letter']);
    expect(s.pendingDeadLetters()).toEqual([0]);
    expect(s.isPendingDeadLetter(0)).toBe(true);
    expect(s.ackFloor).toBe(0); // neither deliverable nor settled
    expect(s.nack(0, 4, now)).toBe('dead-letter'); // a retried nack gets the same answer
    s.deadLettered(0);
    expect(s.pendingDeadLetters()).toEqual([]);
    expect(s.ackFloor).toBe(2);
    expect(s.stats().deadLettered).toBe(1);
    expectCode(() => s.nack(0, 4, now), 'STALE_ACK'); // below the floor: how it settled is forgotten
    s.deadLettered(0); // again: nothing
    expect(s.stats().deadLettered).toBe(1);
  });
});

describe('PartitionDeliveryState: reject and dead letters', () => {
  it('sends a message to the dead-letter path whatever its count, and holds the floor until written', () => {
    const s = state({ maxDeliveries: 10 });
    s.offer(plain(0, 1));
    s.take(2, 'c', 0);
    expect(s.reject(0, 1)).toBe('dead-letter');
    expect(s.reject(0, 1)).toBe('dead-letter'); // a retry: the same answer, nothing changes
    expect(s.pendingDeadLetters()).toEqual([0]);
    expect(s.stats()).toMatchObject({ inFlight: 1, awaitingRedelivery: 0 });
    expect(s.inFlightOf('c')).toBe(1);
    s.ack(1, 1);
    expect(s.take(5, 'c', 5_000)).toEqual([]);
    expect(s.expire(5_000)).toEqual([]);
    expect(s.ackFloor).toBe(0);
    s.deadLettered(0);
    expect(s.ackFloor).toBe(2);
    expect(s.ack(0, 1)).toBe('acked');
  });

  it('a late ack of the last attempt while awaiting dead-lettering settles it', () => {
    const s = state({ maxDeliveries: 1 });
    s.offer(plain(0));
    s.take(1, 'c', 0);
    expect(s.expire(ACK_WAIT)).toEqual([{ offset: 0, attempt: 1, consumerId: 'c', outcome: 'dead-letter' }]);
    expect(s.ack(0, 1)).toBe('acked');
    expect(s.pendingDeadLetters()).toEqual([]);
    expect(s.isPendingDeadLetter(0)).toBe(false);
    s.deadLettered(0); // the dispatcher's write raced the ack: nothing
    expect(s.stats().deadLettered).toBe(0);
    expect(s.ackFloor).toBe(1);
  });

  it('refuses deadLettered for an offset that was not sent down the dead-letter path', () => {
    const s = state();
    s.offer(plain(0));
    s.take(1, 'c', 0);
    expect(() => s.deadLettered(0)).toThrow(/not waiting to be dead-lettered/);
    s.deadLettered(42); // unknown: nothing
  });
});

describe('PartitionDeliveryState: deadlines', () => {
  it('inProgress moves the deadline to now + ackWaitMs', () => {
    const s = state();
    s.offer(plain(0));
    s.take(1, 'c', 0);
    s.inProgress(0, 1, 900);
    expect(s.nextWakeAt()).toBe(1_900);
    expect(s.expire(1_899)).toEqual([]);
    expect(s.expire(1_900)).toEqual([{ offset: 0, attempt: 1, consumerId: 'c', outcome: 'requeued' }]);
    s.inProgress(0, 1, 2_000); // no longer in flight: nothing
    expect(s.stats().inFlight).toBe(0);
  });

  it('expire requeues per backoff in deadline order, and dead-letters at maxDeliveries', () => {
    const s = state({ maxDeliveries: 2, backoffMs: [300] });
    s.offer(plain(0, 1, 2));
    s.take(1, 'a', 0);
    s.take(1, 'b', 10);
    s.take(1, 'c', 20);
    expect(s.expire(1_015)).toEqual([
      { offset: 0, attempt: 1, consumerId: 'a', outcome: 'requeued' },
      { offset: 1, attempt: 1, consumerId: 'b', outcome: 'requeued' },
    ]);
    expect(s.nextWakeAt()).toBe(1_020);
    expect(s.expire(1_020)).toEqual([{ offset: 2, attempt: 1, consumerId: 'c', outcome: 'requeued' }]);
    expect(s.nextWakeAt()).toBe(1_315);
    expect(offsets(s.take(5, 'a', 1_315))).toEqual([0, 1]);
    expect(s.expire(2_315)).toEqual([
      { offset: 0, attempt: 2, consumerId: 'a', outcome: 'dead-letter' },
      { offset: 1, attempt: 2, consumerId: 'a', outcome: 'dead-letter' },
    ]);
    expect(s.pendingDeadLetters()).toEqual([0, 1]);
  });

  it('nextWakeAt is the earliest deadline or redelivery time not yet acted on', () => {
    const s = state();
    expect(s.nextWakeAt()).toBeUndefined();
    s.offer(plain(0, 1));
    s.take(2, 'c', 0);
    s.nack(1, 1, 0, 400);
    expect(s.nextWakeAt()).toBe(400);
    s.ack(1, 1); // awaiting redelivery, then acked: its timer is gone
    expect(s.nextWakeAt()).toBe(ACK_WAIT);
    s.ack(0, 1);
    expect(s.nextWakeAt()).toBeUndefined();
  });
});

describe('PartitionDeliveryState: release', () => {
  it('requeues a departed consumer\'s deliveries at once; they counted as deliveries', () => {
    const s = state({ maxDeliveries: 2, backoffMs: [10_000] });
    s.offer(plain(0, 1, 2));
    s.take(1, 'keep', 0);
    s.take(2, 'gone', 0);
    expect(s.release('gone', 5)).toEqual([
      { offset: 1, outcome: 'requeued' },
      { offset: 2, outcome: 'requeued' },
    ]);
    expect(s.inFlightOf('gone')).toBe(0);
    expect(s.release('gone', 5)).toEqual([]);
    expect(s.take(5, 'other', 5)).toEqual([
      { offset: 1, attempt: 2, redelivered: true, consumerId: 'other' },
      { offset: 2, attempt: 2, redelivered: true, consumerId: 'other' },
    ]);
    expect(s.release('other', 6)).toEqual([
      { offset: 1, outcome: 'dead-letter' },
      { offset: 2, outcome: 'dead-letter' },
    ]);
    expect(s.inFlightOf('keep')).toBe(1);
  });
});

describe('PartitionDeliveryState: key ordering', () => {
  it('holds a key\'s later messages until the earlier one settles; other keys and null keys flow', () => {
    const s = state({ ordering: 'key' });
    s.offer(keyed([0, 'a'], [1, 'a'], [2, 'b'], [3, null], [4, null], [5, 'b'], [6, 'a']));
    expect(offsets(s.take(10, 'c', 0))).toEqual([0, 2, 3, 4]);
    expect(s.buffered).toBe(3);
    s.ack(2, 1);
    expect(offsets(s.take(10, 'c', 0))).toEqual([5]);
    s.ack(0, 1);
    expect(offsets(s.take(10, 'c', 0))).toEqual([1]);
    s.ack(1, 1);
    expect(offsets(s.take(10, 'c', 0))).toEqual([6]);
  });

  it('keeps a key locked while its message awaits redelivery or dead-lettering', () => {
    const s = state({ ordering: 'key', maxDeliveries: 2 });
    s.offer(keyed([0, 'a'], [1, 'a'], [2, 'b']));
    expect(offsets(s.take(10, 'c', 0))).toEqual([0, 2]);
    s.nack(0, 1, 0, 100);
    expect(s.take(10, 'c', 50)).toEqual([]);
    expect(s.take(10, 'c', 100)).toEqual([{ offset: 0, attempt: 2, redelivered: true, consumerId: 'c' }]);
    expect(s.nack(0, 2, 100)).toBe('dead-letter');
    expect(s.take(10, 'c', 10_000)).toEqual([]);
    s.deadLettered(0);
    expect(offsets(s.take(10, 'c', 10_000))).toEqual([1]);
  });

  it('partition ordering does not hold back messages with the same key', () => {
    const s = state({ ordering: 'partition' });
    s.offer(keyed([0, 'a'], [1, 'a']));
    expect(offsets(s.take(10, 'c', 0))).toEqual([0, 1]);
  });
});

describe('PartitionDeliveryState: restart', () => {
  it('restarts at the floor, skips acked ranges and redelivers with the remembered counts', () => {
    const s = state({ maxDeliveries: 5 });
    s.offer(plain(0, 1, 2, 3, 4));
    s.take(5, 'c', 0);
    s.ack(1, 1);
    s.ack(3, 1);
    s.nack(2, 1, 0);
    s.take(5, 'c', 0); // 2, attempt 2
    const r = restart(s, { maxDeliveries: 5 });
    expect(r.readPosition).toBe(0);
    expect(r.stats()).toMatchObject({ inFlight: 0, awaitingRedelivery: 3, buffered: 0 });
    r.offer(plain(0, 1, 2, 3, 4, 5));
    expect(r.take(10, 'c', 0)).toEqual([
      { offset: 0, attempt: 2, redelivered: true, consumerId: 'c' },
      { offset: 2, attempt: 3, redelivered: true, consumerId: 'c' },
      { offset: 4, attempt: 2, redelivered: true, consumerId: 'c' },
      { offset: 5, attempt: 1, redelivered: false, consumerId: 'c' },
    ]);
  });

  it('sends a message delivered maxDeliveries times to pendingDeadLetters at once, before it is read', () => {
    const r = state({ ordering: 'key' }, { ackFloor: 10, acked: [], deliveryCounts: [[12, 3], [11, 1]] });
    expect(r.pendingDeadLetters()).toEqual([12]);
    expect(r.stats()).toMatchObject({ awaitingRedelivery: 1, buffered: 0, oldestUnsettled: undefined });
    r.offer(keyed([10, 'k'], [11, 'j'], [12, 'k'], [13, 'k']));
    expect(offsets(r.take(10, 'c', 0))).toEqual([11, 10]);
    r.ack(10, 1);
    expect(r.take(10, 'c', 0)).toEqual([]); // 12 holds key k until dead-lettered
    r.deadLettered(12);
    expect(offsets(r.take(10, 'c', 0))).toEqual([13]);
  });

  it('a late ack of the remembered attempt settles, before and after the message is read again', () => {
    const r = state({}, { ackFloor: 0, acked: [], deliveryCounts: [[0, 1], [1, 2]] });
    expectCode(() => r.ack(0, 2), 'UNKNOWN_DELIVERY');
    expect(r.ack(0, 1)).toBe('acked');
    expectCode(() => r.ack(1, 1), 'STALE_ACK');
    r.offer(plain(0, 1, 2));
    expect(r.ack(1, 2)).toBe('acked');
    expect(r.ack(0, 1)).toBe('acked');
    expect(r.take(10, 'c', 0)).toEqual([{ offset: 2, attempt: 1, redelivered: false, consumerId: 'c' }]);
    expect(r.ackFloor).toBe(2);
  });

  it('jumps the read position over restored settled ranges; acks inside them are idempotent', () => {
    const r = state({}, { ackFloor: 0, acked: [[2, 5], [8, 9]], deliveryCounts: [] });
    expect(r.ack(3, 7)).toBe('acked');
    r.offer(plain(0, 1));
    expect(r.readPosition).toBe(5);
    r.offer(plain(5, 6, 7, 8, 9));
    expect(offsets(r.take(10, 'c', 0))).toEqual([0, 1, 5, 6, 7, 9]);
    expect(r.snapshot()).toEqual({ ackFloor: 0, acked: [[2, 5], [8, 9]], deliveryCounts: [[0, 1], [1, 1], [5, 1], [6, 1], [7, 1], [9, 1]] });
  });

  it('keeps not-yet-read ranges and counts in its own snapshot', () => {
    const r = state({}, { ackFloor: 0, acked: [[4, 6]], deliveryCounts: [[3, 2], [7, 1]] });
    r.offer(plain(0, 1));
    r.take(2, 'c', 0);
    r.ack(0, 1);
    expect(r.snapshot()).toEqual({ ackFloor: 1, acked: [[4, 6]], deliveryCounts: [[1, 1], [3, 2], [7, 1]] });
  });

  it('forgets remembered counts of offsets no longer in the log', () => {
    const r = state({}, { ackFloor: 0, acked: [], deliveryCounts: [[1, 1], [2, 3]] });
    expect(r.pendingDeadLetters()).toEqual([2]);
    r.offer(plain(5)); // retention removed 0..4
    expect(r.pendingDeadLetters()).toEqual([]);
    expect(r.stats()).toMatchObject({ awaitingRedelivery: 0, buffered: 1, oldestUnsettled: 5 });
    r.deadLettered(2); // the dispatcher's queued job: nothing
    expect(r.snapshot()).toEqual({ ackFloor: 5, acked: [], deliveryCounts: [] });
  });

  it('markSettled settles offsets found in the dead-letter topic, read or not', () => {
    const r = state({}, { ackFloor: 0, acked: [], deliveryCounts: [[0, 3], [4, 1]] });
    r.markSettled(0);
    r.markSettled(2);
    r.markSettled(4);
    expect(r.pendingDeadLetters()).toEqual([]);
    expect(r.ackFloor).toBe(1);
    expect(r.snapshot()).toEqual({ ackFloor: 1, acked: [[2, 3], [4, 5]], deliveryCounts: [] });
    r.offer(plain(0, 1, 2, 3, 4, 5));
    expect(offsets(r.take(10, 'c', 0))).toEqual([1, 3, 5]);
    r.markSettled(3);
    expect(r.inFlightOf('c')).toBe(2);
  });

  it('runs the floor on over offsets settled beyond the read position, overlapping restored ranges', () => {
    const r = state({}, { ackFloor: 0, acked: [[2, 5], [6, 8]], deliveryCounts: [] });
    for (const offset of [0, 1, 2, 5]) r.markSettled(offset);
    expect(r.ackFloor).toBe(8);
    expect(r.snapshot()).toEqual({ ackFloor: 8, acked: [], deliveryCounts: [] });
    r.offer(plain(0, 1, 2, 3, 4, 5, 6, 7, 8));
    expect(r.readPosition).toBe(9);
    expect(offsets(r.take(10, 'c', 0))).toEqual([8]);
  });

  it('normalises what it restores and refuses values that are not offsets', () => {
    const r = state({}, { ackFloor: 5, acked: [[9, 12], [3, 7], [7, 8], [10, 11]], deliveryCounts: [[4, 1], [10, 2], [13, 0], [14, 1], [14, 2]] });
    expect(r.readPosition).toBe(8);
    expect(r.snapshot()).toEqual({ ackFloor: 8, acked: [[9, 12]], deliveryCounts: [[14, 2]] });
    const garbage = [
      { ackFloor: -1, acked: [], deliveryCounts: [] },
      { ackFloor: 0, acked: [[1, 'x']], deliveryCounts: [] },
      { ackFloor: 0, acked: [], deliveryCounts: [[1.5, 1]] },
      { ackFloor: 0, acked: null, deliveryCounts: [] },
    ];
    for (const p of garbage) expectCode(() => state({}, p as unknown as PersistedPartitionState), 'STORAGE_ERROR');
  });

  it('with ordering changed to key across a restart, a redelivery behind its key waits its turn', () => {
    const s = state({ ordering: 'partition' });
    s.offer(keyed([0, 'a'], [1, 'a']));
    s.take(2, 'c', 0);
    const r = restart(s, { ordering: 'key' });
    r.offer(keyed([0, 'a'], [1, 'a']));
    expect(offsets(r.take(10, 'c', 0))).toEqual([0]);
    expect(r.stats().awaitingRedelivery).toBe(1);
    r.ack(0, 2);
    expect(r.take(10, 'c', 0)).toEqual([{ offset: 1, attempt: 2, redelivered: true, consumerId: 'c' }]);
  });
});

describe('PartitionDeliveryState: options and scale', () => {
  it('refuses invalid options with INVALID_CONFIG', () => {
    for (const bad of [{ ackWaitMs: 0 }, { maxDeliveries: 0 }, { maxDeliveries: 1.5 }, { backoffMs: [-1] }, { ordering: 'x' as 'key' }]) {
      expectCode(() => state(bad), 'INVALID_CONFIG');
    }
    expect(() => state({ maxDeliveries: Infinity })).not.toThrow();
  });

  it('keeps a held delivery\'s deadline while the stale ones of settled deliveries are pruned behind it', () => {
    const s = state();
    const n = 50_000;
    s.offerRanges([[0, n]]);
    const stuck = s.take(1, 'slow', 0);
    for (let now = 0; s.buffered > 0; now++) for (const d of s.take(1_000, 'fast', now)) s.ack(d.offset, d.attempt);
    expect(stuck).toHaveLength(1);
    expect(s.nextWakeAt()).toBe(ACK_WAIT); // the held one's deadline is still the earliest
    expect(s.expire(ACK_WAIT)).toEqual([{ offset: 0, attempt: 1, consumerId: 'slow', outcome: 'requeued' }]);
  });

  it('keeps the snapshot small while one message holds the floor', () => {
    const s = state();
    const n = 50_000;
    s.offer(plain(...Array.from({ length: n }, (_, i) => i)));
    const stuck = s.take(1, 'slow', 0);
    for (let now = 0; s.buffered > 0; now++) for (const d of s.take(1_000, 'fast', now)) s.ack(d.offset, d.attempt);
    expect(stuck).toHaveLength(1);
    expect(s.snapshot()).toEqual({ ackFloor: 0, acked: [[1, n]], deliveryCounts: [[0, 1]] });
    s.ack(0, 1);
    expect(s.snapshot()).toEqual({ ackFloor: n, acked: [], deliveryCounts: [] });
  });
});
