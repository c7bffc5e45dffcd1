import { backoffDelay, checkOptions, type PartitionStateOptions } from './partition-options.js';
import { restoreSnapshot, takeSnapshot, type PersistedPartitionState } from './partition-snapshot.js';
import { newEntry, type Entry } from './delivery-entry.js';
import { DeliveryQueues } from './delivery-queues.js';
import { resolveAttempt, settledOutcome } from './delivery-attempts.js';
import { DeliveryTimers } from './delivery-timers.js';
import { KeyQueues } from './key-queues.js';
import { OffsetWindow } from './offset-window.js';
import { AheadOfRead } from './ahead-of-read.js';

export type { Ordering, PartitionStateOptions } from './partition-options.js';
export type { PersistedPartitionState } from './partition-snapshot.js';

export interface OfferedMessage {
  offset: number;
  /** Key bytes as a string id (e.g. base64), or null. */
  key: string | null;
}

export interface Delivery {
  offset: number;
  /** 1-based delivery count. */
  attempt: number;
  redelivered: boolean;
  consumerId: string;
}

export type Settlement = 'acked' | 'requeued' | 'dead-letter';

/**
 * The delivery state of one push subscription on one partition (docs/semantics.md, "Push
 * subscriptions"): what was read from the log, what is in flight with which deadline and
 * attempt, what waits for redelivery or for the dead-letter topic, and the ack floor. Pure: time
 * comes in as `now`, no timers, no I/O; the dispatcher (subscription.ts) drives it.
 *
 * Invariants (test/unit/broker/push/partition-state.model.test.ts checks them under any
 * sequence): no offset is in flight twice; an offset enters flight only through take(), with an
 * attempt one above its last; a settled offset is never delivered again; an offered offset stays
 * pending until settled, and the floor never passes an unsettled one; a message goes to the
 * dead-letter path once, after maxDeliveries deliveries, or when rejected; with ordering 'key',
 * only the lowest unsettled message of a key is ever in flight, awaiting redelivery or dead.
 *
 * Every operation is O(log n) in what is unsettled (amortised): priority queues with lazy
 * deletion for deadlines, redelivery times and the deliverable messages (SortedQueue: O(1) for
 * the in-order arrivals that are the common case, a heap for the rest; delivery-timers.ts,
 * delivery-queues.ts); an ascending window of offsets whose head is the ack floor
 * (offset-window.ts); a queue per key (key-queues.ts).
 */
export class PartitionDeliveryState {
  readonly #ackWaitMs: number;
  readonly #maxDeliveries: number;
  readonly #backoffMs: readonly number[];
  readonly #keyed: boolean;
  #readPosition: number;
  /** Unsettled known offsets, plus settled ones whose settling attempt is worth keeping (see #settle). */
  readonly #entries = new Map<number, Entry>();
  /** Offsets of placed entries, ascending; forgotten ones are dropped lazily. The head is the ack floor. */
  readonly #window = new OffsetWindow(this.#entries);
  readonly #keys = new KeyQueues();
  readonly #queues: DeliveryQueues;
  readonly #timers = new DeliveryTimers();
  /** From the snapshot, and what was settled before it was offered. */
  readonly #ahead: AheadOfRead;
  #unsettled = 0;
  #buffered = 0;
  #redeliveries = 0;
  #deadLettered = 0;

  constructor(options: PartitionStateOptions, persisted?: PersistedPartitionState) {
    checkOptions(options);
    this.#ackWaitMs = options.ackWaitMs;
    this.#maxDeliveries = options.maxDeliveries;
    this.#backoffMs = [...options.backoffMs];
    this.#keyed = options.ordering === 'key';
    this.#queues = new DeliveryQueues(options.maxDeliveries);
    const restored = restoreSnapshot(persisted);
    this.#readPosition = restored.floor;
    this.#ahead = new AheadOfRead(restored);
    // A message delivered maxDeliveries times before the restart goes to the dead-letter path
    // now, not when it is read again, so the dispatcher finds it in pendingDeadLetters() at once.
    this.#ahead.forEachUnoffered((e) => {
      this.#entries.set(e.offset, e);
      this.#unsettled++;
      if (e.count >= this.#maxDeliveries) this.#queues.toDead(e);
    });
  }

  /** Next offset the dispatcher should read from the log and offer. */
  get readPosition(): number {
    return this.#readPosition;
  }

  /** Every offset below this is settled (or not in the log). */
  get ackFloor(): number {
    const first = this.#window.first;
    if (first !== undefined) return first;
    // Nothing unsettled was read: the floor runs on over what is known settled beyond the read position.
    return this.#ahead.floorFrom(this.#readPosition);
  }

  /** Offered messages never delivered yet (the dispatcher stops reading when this is high). */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Messages read from the log from readPosition on, ascending (offsets may skip: the log has
   * gaps). Ones settled before a restart are ignored; readPosition moves past the last, and past
   * settled ranges restored from the snapshot that follow it.
   */
  offer(messages: readonly OfferedMessage[]): void {
    let last = this.#readPosition - 1;
    for (const m of messages) {
      // A dispatcher bug; accepting it would treat the offsets it skipped over as gaps (settled).
      if (!Number.isSafeInteger(m.offset) || m.offset <= last) throw new Error(`offer: offset ${m.offset} does not follow ${last}`);
      last = m.offset;
    }
    if (messages.length === 0) return;
    for (const m of messages) this.#offerOne(m.offset, m.key);
    this.#offered(last);
  }

  /**
   * offer() of every offset in the given [start, end) ranges, with key null (ordering
   * 'partition' ignores keys), without a list entry per message: how the dispatcher offers
   * what it reads. Ranges ascend; offsets between them are gaps in the log.
   */
  offerRanges(ranges: ReadonlyArray<readonly [start: number, end: number]>): void {
    let last = this.#readPosition - 1;
    for (const [start, end] of ranges) {
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start <= last || end <= start) throw new Error(`offerRanges: range [${start}, ${end}) does not follow ${last}`);
      last = end - 1;
    }
    if (ranges.length === 0) return;
    for (const [start, end] of ranges) for (let o = start; o < end; o++) this.#offerOne(o, null);
    this.#offered(last);
  }

  #offerOne(offset: number, key: string | null): void {
    this.#passAhead(offset);
    if (this.#ahead.settledBeforeOffer(offset)) return;
    let e = this.#ahead.takeOffered(offset);
    if (e !== undefined) {
      e.key = key;
    } else {
      e = newEntry(offset, key, 0);
      this.#entries.set(offset, e);
      this.#unsettled++;
      this.#buffered++;
    }
    this.#window.push(offset);
    this.#enqueue(e);
  }

  /** After an offer whose last offset was `last`. */
  #offered(last: number): void {
    this.#readPosition = this.#ahead.skipSettledRanges(last + 1);
    this.#passAhead(this.#readPosition);
    this.#ahead.passedBy(this.#readPosition);
  }

  /**
   * Up to `max` deliveries for `consumerId`: due redeliveries first, then new messages, each
   * lowest offset first. Ordering 'key' holds back a message while an earlier one with its key
   * is unsettled. Each delivery's deadline is now + ackWaitMs.
   */
  take(max: number, consumerId: string, now: number): Delivery[] {
    const out: Delivery[] = [];
    this.#promoteDue(now);
    const deadline = now + this.#ackWaitMs;
    while (out.length < max) {
      const e = this.#queues.next();
      if (e === undefined) break;
      if (e.count === 0) this.#buffered--;
      else this.#redeliveries++;
      e.count++;
      e.state = 'inflight';
      e.consumerId = consumerId;
      e.deadline = deadline;
      this.#timers.addDeadline(e);
      out.push({ offset: e.offset, attempt: e.count, redelivered: e.count > 1, consumerId });
    }
    if (out.length > 0) this.#queues.handed(consumerId, out.length);
    // Settled deliveries leave their deadline behind (dropped lazily from the head); one message
    // held for its whole ack wait must not let the others' pile up behind it.
    this.#timers.compactDeadlines(this.#queues.inFlight);
    return out;
  }

  /**
   * Settles the offset. STALE_ACK if a later attempt superseded `attempt`; UNKNOWN_DELIVERY if
   * that attempt never happened. The current attempt settles even after its deadline, until it
   * is redelivered (so also while awaiting redelivery or dead-lettering). Acking a settled
   * offset again with its settling attempt, or one whose settling attempt is no longer known,
   * returns 'acked' and changes nothing.
   */
  ack(offset: number, attempt: number): 'acked' {
    const e = this.#resolve(offset, attempt);
    if (e !== undefined && e.state !== 'settled') this.#settle(e, 'ack');
    return 'acked';
  }

  /**
   * Requeues an in-flight delivery for redelivery after `delayMs`, else after the backoff for
   * its attempt; at maxDeliveries it goes to the dead-letter path instead. Attempt checks as for
   * ack; a nack of a delivery already requeued (timed out, released) changes nothing.
   */
  nack(offset: number, attempt: number, now: number, delayMs?: number): 'requeued' | 'dead-letter' {
    const e = this.#resolve(offset, attempt);
    if (e === undefined || e.state === 'settled') return settledOutcome(offset, attempt, e);
    if (e.state === 'inflight') return this.#requeue(e, now + Math.max(0, delayMs ?? backoffDelay(this.#backoffMs, e.count)), now);
    return e.state === 'dead' ? 'dead-letter' : 'requeued';
  }

  /** Sends the offset to the dead-letter path whatever its count. Attempt checks as for ack. */
  reject(offset: number, attempt: number): 'dead-letter' {
    const e = this.#resolve(offset, attempt);
    if (e === undefined || e.state === 'settled') return settledOutcome(offset, attempt, e);
    if (e.state === 'inflight') this.#queues.land(e);
    if (e.state !== 'dead') this.#queues.toDead(e);
    return 'dead-letter';
  }

  /** Moves an in-flight delivery's deadline to now + ackWaitMs (NATS "working"); otherwise nothing. */
  inProgress(offset: number, attempt: number, now: number): void {
    const e = this.#resolve(offset, attempt);
    if (e?.state !== 'inflight') return;
    e.deadline = now + this.#ackWaitMs;
    this.#timers.addDeadline(e);
    // Each call leaves a stale timer behind; a client calling this in a loop must not grow the heap.
    this.#timers.compactDeadlines(this.#queues.inFlight);
  }

  /**
   * Ends the leases of in-flight deliveries now (all, or those `match` picks), as if their ack
   * wait ran out: the next `expire(now)` requeues them. sluice/testing's "expire a lease" knob.
   * Returns how many leases it ended.
   */
  endLeases(now: number, match: (offset: number) => boolean = () => true): number {
    let ended = 0;
    for (const e of this.#entries.values()) {
      if (e.state !== 'inflight' || e.deadline <= now || !match(e.offset)) continue;
      e.deadline = now;
      this.#timers.addDeadline(e);
      ended++;
    }
    this.#timers.compactDeadlines(this.#queues.inFlight);
    return ended;
  }

  /** Deliveries whose deadline is at or before `now`: requeued (per backoff) or, at maxDeliveries, dead-letter. */
  expire(now: number): Array<{ offset: number; attempt: number; consumerId: string; outcome: 'requeued' | 'dead-letter' }> {
    const out: Array<{ offset: number; attempt: number; consumerId: string; outcome: 'requeued' | 'dead-letter' }> = [];
    for (let t = this.#timers.popExpired(now); t !== undefined; t = this.#timers.popExpired(now)) {
      const { entry: e } = t;
      const consumerId = e.consumerId;
      out.push({ offset: e.offset, attempt: t.attempt, consumerId, outcome: this.#requeue(e, now + backoffDelay(this.#backoffMs, e.count), now) });
    }
    this.#promoteDue(now);
    return out;
  }

  /**
   * The consumer went away: what it holds is requeued for immediate redelivery, in offset order.
   * Those deliveries counted; one that was the maxDeliveries-th goes to the dead-letter path.
   */
  release(consumerId: string, now: number): Array<{ offset: number; outcome: 'requeued' | 'dead-letter' }> {
    if (!this.#queues.holds(consumerId)) return [];
    // Every in-flight entry was offered and is unsettled, so it is in the window, which ascends.
    const out: Array<{ offset: number; outcome: 'requeued' | 'dead-letter' }> = [];
    this.#window.forEach((e) => {
      if (e.state === 'inflight' && e.consumerId === consumerId) out.push({ offset: e.offset, outcome: this.#requeue(e, now, now) });
    });
    return out;
  }

  /**
   * The dispatcher wrote the dead letter durably: settles the offset. Until then it is neither
   * deliverable nor settled, and keeps its key locked. Nothing happens if it was settled
   * meanwhile (an ack of its last attempt).
   */
  deadLettered(offset: number): void {
    const e = this.#entries.get(offset);
    if (e === undefined || e.state === 'settled') return;
    if (e.state !== 'dead') throw new Error(`deadLettered(${offset}): the offset is ${e.state}, not waiting to be dead-lettered`);
    this.#settle(e, 'dead-letter');
    this.#deadLettered++;
  }

  /** Settles an offset recovery found in the dead-letter topic, whatever its state (offered or not). */
  markSettled(offset: number): void {
    const e = this.#entries.get(offset);
    if (e !== undefined) {
      if (e.state !== 'settled') this.#settle(e, 'dead-letter');
    } else if (Number.isSafeInteger(offset) && offset >= this.#readPosition) {
      this.#ahead.settle(offset);
    }
  }

  /**
   * Retention deleted the log below `offset`: whatever of it is still unsettled can never be
   * delivered again, so it is settled. Returns how many offsets that settled.
   */
  settleBelow(offset: number): number {
    let settled = 0;
    for (const e of [...this.#entries.values()]) {
      if (e.offset < offset && e.state !== 'settled') {
        this.#settle(e, 'ack');
        settled++;
      }
    }
    return settled;
  }

  /** Offsets waiting for the dispatcher to dead-letter them, ascending. */
  pendingDeadLetters(): number[] {
    return this.#queues.pendingDeadLetters();
  }

  /** True while the offset waits to be dead-lettered (false once settled, e.g. acked meanwhile). */
  isPendingDeadLetter(offset: number): boolean {
    return this.#entries.get(offset)?.state === 'dead';
  }

  /**
   * What survives a restart: the floor, settled ranges above it and delivery counts of unsettled
   * offsets. O(unsettled): settled ranges are the gaps between unsettled offsets.
   */
  snapshot(): PersistedPartitionState {
    return takeSnapshot(this.ackFloor, this.#readPosition, this.#window, this.#ahead);
  }

  stats(): { inFlight: number; awaitingRedelivery: number; buffered: number; redeliveries: number; deadLettered: number; oldestUnsettled: number | undefined } {
    return {
      inFlight: this.#queues.inFlight,
      awaitingRedelivery: this.#unsettled - this.#queues.inFlight - this.#queues.dead - this.#buffered,
      buffered: this.#buffered,
      redeliveries: this.#redeliveries,
      deadLettered: this.#deadLettered,
      oldestUnsettled: this.#window.first,
    };
  }

  /** The earliest deadline or redelivery time not yet acted on (by expire or take), for the dispatcher's timer. */
  nextWakeAt(): number | undefined {
    return this.#timers.nextWakeAt();
  }

  inFlightOf(consumerId: string): number {
    return this.#queues.inFlightOf(consumerId);
  }

  /** The entry `attempt` of `offset` addresses, see resolveAttempt; throws STALE_ACK or UNKNOWN_DELIVERY. */
  #resolve(offset: number, attempt: number): Entry | undefined {
    return resolveAttempt(this, this.#ahead, this.#entries.get(offset), offset, attempt);
  }

  #enqueue(e: Entry): void {
    if (this.#keyed && e.key !== null && !this.#keys.enqueue(e, e.key)) return;
    this.#queues.activate(e);
  }

  /** A delivery failed (nack, timeout, consumer gone): redeliver at `notBefore`, or dead-letter at maxDeliveries. */
  #requeue(e: Entry, notBefore: number, now: number): 'requeued' | 'dead-letter' {
    this.#queues.land(e);
    if (e.count >= this.#maxDeliveries) {
      this.#queues.toDead(e);
      return 'dead-letter';
    }
    if (notBefore <= now) {
      this.#queues.toReady(e);
    } else {
      e.state = 'delayed';
      this.#timers.addRedelivery(e, notBefore);
    }
    return 'requeued';
  }

  #promoteDue(now: number): void {
    for (let t = this.#timers.popDue(now); t !== undefined; t = this.#timers.popDue(now)) this.#queues.toReady(t.entry);
  }

  /**
   * Settles an unsettled entry. Heap items and key-queue slots it leaves behind are dropped
   * lazily. Settled entries are forgotten unless their settling attempt says more than "1, by
   * ack" (kept until the floor passes them, so a stale ack of a settled offset is still told
   * apart): at 200k messages/s with one message stuck at the floor, remembering every settled
   * offset would grow without bound.
   */
  #settle(e: Entry, by: 'ack' | 'dead-letter'): void {
    if (e.state === 'inflight') this.#queues.land(e);
    else if (e.state === 'dead') this.#queues.forgetDead(e);
    if (e.count === 0) this.#buffered--;
    this.#unsettled--;
    e.state = 'settled';
    e.settledBy = by;
    if (e.offset >= this.#readPosition) {
      // Not offered again since the restart: remembered as a settled offset to skip.
      this.#entries.delete(e.offset);
      this.#ahead.settle(e.offset);
      return;
    }
    this.#unlockKey(e);
    this.#window.settled(e, e.count <= 1 && by === 'ack');
  }

  /** The key's head settled: the next unsettled message with that key may go. */
  #unlockKey(e: Entry): void {
    if (!this.#keyed || e.key === null) return;
    const next = this.#keys.unlock(e, e.key);
    if (next !== undefined) this.#queues.activate(next);
  }

  /** Restored entries below `bound` not offered again are no longer in the log (retention): forgotten. */
  #passAhead(bound: number): void {
    for (let e = this.#ahead.nextPassed(bound); e !== undefined; e = this.#ahead.nextPassed(bound)) {
      if (e.state === 'settled') continue;
      if (e.state === 'dead') this.#queues.forgetDead(e);
      e.state = 'settled';
      this.#entries.delete(e.offset);
      this.#unsettled--;
    }
  }
}
