/**
 * When a small write runs on the event loop instead of in libuv's thread pool.
 *
 * A write through the pool costs two thread hand-offs: waking a worker, then waking the loop
 * with the result. On a busy two-core machine each can wait a millisecond or more behind other
 * threads; under end-to-end load the pool's round trip, not the disk, was most of a durable
 * commit's tail (docs/performance.md, "Fifth pass"). A small write done in place has neither,
 * at the price of blocking the loop while it runs (a few hundred microseconds for an O_DSYNC
 * write here). So a write runs inline only when all of these hold:
 *  - it is small (`maxBytes`);
 *  - the broker showed no sign of other disk work in the last `quietMs`: a pool write in
 *    flight, a write too large for the loop, or a second write in one turn (several partitions
 *    committing together, which the pool overlaps and the loop should keep feeding: blocking
 *    it there cost a quarter of the throughput of an eight-partition produce benchmark). Only
 *    these signs count: the pool writes this policy chooses for its other reasons below do not
 *    keep it in the pool, or a steady stream of commits would never come back to the loop;
 *  - inline writes took under `maxShare` of the loop's time in the current window;
 *  - none took longer than `slowMs` in the last `backoffMs`: a stalling disk may freeze the loop
 *    once, not again and again.
 */
export interface InlineWritesOptions {
  /** Largest write run inline. Default 64 KiB; 0: every write goes to the pool. */
  maxBytes?: number;
  /** How long after the last sign of other disk work the loop counts as busy. Default 10 ms. */
  quietMs?: number;
  /** Fraction of each window the loop may spend in inline writes. Default 0.5. */
  maxShare?: number;
  /** The window `maxShare` is measured over. Default 100 ms. */
  windowMs?: number;
  /** An inline write slower than this sends writes to the pool for `backoffMs`. Default 25 ms. */
  slowMs?: number;
  /** How long writes stay in the pool after a slow inline one. Default 1000 ms. */
  backoffMs?: number;
  /** Clock in ms. Default performance.now. */
  now?: () => number;
  /** Runs `fn` at the start of the next turn of the loop. Default setImmediate. */
  nextTurn?: (fn: () => void) => void;
}

export interface InlineWriteStats {
  /** Writes run on the event loop. */
  inline: number;
  /** Writes handed to the thread pool. */
  pool: number;
  /** Times a slow inline write sent writes to the pool for a while. */
  backoffs: number;
}

export class InlineWrites {
  readonly stats: InlineWriteStats = { inline: 0, pool: 0, backoffs: 0 };
  readonly #maxBytes: number;
  readonly #quietMs: number;
  readonly #maxShareMs: number;
  readonly #windowMs: number;
  readonly #slowMs: number;
  readonly #backoffMs: number;
  readonly #now: () => number;
  readonly #nextTurn: (fn: () => void) => void;
  readonly #endTurn = (): void => {
    this.#ranThisTurn = false;
  };
  #poolInFlight = 0;
  #busyAt = -Infinity;
  #ranThisTurn = false;
  #windowStart = -Infinity;
  #spentMs = 0;
  #poolUntil = -Infinity;

  constructor(options: InlineWritesOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 64 * 1024;
    this.#quietMs = options.quietMs ?? 10;
    this.#maxShareMs = (options.maxShare ?? 0.5) * (options.windowMs ?? 100);
    this.#windowMs = options.windowMs ?? 100;
    this.#slowMs = options.slowMs ?? 25;
    this.#backoffMs = options.backoffMs ?? 1000;
    this.#now = options.now ?? (() => performance.now());
    this.#nextTurn = options.nextTurn ?? ((fn) => void setImmediate(fn));
  }

  /**
   * Decides for a write of `bytes`. True: the caller writes now, synchronously, and then calls
   * `ranInline(startedAt)`. False: it counts as a pool write until the caller calls `poolDone()`.
   */
  admit(bytes: number): boolean {
    const now = this.#now();
    if (bytes > this.#maxBytes || this.#poolInFlight > 0 || this.#ranThisTurn) this.#busyAt = now;
    else if (now - this.#busyAt >= this.#quietMs && now >= this.#poolUntil) {
      if (now - this.#windowStart >= this.#windowMs) {
        this.#windowStart = now;
        this.#spentMs = 0;
      }
      if (this.#spentMs < this.#maxShareMs) {
        this.#ranThisTurn = true;
        this.#nextTurn(this.#endTurn);
        this.stats.inline++;
        return true;
      }
    }
    this.#poolInFlight++;
    this.stats.pool++;
    return false;
  }

  /** An admitted write finished (or failed) after starting at `startedAt` (the clock's time). */
  ranInline(startedAt: number): void {
    const now = this.#now();
    const took = now - startedAt;
    this.#spentMs += took;
    if (took > this.#slowMs) {
      this.#poolUntil = now + this.#backoffMs;
      this.stats.backoffs++;
    }
  }

  /** A write that `admit` sent to the pool completed (or failed). */
  poolDone(): void {
    this.#poolInFlight--;
  }

  /** The clock `ranInline` expects. */
  now(): number {
    return this.#now();
  }
}
