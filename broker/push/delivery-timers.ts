import { SortedQueue } from './sorted-queue.js';
import type { Entry } from './delivery-entry.js';

/** A deadline or a redelivery time. Immutable: a moved deadline is a new timer, the old one goes stale. */
export interface Timer {
  readonly at: number;
  readonly entry: Entry;
  readonly attempt: number;
}

/**
 * The ack deadlines of in-flight deliveries and the redelivery times of delayed entries, for a
 * PartitionDeliveryState (partition-state.ts). Priority queues with lazy deletion: a timer whose
 * entry moved on (settled, redelivered, deadline extended) is stale and skipped when it surfaces.
 */
export class DeliveryTimers {
  readonly #delayed = new SortedQueue<Timer>(byTime);
  readonly #deadlines = new SortedQueue<Timer>(byTime);

  /** The in-flight entry's deadline, at e.deadline for its current attempt. */
  addDeadline(e: Entry): void {
    this.#deadlines.push({ at: e.deadline, entry: e, attempt: e.count });
  }

  /** The delayed entry is redelivered at `at`. */
  addRedelivery(e: Entry, at: number): void {
    this.#delayed.push({ at, entry: e, attempt: e.count });
  }

  /** Drops stale deadlines once there are well over twice as many as `inFlight`, the live ones: O(n), amortised. */
  compactDeadlines(inFlight: number): void {
    if (this.#deadlines.size > 2 * inFlight + 1024) this.#deadlines.retain(isLiveDeadline);
  }

  /** Removes and returns the next live deadline at or before `now`, if any. */
  popExpired(now: number): Timer | undefined {
    for (let t = this.#deadlines.peek(); t !== undefined && t.at <= now; t = this.#deadlines.peek()) {
      this.#deadlines.pop();
      if (isLiveDeadline(t)) return t;
    }
    return undefined;
  }

  /** Removes and returns the next live redelivery at or before `now`, if any. */
  popDue(now: number): Timer | undefined {
    for (let t = this.#delayed.peek(); t !== undefined && t.at <= now; t = this.#delayed.peek()) {
      this.#delayed.pop();
      if (isLiveDelay(t)) return t;
    }
    return undefined;
  }

  /** The earliest deadline or redelivery time not yet acted on (by expire or take), for the dispatcher's timer. */
  nextWakeAt(): number | undefined {
    const deadline = peekWhere(this.#deadlines, isLiveDeadline)?.at;
    const redelivery = peekWhere(this.#delayed, isLiveDelay)?.at;
    if (deadline === undefined) return redelivery;
    return redelivery === undefined ? deadline : Math.min(deadline, redelivery);
  }
}

function isLiveDeadline(t: Timer): boolean {
  return t.entry.state === 'inflight' && t.entry.count === t.attempt && t.entry.deadline === t.at;
}

function isLiveDelay(t: Timer): boolean {
  // An entry is delayed at most once per attempt: leaving 'delayed' takes a delivery or a settlement.
  return t.entry.state === 'delayed' && t.entry.count === t.attempt;
}

function byTime(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.entry.offset < b.entry.offset);
}

function peekWhere(heap: SortedQueue<Timer>, live: (t: Timer) => boolean): Timer | undefined {
  for (let t = heap.peek(); t !== undefined; t = heap.peek()) {
    if (live(t)) return t;
    heap.pop();
  }
  return undefined;
}
