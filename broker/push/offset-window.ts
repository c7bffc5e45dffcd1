import type { Entry } from './delivery-entry.js';

/**
 * The offsets of placed entries of a PartitionDeliveryState (partition-state.ts), ascending;
 * forgotten ones are dropped lazily. The head is the ack floor. Shares the state's map of entries
 * (by offset): forgets the kept settled entries the floor passes.
 */
export class OffsetWindow {
  readonly #entries: Map<number, Entry>;
  #window: number[] = [];
  #windowHead = 0;
  /** Offsets in the window no longer in #entries. */
  #windowStale = 0;

  constructor(entries: Map<number, Entry>) {
    this.#entries = entries;
  }

  /** The lowest offset placed and not settled, if any: the ack floor. */
  get first(): number | undefined {
    return this.#window[this.#windowHead];
  }

  /** Places an offset above every other in the window. */
  push(offset: number): void {
    this.#window.push(offset);
  }

  /** Calls `fn` with each entry still known in the window (settled ones included), ascending. */
  forEach(fn: (e: Entry) => void): void {
    for (let i = this.#windowHead; i < this.#window.length; i++) {
      const e = this.#entries.get(this.#window[i] as number);
      if (e !== undefined) fn(e);
    }
  }

  /** The placed entry `e` was just settled; `forget`: it is not kept (see PartitionDeliveryState#settle). */
  settled(e: Entry, forget: boolean): void {
    if (forget) {
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
}
