import { MinHeap } from './min-heap.js';

/**
 * A min-priority queue for items that mostly arrive in order, as a push subscription's do:
 * offsets are offered ascending, deadlines are now + ackWaitMs. An item not before the last one
 * appended goes to the end of a FIFO (O(1), no comparisons to speak of); any other goes into a
 * binary heap. peek and pop take the lesser of the two heads, so items come out in the same order
 * as from a MinHeap with the same comparator. Stale items are skipped by the caller (lazy
 * deletion), as with MinHeap.
 */
export class SortedQueue<T> {
  #fifo: T[] = [];
  #head = 0;
  readonly #heap: MinHeap<T>;
  readonly #before: (a: T, b: T) => boolean;

  constructor(before: (a: T, b: T) => boolean) {
    this.#before = before;
    this.#heap = new MinHeap(before);
  }

  get size(): number {
    return this.#fifo.length - this.#head + this.#heap.size;
  }

  peek(): T | undefined {
    const top = this.#heap.peek();
    const first = this.#head < this.#fifo.length ? this.#fifo[this.#head] : undefined;
    if (top === undefined) return first;
    if (first === undefined) return top;
    return this.#before(top, first) ? top : first;
  }

  push(item: T): void {
    const fifo = this.#fifo;
    if (this.#head === fifo.length || !this.#before(item, fifo[fifo.length - 1] as T)) fifo.push(item);
    else this.#heap.push(item);
  }

  pop(): T | undefined {
    const top = this.#heap.peek();
    const fifo = this.#fifo;
    if (this.#head === fifo.length) return top === undefined ? undefined : this.#heap.pop();
    const first = fifo[this.#head] as T;
    if (top !== undefined && this.#before(top, first)) return this.#heap.pop();
    fifo[this.#head++] = undefined as T; // let it be collected
    if (this.#head === fifo.length) {
      fifo.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && 2 * this.#head > fifo.length) {
      this.#fifo = fifo.slice(this.#head);
      this.#head = 0;
    }
    return first;
  }

  /** Keeps the items `keep` accepts; O(n). */
  retain(keep: (item: T) => boolean): void {
    this.#fifo = this.#fifo.slice(this.#head).filter(keep);
    this.#head = 0;
    this.#heap.retain(keep);
  }
}
