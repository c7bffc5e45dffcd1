import type { Entry } from './delivery-entry.js';

/** The unsettled entries with one key, in offset order; only the one at `head` may be delivered. */
interface KeyQueue {
  items: Entry[];
  head: number;
}

/**
 * The key locks of ordering 'key' (docs/semantics.md, "Push subscriptions"): per key, the
 * unsettled entries in offset order, of which only the head may be in flight, awaiting
 * redelivery or dead. Settled entries behind the head are skipped lazily.
 */
export class KeyQueues {
  readonly #keys = new Map<string, KeyQueue>();

  /**
   * Places `e` (key not null) behind the other unsettled entries with its key. True if it heads
   * its queue, and so may be made deliverable; else it waits, 'blocked' if it was 'ahead'.
   */
  enqueue(e: Entry, key: string): boolean {
    const queue = this.#keys.get(key);
    if (queue !== undefined) {
      queue.items.push(e);
      if (e.state === 'ahead') e.state = 'blocked';
      return false;
    }
    this.#keys.set(key, { items: [e], head: 0 });
    return true;
  }

  /** The key's head `e` settled: returns the next unsettled message with that key, which may go, if any. */
  unlock(e: Entry, key: string): Entry | undefined {
    const queue = this.#keys.get(key);
    // Not the head (possible only for entries restored across a change of ordering): skipped later.
    if (queue === undefined || queue.items[queue.head] !== e) return undefined;
    let head = queue.head + 1;
    while (head < queue.items.length && (queue.items[head] as Entry).state === 'settled') head++;
    if (head === queue.items.length) {
      this.#keys.delete(key);
      return undefined;
    }
    if (head > 64 && 2 * head > queue.items.length) {
      queue.items = queue.items.slice(head);
      head = 0;
    }
    queue.head = head;
    return queue.items[head] as Entry;
  }
}
