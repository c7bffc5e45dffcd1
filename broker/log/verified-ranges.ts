/**
 * Byte ranges of a segment whose batches are known to pass their CRC, so a read checks each
 * batch from disk once instead of on every fetch. Appends add what they wrote (append verified
 * it); reads add what they verified. Kept as a short sorted list of disjoint [start, end) ranges;
 * sequential appends and reads merge into one range, so it stays tiny in practice, and it is
 * capped so that random reads cannot grow it without bound (forgetting a range only costs a
 * re-check).
 */
const MAX_RANGES = 64;

export class VerifiedRanges {
  #starts: number[] = [];
  #ends: number[] = [];

  get count(): number {
    return this.#starts.length;
  }

  /** True when [start, end) lies inside one known-good range. */
  covers(start: number, end: number): boolean {
    const i = this.#indexAtOrBefore(start);
    return i >= 0 && this.#ends[i]! >= end;
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    let i = this.#indexAtOrBefore(start);
    // Merge with the range before when they touch or overlap.
    if (i >= 0 && this.#ends[i]! >= start) {
      if (this.#ends[i]! >= end) return;
      this.#ends[i] = end;
    } else {
      i++;
      this.#starts.splice(i, 0, start);
      this.#ends.splice(i, 0, end);
    }
    // Swallow following ranges that the grown one now reaches.
    while (i + 1 < this.#starts.length && this.#starts[i + 1]! <= this.#ends[i]!) {
      this.#ends[i] = Math.max(this.#ends[i]!, this.#ends[i + 1]!);
      this.#starts.splice(i + 1, 1);
      this.#ends.splice(i + 1, 1);
    }
    if (this.#starts.length > MAX_RANGES) {
      // Drop the smallest range other than the one just added.
      let victim = -1;
      for (let j = 0; j < this.#starts.length; j++) {
        if (j === i) continue;
        if (victim < 0 || this.#ends[j]! - this.#starts[j]! < this.#ends[victim]! - this.#starts[victim]!) victim = j;
      }
      this.#starts.splice(victim, 1);
      this.#ends.splice(victim, 1);
    }
  }

  /** Index of the last range starting at or before `pos`, or -1. */
  #indexAtOrBefore(pos: number): number {
    let lo = 0;
    let hi = this.#starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#starts[mid]! <= pos) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}
