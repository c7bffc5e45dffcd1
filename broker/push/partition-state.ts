import { SortedQueue } from './sorted-queue.js';
import { SluiceError } from '../../client/protocol/errors.js';
import { appendRange, findRange, normalizePersisted, type OffsetRange } from './ranges.js';

export type Ordering = 'partition' | 'key';

export interface PartitionStateOptions {
  /** A delivery not settled within this is redelivered (or dead-lettered at maxDeliveries). */
  ackWaitMs: number;
  /** Deliveries of one message before it goes to the dead-letter path; Infinity for no limit. */
  maxDeliveries: number;
  /** Redelivery delay after failed attempt n: backoffMs[n-1], the last one repeating; empty = at once. */
  backoffMs: readonly number[];
  ordering: Ordering;
}

/** What survives a restart (persisted as JSON in SQLite). */
export interface PersistedPartitionState {
  ackFloor: number;
  /** Settled ranges above the floor, [start, end), sorted and disjoint. */
  acked: Array<[start: number, end: number]>;
  /** Deliveries so far of unsettled offsets. */
  deliveryCounts: Array<[offset: number, count: number]>;
}

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
 * Where one known offset stands.
 * - ahead: known but not placed yet: a restored delivery count whose message was not offered
 *   again yet (its key is still unknown), or a new message for the instant of its offer;
 * - blocked: ordering 'key', behind an unsettled message with the same key;
 * - fresh: never delivered, deliverable; ready: due for redelivery; delayed: redelivered later;
 * - inflight: delivered, neither settled nor expired; dead: for the dispatcher to dead-letter;
 * - settled: done (most settled entries are forgotten at once, see #settle).
 */
type State = 'ahead' | 'blocked' | 'fresh' | 'ready' | 'delayed' | 'inflight' | 'dead' | 'settled';

interface Entry {
  readonly offset: number;
  key: string | null;
  state: State;
  /** Deliveries so far; once settled, the settling attempt. */
  count: number;
  /** The holder while in flight, else ''. */
  consumerId: string;
  deadline: number;
  settledBy: 'ack' | 'dead-letter' | null;
}

/** A deadline or a redelivery time. Immutable: a moved deadline is a new timer, the old one goes stale. */
interface Timer {
  readonly at: number;
  readonly entry: Entry;
  readonly attempt: number;
}

/** The unsettled entries with one key, in offset order; only the one at `head` may be delivered. */
interface KeyQueue {
  items: Entry[];
  head: number;
}

/** Stands for "settled at its first attempt, by ack": such entries are not kept (see #settle). Frozen: never changed. */
const SETTLED_FIRST = Object.freeze({ offset: -1, key: null, state: 'settled', count: 1, consumerId: '', deadline: 0, settledBy: 'ack' }) as Entry;

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
 * the in-order arrivals that are the common case, a heap for the rest); an ascending window of
 * offsets whose head is the ack floor; a queue per key.
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
  #window: number[] = [];
  #windowHead = 0;
  /** Offsets in the window no longer in #entries. */
  #windowStale = 0;
  readonly #keys = new Map<string, KeyQueue>();
  readonly #fresh = new SortedQueue<Entry>(byOffset);
  readonly #ready = new SortedQueue<Entry>(byOffset);
  readonly #delayed = new SortedQueue<Timer>(byTime);
  readonly #deadlines = new SortedQueue<Timer>(byTime);
  /** In-flight deliveries per consumer; the entries themselves are found in the window (see release). */
  readonly #consumers = new Map<string, number>();
  readonly #dead = new Set<Entry>();
  /** From the snapshot: settled ranges not yet passed by the read position. */
  readonly #restoredAcked: OffsetRange[];
  #restoredIdx = 0;
  /** From the snapshot: entries for the delivery counts, ascending, placed when offered again. */
  readonly #ahead: Entry[];
  #aheadIdx = 0;
  /** Offsets at or above the read position settled before they were offered. */
  readonly #settledAhead = new Set<number>();
  /** Offsets below this may have been settled before the restart, at an attempt nobody remembers. */
  readonly #horizon: number;
  #unsettled = 0;
  #inFlight = 0;
  #buffered = 0;
  #redeliveries = 0;
  #deadLettered = 0;

  constructor(options: PartitionStateOptions, persisted?: PersistedPartitionState) {
    checkOptions(options);
    this.#ackWaitMs = options.ackWaitMs;
    this.#maxDeliveries = options.maxDeliveries;
    this.#backoffMs = [...options.backoffMs];
    this.#keyed = options.ordering === 'key';
    const restored = persisted === undefined ? { floor: 0, acked: [], counts: [] } : normalizePersisted(persisted.ackFloor, persisted.acked, persisted.deliveryCounts);
    this.#readPosition = restored.floor;
    this.#restoredAcked = restored.acked;
    // A message delivered maxDeliveries times before the restart goes to the dead-letter path
    // now, not when it is read again, so the dispatcher finds it in pendingDeadLetters() at once.
    this.#ahead = restored.counts.map(([offset, count]) => {
      const e = newEntry(offset, null, count);
      this.#entries.set(offset, e);
      this.#unsettled++;
      if (count >= this.#maxDeliveries) this.#toDead(e);
      return e;
    });
    const lastRange = restored.acked[restored.acked.length - 1];
    const lastCount = restored.counts[restored.counts.length - 1];
    this.#horizon = Math.max(restored.floor, lastRange?.[1] ?? 0, (lastCount?.[0] ?? -1) + 1);
  }

  /** Next offset the dispatcher should read from the log and offer. */
  get readPosition(): number {
    return this.#readPosition;
  }

  /** Every offset below this is settled (or not in the log). */
  get ackFloor(): number {
    if (this.#windowHead < this.#window.length) return this.#window[this.#windowHead] as number;
    // Nothing unsettled was read: the floor runs on over what is known settled beyond the read position.
    let floor = this.#readPosition;
    for (let i = this.#restoredIdx; ; ) {
      const r = this.#restoredAcked[i];
      if (r !== undefined && r[0] <= floor) {
        floor = Math.max(floor, r[1]);
        i++;
      } else if (this.#settledAhead.has(floor)) floor++;
      else return floor;
    }
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
    if (this.#settledBeforeOffer(offset)) return;
    let e = this.#ahead[this.#aheadIdx];
    if (e !== undefined && e.offset === offset) {
      this.#aheadIdx++;
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
    this.#readPosition = last + 1;
    for (let r = this.#restoredAcked[this.#restoredIdx]; r !== undefined && r[0] <= this.#readPosition; r = this.#restoredAcked[++this.#restoredIdx]) {
      if (r[1] > this.#readPosition) this.#readPosition = r[1];
    }
    this.#passAhead(this.#readPosition);
    if (this.#settledAhead.size > 0) for (const o of this.#settledAhead) if (o < this.#readPosition) this.#settledAhead.delete(o);
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
      const e = popWhere(this.#ready, 'ready') ?? popWhere(this.#fresh, 'fresh');
      if (e === undefined) break;
      if (e.count === 0) this.#buffered--;
      else this.#redeliveries++;
      e.count++;
      e.state = 'inflight';
      e.consumerId = consumerId;
      e.deadline = deadline;
      this.#deadlines.push({ at: deadline, entry: e, attempt: e.count });
      this.#inFlight++;
      out.push({ offset: e.offset, attempt: e.count, redelivered: e.count > 1, consumerId });
    }
    if (out.length > 0) this.#consumers.set(consumerId, (this.#consumers.get(consumerId) ?? 0) + out.length);
    // Settled deliveries leave their deadline behind (dropped lazily from the head); one message
    // held for its whole ack wait must not let the others' pile up behind it.
    if (this.#deadlines.size > 2 * this.#inFlight + 1024) this.#deadlines.retain(isLiveDeadline);
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
    if (e.state === 'inflight') return this.#requeue(e, now + Math.max(0, delayMs ?? this.#backoff(e.count)), now);
    return e.state === 'dead' ? 'dead-letter' : 'requeued';
  }

  /** Sends the offset to the dead-letter path whatever its count. Attempt checks as for ack. */
  reject(offset: number, attempt: number): 'dead-letter' {
    const e = this.#resolve(offset, attempt);
    if (e === undefined || e.state === 'settled') return settledOutcome(offset, attempt, e);
    if (e.state === 'inflight') this.#land(e);
    if (e.state !== 'dead') this.#toDead(e);
    return 'dead-letter';
  }

  /** Moves an in-flight delivery's deadline to now + ackWaitMs (NATS "working"); otherwise nothing. */
  inProgress(offset: number, attempt: number, now: number): void {
    const e = this.#resolve(offset, attempt);
    if (e?.state !== 'inflight') return;
    e.deadline = now + this.#ackWaitMs;
    this.#deadlines.push({ at: e.deadline, entry: e, attempt: e.count });
    // Each call leaves a stale timer behind; a client calling this in a loop must not grow the heap.
    if (this.#deadlines.size > 2 * this.#inFlight + 1024) this.#deadlines.retain(isLiveDeadline);
  }

  /** Deliveries whose deadline is at or before `now`: requeued (per backoff) or, at maxDeliveries, dead-letter. */
  expire(now: number): Array<{ offset: number; attempt: number; consumerId: string; outcome: 'requeued' | 'dead-letter' }> {
    const out: Array<{ offset: number; attempt: number; consumerId: string; outcome: 'requeued' | 'dead-letter' }> = [];
    for (let t = this.#deadlines.peek(); t !== undefined && t.at <= now; t = this.#deadlines.peek()) {
      this.#deadlines.pop();
      if (!isLiveDeadline(t)) continue;
      const { entry: e } = t;
      const consumerId = e.consumerId;
      out.push({ offset: e.offset, attempt: t.attempt, consumerId, outcome: this.#requeue(e, now + this.#backoff(e.count), now) });
    }
    this.#promoteDue(now);
    return out;
  }

  /**
   * The consumer went away: what it holds is requeued for immediate redelivery, in offset order.
   * Those deliveries counted; one that was the maxDeliveries-th goes to the dead-letter path.
   */
  release(consumerId: string, now: number): Array<{ offset: number; outcome: 'requeued' | 'dead-letter' }> {
    if (!this.#consumers.has(consumerId)) return [];
    // Every in-flight entry was offered and is unsettled, so it is in the window, which ascends.
    const out: Array<{ offset: number; outcome: 'requeued' | 'dead-letter' }> = [];
    for (let i = this.#windowHead; i < this.#window.length; i++) {
      const e = this.#entries.get(this.#window[i] as number);
      if (e !== undefined && e.state === 'inflight' && e.consumerId === consumerId) out.push({ offset: e.offset, outcome: this.#requeue(e, now, now) });
    }
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
      this.#settledAhead.add(offset);
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
    return [...this.#dead].map((e) => e.offset).sort((a, b) => a - b);
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
    const ackFloor = this.ackFloor;
    const acked: OffsetRange[] = [];
    const deliveryCounts: Array<[number, number]> = [];
    let next = ackFloor;
    for (let i = this.#windowHead; i < this.#window.length; i++) {
      const offset = this.#window[i] as number;
      const e = this.#entries.get(offset);
      if (e === undefined || e.state === 'settled') continue;
      appendRange(acked, next, offset);
      next = offset + 1;
      if (e.count > 0) deliveryCounts.push([offset, e.count]);
    }
    appendRange(acked, next, this.#readPosition);
    const ahead: OffsetRange[] = [];
    for (let i = this.#restoredIdx; i < this.#restoredAcked.length; i++) {
      const [start, end] = this.#restoredAcked[i] as OffsetRange;
      ahead.push([Math.max(start, this.#readPosition), end]);
    }
    for (const offset of this.#settledAhead) ahead.push([offset, offset + 1]);
    if (this.#settledAhead.size > 0) ahead.sort((a, b) => a[0] - b[0]);
    for (const [start, end] of ahead) appendRange(acked, start, end);
    // Only when nothing below the read position is unsettled: what the floor already covers.
    while (acked.length > 0 && (acked[0] as OffsetRange)[0] < ackFloor) {
      const first = acked[0] as OffsetRange;
      if (first[1] > ackFloor) {
        first[0] = ackFloor;
        break;
      }
      acked.shift();
    }
    for (let i = this.#aheadIdx; i < this.#ahead.length; i++) {
      const e = this.#ahead[i] as Entry;
      if (e.state !== 'settled') deliveryCounts.push([e.offset, e.count]);
    }
    return { ackFloor, acked, deliveryCounts };
  }

  stats(): { inFlight: number; awaitingRedelivery: number; buffered: number; redeliveries: number; deadLettered: number; oldestUnsettled: number | undefined } {
    return {
      inFlight: this.#inFlight,
      awaitingRedelivery: this.#unsettled - this.#inFlight - this.#dead.size - this.#buffered,
      buffered: this.#buffered,
      redeliveries: this.#redeliveries,
      deadLettered: this.#deadLettered,
      oldestUnsettled: this.#window[this.#windowHead],
    };
  }

  /** The earliest deadline or redelivery time not yet acted on (by expire or take), for the dispatcher's timer. */
  nextWakeAt(): number | undefined {
    const deadline = peekWhere(this.#deadlines, isLiveDeadline)?.at;
    const redelivery = peekWhere(this.#delayed, isLiveDelay)?.at;
    if (deadline === undefined) return redelivery;
    return redelivery === undefined ? deadline : Math.min(deadline, redelivery);
  }

  inFlightOf(consumerId: string): number {
    return this.#consumers.get(consumerId) ?? 0;
  }

  /**
   * The entry `attempt` of `offset` addresses: unsettled, or settled with a known settling
   * attempt; undefined when settled at an attempt no longer known. Throws STALE_ACK or
   * UNKNOWN_DELIVERY otherwise.
   */
  #resolve(offset: number, attempt: number): Entry | undefined {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(attempt) || attempt < 1) throw unknownDelivery(offset, attempt);
    const e = this.#entries.get(offset);
    if (e !== undefined) {
      if (attempt < e.count) {
        throw new SluiceError('STALE_ACK', `attempt ${attempt} of offset ${offset} was superseded by attempt ${e.count}`, {
          details: { offset, attempt, currentAttempt: e.count },
        });
      }
      if (attempt > e.count) throw unknownDelivery(offset, attempt);
      return e;
    }
    if (offset >= this.#readPosition) {
      if (this.#settledAhead.has(offset) || findRange(this.#restoredAcked, offset, this.#restoredIdx) >= 0) return undefined;
      throw unknownDelivery(offset, attempt);
    }
    if (offset < this.#horizon || offset < this.ackFloor) return undefined;
    // Settled at its first attempt in this process (later ones are kept), or a gap in the log.
    if (attempt !== 1) throw unknownDelivery(offset, attempt);
    return SETTLED_FIRST;
  }

  #enqueue(e: Entry): void {
    if (this.#keyed && e.key !== null) {
      const queue = this.#keys.get(e.key);
      if (queue !== undefined) {
        queue.items.push(e);
        if (e.state === 'ahead') e.state = 'blocked';
        return;
      }
      this.#keys.set(e.key, { items: [e], head: 0 });
    }
    this.#activate(e);
  }

  /** Makes a placed entry deliverable; one already dead stays so. */
  #activate(e: Entry): void {
    if (e.state !== 'ahead' && e.state !== 'blocked') return;
    if (e.count === 0) {
      e.state = 'fresh';
      this.#fresh.push(e);
    } else if (e.count >= this.#maxDeliveries) {
      this.#toDead(e);
    } else {
      e.state = 'ready';
      this.#ready.push(e);
    }
  }

  #toDead(e: Entry): void {
    e.state = 'dead';
    this.#dead.add(e);
  }

  /** Takes an in-flight entry out of flight (the caller gives it its next state). */
  #land(e: Entry): void {
    const held = (this.#consumers.get(e.consumerId) ?? 1) - 1;
    if (held === 0) this.#consumers.delete(e.consumerId);
    else this.#consumers.set(e.consumerId, held);
    e.consumerId = '';
    this.#inFlight--;
  }

  /** A delivery failed (nack, timeout, consumer gone): redeliver at `notBefore`, or dead-letter at maxDeliveries. */
  #requeue(e: Entry, notBefore: number, now: number): 'requeued' | 'dead-letter' {
    this.#land(e);
    if (e.count >= this.#maxDeliveries) {
      this.#toDead(e);
      return 'dead-letter';
    }
    if (notBefore <= now) {
      e.state = 'ready';
      this.#ready.push(e);
    } else {
      e.state = 'delayed';
      this.#delayed.push({ at: notBefore, entry: e, attempt: e.count });
    }
    return 'requeued';
  }

  #promoteDue(now: number): void {
    for (let t = this.#delayed.peek(); t !== undefined && t.at <= now; t = this.#delayed.peek()) {
      this.#delayed.pop();
      if (!isLiveDelay(t)) continue;
      t.entry.state = 'ready';
      this.#ready.push(t.entry);
    }
  }

  #backoff(attempt: number): number {
    const n = this.#backoffMs.length;
    return n === 0 ? 0 : (this.#backoffMs[Math.min(attempt, n) - 1] as number);
  }

  /**
   * Settles an unsettled entry. Heap items and key-queue slots it leaves behind are dropped
   * lazily. Settled entries are forgotten unless their settling attempt says more than "1, by
   * ack" (kept until the floor passes them, so a stale ack of a settled offset is still told
   * apart): at 200k messages/s with one message stuck at the floor, remembering every settled
   * offset would grow without bound.
   */
  #settle(e: Entry, by: 'ack' | 'dead-letter'): void {
    if (e.state === 'inflight') this.#land(e);
    else if (e.state === 'dead') this.#dead.delete(e);
    if (e.count === 0) this.#buffered--;
    this.#unsettled--;
    e.state = 'settled';
    e.settledBy = by;
    if (e.offset >= this.#readPosition) {
      // Not offered again since the restart: remembered as a settled offset to skip.
      this.#entries.delete(e.offset);
      this.#settledAhead.add(e.offset);
      return;
    }
    this.#unlockKey(e);
    if (e.count <= 1 && by === 'ack') {
      this.#entries.delete(e.offset);
      this.#windowStale++;
    }
    if (e.offset === this.#window[this.#windowHead]) this.#advanceFloor();
    else if (this.#windowStale > 1024 && 2 * this.#windowStale > this.#window.length - this.#windowHead) {
      this.#window = this.#window.slice(this.#windowHead).filter((o) => this.#entries.has(o));
      this.#windowHead = 0;
      this.#windowStale = 0;
    }
  }

  /** Pops settled offsets off the window's head, forgetting kept settled entries the floor passes. */
  #advanceFloor(): void {
    const w = this.#window;
    let head = this.#windowHead;
    for (; head < w.length; head++) {
      const offset = w[head] as number;
      const e = this.#entries.get(offset);
      if (e === undefined) this.#windowStale--;
      else if (e.state === 'settled') this.#entries.delete(offset);
      else break;
    }
    if (head === w.length) {
      w.length = 0;
      head = 0;
    } else if (head > 1024 && 2 * head > w.length) {
      this.#window = w.slice(head);
      head = 0;
    }
    this.#windowHead = head;
  }

  /** The key's head settled: the next unsettled message with that key may go. */
  #unlockKey(e: Entry): void {
    if (!this.#keyed || e.key === null) return;
    const queue = this.#keys.get(e.key);
    // Not the head (possible only for entries restored across a change of ordering): skipped later.
    if (queue === undefined || queue.items[queue.head] !== e) return;
    let head = queue.head + 1;
    while (head < queue.items.length && (queue.items[head] as Entry).state === 'settled') head++;
    if (head === queue.items.length) {
      this.#keys.delete(e.key);
      return;
    }
    if (head > 64 && 2 * head > queue.items.length) {
      queue.items = queue.items.slice(head);
      head = 0;
    }
    queue.head = head;
    this.#activate(queue.items[head] as Entry);
  }

  /** Restored entries below `bound` not offered again are no longer in the log (retention): forgotten. */
  #passAhead(bound: number): void {
    for (let e = this.#ahead[this.#aheadIdx]; e !== undefined && e.offset < bound; e = this.#ahead[++this.#aheadIdx]) {
      if (e.state === 'settled') continue;
      if (e.state === 'dead') this.#dead.delete(e);
      e.state = 'settled';
      this.#entries.delete(e.offset);
      this.#unsettled--;
    }
  }

  /** True (once) for an offset being offered that was settled before: in a restored range, or settled while ahead. */
  #settledBeforeOffer(offset: number): boolean {
    const ranges = this.#restoredAcked;
    while (this.#restoredIdx < ranges.length && (ranges[this.#restoredIdx] as OffsetRange)[1] <= offset) this.#restoredIdx++;
    const r = ranges[this.#restoredIdx];
    if (r !== undefined && r[0] <= offset) return true;
    return this.#settledAhead.size > 0 && this.#settledAhead.delete(offset);
  }
}

function newEntry(offset: number, key: string | null, count: number): Entry {
  return { offset, key, state: 'ahead', count, consumerId: '', deadline: 0, settledBy: null };
}

/** nack or reject of a settled offset: a retry of the dead-lettering one says so again; anything else is stale. */
function settledOutcome(offset: number, attempt: number, e: Entry | undefined): 'dead-letter' {
  if (e?.settledBy === 'dead-letter') return 'dead-letter';
  throw new SluiceError('STALE_ACK', `offset ${offset} is already settled`, { details: { offset, attempt, settled: true } });
}

function unknownDelivery(offset: number, attempt: number): SluiceError {
  return new SluiceError('UNKNOWN_DELIVERY', `offset ${offset} has no delivery attempt ${attempt}`, { details: { offset, attempt } });
}

function isLiveDeadline(t: Timer): boolean {
  return t.entry.state === 'inflight' && t.entry.count === t.attempt && t.entry.deadline === t.at;
}

function isLiveDelay(t: Timer): boolean {
  // An entry is delayed at most once per attempt: leaving 'delayed' takes a delivery or a settlement.
  return t.entry.state === 'delayed' && t.entry.count === t.attempt;
}

function byOffset(a: Entry, b: Entry): boolean {
  return a.offset < b.offset;
}

function byTime(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.entry.offset < b.entry.offset);
}

function popWhere(heap: SortedQueue<Entry>, state: State): Entry | undefined {
  for (let e = heap.pop(); e !== undefined; e = heap.pop()) if (e.state === state) return e;
  return undefined;
}

function peekWhere(heap: SortedQueue<Timer>, live: (t: Timer) => boolean): Timer | undefined {
  for (let t = heap.peek(); t !== undefined; t = heap.peek()) {
    if (live(t)) return t;
    heap.pop();
  }
  return undefined;
}

function checkOptions(o: PartitionStateOptions): void {
  const bad = (what: string): SluiceError => new SluiceError('INVALID_CONFIG', `push subscription: ${what}`);
  if (!(Number.isFinite(o.ackWaitMs) && o.ackWaitMs > 0)) throw bad(`ackWaitMs must be positive, not ${o.ackWaitMs}`);
  if (!(o.maxDeliveries === Infinity || (Number.isSafeInteger(o.maxDeliveries) && o.maxDeliveries >= 1))) {
    throw bad(`maxDeliveries must be a positive integer, not ${o.maxDeliveries}`);
  }
  for (const ms of o.backoffMs) if (!(Number.isFinite(ms) && ms >= 0)) throw bad(`backoffMs must be non-negative, not ${ms}`);
  if (o.ordering !== 'partition' && o.ordering !== 'key') throw bad(`unknown ordering ${String(o.ordering)}`);
}
