import { appendRange, findRange, type NormalizedState, type OffsetRange } from './ranges.js';
import { newEntry, type Entry } from './delivery-entry.js';

/**
 * What a PartitionDeliveryState (partition-state.ts) knows of offsets its read position has not
 * reached: from the snapshot it was restored from, the settled ranges and the delivery counts
 * (as entries, placed when offered again); and the offsets settled before they were offered
 * (dead letters found by recovery, restored entries acked by their old attempt).
 */
export class AheadOfRead {
  /** Offsets below this may have been settled before the restart, at an attempt nobody remembers. */
  readonly horizon: number;
  /** From the snapshot: settled ranges not yet passed by the read position. */
  readonly #restoredAcked: OffsetRange[];
  #restoredIdx = 0;
  /** From the snapshot: entries for the delivery counts, ascending, placed when offered again. */
  readonly #ahead: Entry[];
  #aheadIdx = 0;
  /** Offsets at or above the read position settled before they were offered. */
  readonly #settledAhead = new Set<number>();

  constructor(restored: NormalizedState) {
    this.#restoredAcked = restored.acked;
    this.#ahead = restored.counts.map(([offset, count]) => newEntry(offset, null, count));
    const lastRange = restored.acked[restored.acked.length - 1];
    const lastCount = restored.counts[restored.counts.length - 1];
    this.horizon = Math.max(restored.floor, lastRange?.[1] ?? 0, (lastCount?.[0] ?? -1) + 1);
  }

  /** The floor when nothing unsettled was read: it runs on from the read position over what is known settled beyond it. */
  floorFrom(readPosition: number): number {
    let floor = readPosition;
    for (let i = this.#restoredIdx; ; ) {
      const r = this.#restoredAcked[i];
      if (r !== undefined && r[0] <= floor) {
        floor = Math.max(floor, r[1]);
        i++;
      } else if (this.#settledAhead.has(floor)) floor++;
      else return floor;
    }
  }

  /** The read position moved to `readPosition`: returns it moved on past the restored settled ranges that follow it. */
  skipSettledRanges(readPosition: number): number {
    for (let r = this.#restoredAcked[this.#restoredIdx]; r !== undefined && r[0] <= readPosition; r = this.#restoredAcked[++this.#restoredIdx]) {
      if (r[1] > readPosition) readPosition = r[1];
    }
    return readPosition;
  }

  /** Forgets the offsets settled ahead that the read position passed. */
  passedBy(readPosition: number): void {
    if (this.#settledAhead.size > 0) for (const o of this.#settledAhead) if (o < readPosition) this.#settledAhead.delete(o);
  }

  /** The next restored entry below `bound` never offered again, taken off the list; undefined once there is none. */
  nextPassed(bound: number): Entry | undefined {
    const e = this.#ahead[this.#aheadIdx];
    if (e === undefined || e.offset >= bound) return undefined;
    this.#aheadIdx++;
    return e;
  }

  /** The restored entry for `offset`, being offered, if there is one (taken off the list). */
  takeOffered(offset: number): Entry | undefined {
    const e = this.#ahead[this.#aheadIdx];
    if (e === undefined || e.offset !== offset) return undefined;
    this.#aheadIdx++;
    return e;
  }

  /** Calls `fn` with each restored entry not offered again yet, ascending (settled ones included). */
  forEachUnoffered(fn: (e: Entry) => void): void {
    for (let i = this.#aheadIdx; i < this.#ahead.length; i++) fn(this.#ahead[i] as Entry);
  }

  /** True (once) for an offset being offered that was settled before: in a restored range, or settled while ahead. */
  settledBeforeOffer(offset: number): boolean {
    const ranges = this.#restoredAcked;
    while (this.#restoredIdx < ranges.length && (ranges[this.#restoredIdx] as OffsetRange)[1] <= offset) this.#restoredIdx++;
    const r = ranges[this.#restoredIdx];
    if (r !== undefined && r[0] <= offset) return true;
    return this.#settledAhead.size > 0 && this.#settledAhead.delete(offset);
  }

  /** Settles an offset at or above the read position: remembered as a settled offset to skip. */
  settle(offset: number): void {
    this.#settledAhead.add(offset);
  }

  /** Whether an offset at or above the read position is known settled. */
  isSettled(offset: number): boolean {
    return this.#settledAhead.has(offset) || findRange(this.#restoredAcked, offset, this.#restoredIdx) >= 0;
  }

  /** Appends to `acked` (sorted, ending at or below the read position) the settled ranges known from the read position on. */
  appendSettled(acked: OffsetRange[], readPosition: number): void {
    const ahead: OffsetRange[] = [];
    for (let i = this.#restoredIdx; i < this.#restoredAcked.length; i++) {
      const [start, end] = this.#restoredAcked[i] as OffsetRange;
      ahead.push([Math.max(start, readPosition), end]);
    }
    for (const offset of this.#settledAhead) ahead.push([offset, offset + 1]);
    if (this.#settledAhead.size > 0) ahead.sort((a, b) => a[0] - b[0]);
    for (const [start, end] of ahead) appendRange(acked, start, end);
  }
}
