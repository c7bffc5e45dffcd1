/**
 * The newest committed batches of one partition, kept in memory so that a consumer at the end of
 * the log is answered without reading the file back: no pread and no thread-pool round trip on
 * the path of every message from producer to consumer (docs/performance.md, "Fourth pass").
 * NATS JetStream keeps its last block in memory for the same reason.
 *
 * Holds only batches whose commit finished (written, and durable under fsync=always), in
 * offset order with no gaps, at most `maxBytes` of them: the oldest go first. A read it cannot
 * answer whole (the offset is older than the oldest batch held) goes to the file as before.
 * The bytes are those that were CRC-checked on the way in and written to the file.
 */
interface Entry {
  readonly batch: Buffer;
  readonly baseOffset: number;
  readonly lastOffset: number;
}

export class RecentBatches {
  readonly #maxBytes: number;
  #entries: Entry[] = [];
  /** Index of the oldest live entry: dropping from the front moves it instead of shifting. */
  #head = 0;
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Adds the next committed batch (its base offset is one past the last one held, or the cache
   * starts over). A batch that is a small view into a larger buffer (a socket read holding
   * other frames) is copied, so what is held is what is counted.
   */
  add(batch: Buffer, baseOffset: number, lastOffset: number): void {
    if (batch.length > this.#maxBytes) {
      this.clear();
      return;
    }
    const newest = this.#entries[this.#entries.length - 1];
    if (newest !== undefined && newest.lastOffset + 1 !== baseOffset) this.clear();
    const held = batch.length * 2 < batch.buffer.byteLength ? Buffer.from(batch) : batch;
    this.#entries.push({ batch: held, baseOffset, lastOffset });
    this.#bytes += held.length;
    while (this.#bytes > this.#maxBytes) this.#bytes -= this.#entries[this.#head++]!.batch.length;
    // Compact once the dropped entries are the larger part, so the array stays proportional to what is held.
    if (this.#head > 64 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (at least one batch), none with
   * a base offset at or past `limitOffset`: what the file read would return. Undefined when the
   * batch holding `offset` is not held (or `offset` is at or past `limitOffset`).
   */
  read(offset: number, maxBytes: number, limitOffset: number): Buffer | undefined {
    const entries = this.#entries;
    if (this.#head === entries.length || offset < entries[this.#head]!.baseOffset || offset >= limitOffset) return undefined;
    // Binary search for the first batch whose last offset reaches `offset`.
    let lo = this.#head;
    let hi = entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (entries[mid]!.lastOffset < offset) lo = mid + 1;
      else hi = mid;
    }
    if (lo === entries.length) return undefined;
    const first = entries[lo]!;
    let end = lo + 1;
    let total = first.batch.length;
    while (end < entries.length && entries[end]!.baseOffset < limitOffset && total + entries[end]!.batch.length <= maxBytes) {
      total += entries[end]!.batch.length;
      end++;
    }
    if (end === lo + 1) return first.batch;
    const parts: Buffer[] = [];
    for (let i = lo; i < end; i++) parts.push(entries[i]!.batch);
    return Buffer.concat(parts, total);
  }

  clear(): void {
    // A budget of 0 clears on every add: nothing to allocate when there is nothing held.
    if (this.#entries.length === 0) return;
    this.#entries = [];
    this.#head = 0;
    this.#bytes = 0;
  }
}
