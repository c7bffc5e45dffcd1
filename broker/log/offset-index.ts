/**
 * The sparse offset index of one segment: relative offset -> byte position of a batch.
 *
 * File format (OFFSET20.index), a sequence of 8-byte entries, nothing else:
 *
 *   relativeOffset uint32 BE   batch base offset - segment base offset
 *   position       uint32 BE   byte position of that batch in the .log file
 *
 * Both columns strictly increase. An entry is added before a batch once at least
 * `indexIntervalBytes` were appended since the previous entry, so a lookup scans at most about
 * one interval (plus one batch) of the log. The first batch of a segment (position 0) has no
 * entry: it is implicit. The same layout as Kafka's .index file, without preallocation.
 *
 * The index of the active segment lives in memory and is written out when the segment is sealed
 * or the log closes cleanly; after an unclean stop the active segment is rescanned and its index
 * rebuilt, so nothing on the append path waits on index I/O.
 */

export const OFFSET_INDEX_ENTRY_SIZE = 8;

export interface IndexEntry {
  relativeOffset: number;
  position: number;
}

export class OffsetIndex {
  // Struct-of-arrays in typed arrays: 8 bytes per entry, no object per entry.
  #offsets: Uint32Array;
  #positions: Uint32Array;
  #length = 0;

  constructor(capacity = 16) {
    this.#offsets = new Uint32Array(capacity);
    this.#positions = new Uint32Array(capacity);
  }

  get length(): number {
    return this.#length;
  }

  /** The last entry, or undefined when empty. */
  last(): IndexEntry | undefined {
    if (this.#length === 0) return undefined;
    const i = this.#length - 1;
    return { relativeOffset: this.#offsets[i]!, position: this.#positions[i]! };
  }

  append(relativeOffset: number, position: number): void {
    const n = this.#length;
    if (n > 0 && (relativeOffset <= this.#offsets[n - 1]! || position <= this.#positions[n - 1]!)) {
      throw new Error(`offset index entry (${relativeOffset}, ${position}) does not follow (${this.#offsets[n - 1]}, ${this.#positions[n - 1]})`);
    }
    if (this.#length === this.#offsets.length) {
      const offsets = new Uint32Array(this.#length * 2);
      const positions = new Uint32Array(this.#length * 2);
      offsets.set(this.#offsets);
      positions.set(this.#positions);
      this.#offsets = offsets;
      this.#positions = positions;
    }
    this.#offsets[this.#length] = relativeOffset;
    this.#positions[this.#length] = position;
    this.#length++;
  }

  /**
   * The entry with the largest relative offset <= `relativeOffset`; the implicit (0, 0) when
   * there is none. The batch at the returned position starts at or before the wanted offset.
   */
  floor(relativeOffset: number): IndexEntry {
    let lo = 0;
    let hi = this.#length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#offsets[mid]! <= relativeOffset) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return { relativeOffset: 0, position: 0 };
    return { relativeOffset: this.#offsets[found]!, position: this.#positions[found]! };
  }

  encode(): Buffer {
    const buf = Buffer.allocUnsafe(this.#length * OFFSET_INDEX_ENTRY_SIZE);
    for (let i = 0; i < this.#length; i++) {
      buf.writeUInt32BE(this.#offsets[i]!, i * OFFSET_INDEX_ENTRY_SIZE);
      buf.writeUInt32BE(this.#positions[i]!, i * OFFSET_INDEX_ENTRY_SIZE + 4);
    }
    return buf;
  }

  /**
   * Parses an index file. Returns undefined when it cannot be right: a partial entry, columns
   * not strictly increasing, a position outside the segment or an offset past its end. Such an
   * index is rebuilt from the log rather than trusted. (An index can still be plausible and
   * wrong; readers check the batch header they land on and rebuild on a mismatch.)
   */
  static decode(buf: Buffer, segmentSize: number, offsetCount: number): OffsetIndex | undefined {
    if (buf.length % OFFSET_INDEX_ENTRY_SIZE !== 0) return undefined;
    const n = buf.length / OFFSET_INDEX_ENTRY_SIZE;
    const index = new OffsetIndex(Math.max(16, n));
    let prevOffset = 0;
    let prevPosition = 0;
    for (let i = 0; i < n; i++) {
      const relativeOffset = buf.readUInt32BE(i * OFFSET_INDEX_ENTRY_SIZE);
      const position = buf.readUInt32BE(i * OFFSET_INDEX_ENTRY_SIZE + 4);
      if (relativeOffset <= prevOffset || position <= prevPosition) return undefined;
      if (position >= segmentSize || relativeOffset >= offsetCount) return undefined;
      index.append(relativeOffset, position);
      prevOffset = relativeOffset;
      prevPosition = position;
    }
    return index;
  }
}
