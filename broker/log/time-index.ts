/**
 * The sparse time index of one segment: timestamp -> relative offset, for offsetForTimestamp and
 * time-based retention.
 *
 * File format (OFFSET20.timeindex), a sequence of 12-byte entries, nothing else:
 *
 *   timestamp      int64 BE    largest batch maxTimestamp in the segment up to this batch
 *   relativeOffset uint32 BE   base offset of that batch - segment base offset
 *
 * Invariant: for an entry (T, r), every batch with relative base offset <= r has
 * maxTimestamp <= T. Timestamps strictly increase, offsets strictly increase. An entry is added
 * after a batch when at least `indexIntervalBytes` went by since the previous entry and the
 * running maximum grew; sealing a segment adds a final entry with the segment's maximum, so the
 * last entry of a sealed segment is its largest timestamp (what age-based retention reads).
 *
 * Producer timestamps are not monotonic, which is why entries hold the running maximum: the
 * first batch with maxTimestamp >= t lies after the last entry with T < t.
 */
import { readInt64BE, writeInt64BE } from '../../client/protocol/int64.js';

export const TIME_INDEX_ENTRY_SIZE = 12;

export interface TimeEntry {
  timestamp: number;
  relativeOffset: number;
}

export class TimeIndex {
  #timestamps: Float64Array;
  #offsets: Uint32Array;
  #length = 0;

  constructor(capacity = 16) {
    this.#timestamps = new Float64Array(capacity);
    this.#offsets = new Uint32Array(capacity);
  }

  get length(): number {
    return this.#length;
  }

  last(): TimeEntry | undefined {
    if (this.#length === 0) return undefined;
    const i = this.#length - 1;
    return { timestamp: this.#timestamps[i]!, relativeOffset: this.#offsets[i]! };
  }

  /** Adds (timestamp, relativeOffset) if it moves both columns forward; returns whether it did. */
  maybeAppend(timestamp: number, relativeOffset: number): boolean {
    const last = this.last();
    if (last && (timestamp <= last.timestamp || relativeOffset <= last.relativeOffset)) {
      // Same batch, larger maximum (the final entry at seal): replace instead of append.
      if (last && relativeOffset === last.relativeOffset && timestamp > last.timestamp) {
        this.#timestamps[this.#length - 1] = timestamp;
        return true;
      }
      return false;
    }
    if (this.#length === this.#timestamps.length) {
      const ts = new Float64Array(this.#length * 2);
      const offs = new Uint32Array(this.#length * 2);
      ts.set(this.#timestamps);
      offs.set(this.#offsets);
      this.#timestamps = ts;
      this.#offsets = offs;
    }
    this.#timestamps[this.#length] = timestamp;
    this.#offsets[this.#length] = relativeOffset;
    this.#length++;
    return true;
  }

  /**
   * Where to start scanning for the first batch with maxTimestamp >= `timestamp`: the offset of
   * the last entry whose timestamp is below it (all batches up to there are too old), or 0.
   */
  scanStart(timestamp: number): number {
    let lo = 0;
    let hi = this.#length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#timestamps[mid]! < timestamp) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found < 0 ? 0 : this.#offsets[found]!;
  }

  encode(): Buffer {
    const buf = Buffer.allocUnsafe(this.#length * TIME_INDEX_ENTRY_SIZE);
    for (let i = 0; i < this.#length; i++) {
      const at = i * TIME_INDEX_ENTRY_SIZE;
      const ts = this.#timestamps[i]!;
      writeInt64BE(buf, ts, at);
      buf.writeUInt32BE(this.#offsets[i]!, at + 8);
    }
    return buf;
  }

  /** Parses a time index file; undefined when it cannot be right (then it is rebuilt). */
  static decode(buf: Buffer, offsetCount: number): TimeIndex | undefined {
    if (buf.length % TIME_INDEX_ENTRY_SIZE !== 0) return undefined;
    const n = buf.length / TIME_INDEX_ENTRY_SIZE;
    const index = new TimeIndex(Math.max(16, n));
    for (let i = 0; i < n; i++) {
      const at = i * TIME_INDEX_ENTRY_SIZE;
      const timestamp = readInt64BE(buf, at);
      const relativeOffset = buf.readUInt32BE(at + 8);
      if (!Number.isSafeInteger(timestamp) || relativeOffset >= offsetCount) return undefined;
      const last = index.last();
      if (last && (timestamp <= last.timestamp || relativeOffset <= last.relativeOffset)) return undefined;
      index.maybeAppend(timestamp, relativeOffset);
    }
    return index;
  }
}
