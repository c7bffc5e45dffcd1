/**
 * The one rule for when index entries are made, shared by the append path and by the scans that
 * rebuild indexes, so a rebuilt index is identical to the one appends would have produced.
 */
import { OffsetIndex } from './offset-index.js';
import { TimeIndex } from './time-index.js';

export class IndexBuilder {
  readonly offsetIndex: OffsetIndex;
  readonly timeIndex: TimeIndex;
  readonly #baseOffset: number;
  readonly #interval: number;
  #lastOffsetEntryPosition = 0; // the implicit entry (0, 0)
  #lastTimeEntryPosition = 0;
  #lastBatchRelative = -1;
  /** Largest batch maxTimestamp seen; -Infinity while empty. */
  maxTimestamp = Number.NEGATIVE_INFINITY;
  /** maxTimestamp of the first batch (what segmentMs ages from); undefined while empty. */
  firstTimestamp: number | undefined;

  constructor(baseOffset: number, indexIntervalBytes: number, offsetIndex?: OffsetIndex, timeIndex?: TimeIndex) {
    this.#baseOffset = baseOffset;
    this.#interval = indexIntervalBytes;
    this.offsetIndex = offsetIndex ?? new OffsetIndex();
    this.timeIndex = timeIndex ?? new TimeIndex();
    const lastOffset = this.offsetIndex.last();
    if (lastOffset) this.#lastOffsetEntryPosition = lastOffset.position;
  }

  /**
   * Resumes building after loaded indexes (a clean restart): positions since the last entries
   * are counted from where the loaded entries stopped.
   */
  resume(lastBatchOffset: number | undefined, maxTimestamp: number, firstTimestamp: number | undefined, timePosition: number): void {
    this.#lastBatchRelative = lastBatchOffset === undefined ? -1 : lastBatchOffset - this.#baseOffset;
    this.maxTimestamp = maxTimestamp;
    this.firstTimestamp = firstTimestamp;
    this.#lastTimeEntryPosition = timePosition;
  }

  /** Records one batch of `size` bytes at `position`. Batches must come in log order. */
  add(baseOffset: number, maxTimestamp: number, position: number, size: number): void {
    const relative = baseOffset - this.#baseOffset;
    if (position > 0 && position - this.#lastOffsetEntryPosition >= this.#interval) {
      this.offsetIndex.append(relative, position);
      this.#lastOffsetEntryPosition = position;
    }
    if (this.firstTimestamp === undefined) this.firstTimestamp = maxTimestamp;
    if (maxTimestamp > this.maxTimestamp) this.maxTimestamp = maxTimestamp;
    this.#lastBatchRelative = relative;
    const end = position + size;
    if (end - this.#lastTimeEntryPosition >= this.#interval && this.timeIndex.maybeAppend(this.maxTimestamp, relative)) {
      this.#lastTimeEntryPosition = end;
    }
  }

  /** At seal: the final time entry, so the last entry holds the segment's largest timestamp. */
  finish(): void {
    if (this.#lastBatchRelative >= 0) this.timeIndex.maybeAppend(this.maxTimestamp, this.#lastBatchRelative);
  }
}
