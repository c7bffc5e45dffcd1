import { SortedQueue } from './sorted-queue.js';
import type { Entry, State } from './delivery-entry.js';

/**
 * Where the placed, unsettled entries of a PartitionDeliveryState (partition-state.ts) wait or
 * are held: the deliverable ones (fresh, or ready for redelivery), those in flight (counted per
 * consumer) and those waiting to be dead-lettered. The deliverable queues delete lazily: an entry
 * that left the state it was queued in is skipped when it surfaces.
 */
export class DeliveryQueues {
  readonly #maxDeliveries: number;
  readonly #fresh = new SortedQueue<Entry>(byOffset);
  readonly #ready = new SortedQueue<Entry>(byOffset);
  /** In-flight deliveries per consumer; the entries themselves are found in the window (see release). */
  readonly #consumers = new Map<string, number>();
  readonly #dead = new Set<Entry>();
  #inFlight = 0;

  constructor(maxDeliveries: number) {
    this.#maxDeliveries = maxDeliveries;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** How many entries wait to be dead-lettered. */
  get dead(): number {
    return this.#dead.size;
  }

  inFlightOf(consumerId: string): number {
    return this.#consumers.get(consumerId) ?? 0;
  }

  /** True while `consumerId` holds deliveries. */
  holds(consumerId: string): boolean {
    return this.#consumers.has(consumerId);
  }

  /** Makes a placed entry deliverable; one already dead stays so. */
  activate(e: Entry): void {
    if (e.state !== 'ahead' && e.state !== 'blocked') return;
    if (e.count === 0) {
      e.state = 'fresh';
      this.#fresh.push(e);
    } else if (e.count >= this.#maxDeliveries) {
      this.toDead(e);
    } else {
      this.toReady(e);
    }
  }

  /** Makes the entry due for redelivery now. */
  toReady(e: Entry): void {
    e.state = 'ready';
    this.#ready.push(e);
  }

  toDead(e: Entry): void {
    e.state = 'dead';
    this.#dead.add(e);
  }

  /** Forgets an entry that waited to be dead-lettered (the caller gives it its next state). */
  forgetDead(e: Entry): void {
    this.#dead.delete(e);
  }

  /** The next deliverable entry, taken off its queue: due redeliveries first, then new messages, each lowest offset first. */
  next(): Entry | undefined {
    return popWhere(this.#ready, 'ready') ?? popWhere(this.#fresh, 'fresh');
  }

  /** `count` entries from next() went in flight to `consumerId`. */
  handed(consumerId: string, count: number): void {
    this.#inFlight += count;
    this.#consumers.set(consumerId, (this.#consumers.get(consumerId) ?? 0) + count);
  }

  /** Takes an in-flight entry out of flight (the caller gives it its next state). */
  land(e: Entry): void {
    const held = (this.#consumers.get(e.consumerId) ?? 1) - 1;
    if (held === 0) this.#consumers.delete(e.consumerId);
    else this.#consumers.set(e.consumerId, held);
    e.consumerId = '';
    this.#inFlight--;
  }

  /** Offsets waiting for the dispatcher to dead-letter them, ascending. */
  pendingDeadLetters(): number[] {
    return [...this.#dead].map((e) => e.offset).sort((a, b) => a - b);
  }
}

function byOffset(a: Entry, b: Entry): boolean {
  return a.offset < b.offset;
}

/** Pops entries off `heap` until one still in `state` (lazy deletion: the others left it since). */
function popWhere(heap: SortedQueue<Entry>, state: State): Entry | undefined {
  for (let e = heap.pop(); e !== undefined; e = heap.pop()) if (e.state === state) return e;
  return undefined;
}
