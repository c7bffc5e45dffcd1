/** A binary min-heap; stale items are skipped by the caller (lazy deletion). */
export class MinHeap<T> {
  #items: T[] = [];
  readonly #before: (a: T, b: T) => boolean;

  constructor(before: (a: T, b: T) => boolean) {
    this.#before = before;
  }

  get size(): number {
    return this.#items.length;
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  push(item: T): void {
    const a = this.#items;
    let i = a.length;
    a.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = a[parent] as T;
      if (!this.#before(item, p)) break;
      a[i] = p;
      i = parent;
    }
    a[i] = item;
  }

  pop(): T | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) this.#siftDown(0, last);
    return top;
  }

  /** Keeps the items `keep` accepts; O(n). */
  retain(keep: (item: T) => boolean): void {
    const a = this.#items.filter(keep);
    this.#items = a;
    for (let i = (a.length >> 1) - 1; i >= 0; i--) this.#siftDown(i, a[i] as T);
  }

  #siftDown(from: number, item: T): void {
    const a = this.#items;
    const n = a.length;
    let i = from;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.#before(a[child + 1] as T, a[child] as T)) child++;
      const c = a[child] as T;
      if (!this.#before(c, item)) break;
      a[i] = c;
      i = child;
    }
    a[i] = item;
  }
}
