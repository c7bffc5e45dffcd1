import { BATCH_OVERHEAD, decodeRecords, readBatchHeader } from '../../client/protocol/record-batch.js';
import type { PartitionLog } from '../log/index.js';
import { producerStateOf } from '../txn/partition-producers.js';
import { forEachVisibleBatch } from '../txn/visibility.js';
import type { OfferedMessage, PartitionDeliveryState } from './partition-state.js';

/** How much of the log one read pulls in. */
const READ_BYTES = 256 << 10;
/** Batches kept for delivery, per partition; older ones are read again on demand. */
const CACHE_BYTES = 8 << 20;

interface CachedBatch {
  readonly base: number;
  readonly last: number;
  readonly bytes: Buffer;
}

/**
 * Reads a partition's log for a push subscription: offers new messages to the delivery state,
 * and hands out the stored batch bytes that hold the offsets being delivered, so deliveries go
 * out as stored, never re-encoded. Only durable data (below the high watermark) is read.
 *
 * Push delivers committed data only (read_committed, broker/txn/visibility.ts): the feed reads
 * below the partition's last stable offset and never offers control batches or batches of
 * aborted transactions. Their offsets are gaps to the delivery state (never offered, so settled
 * by definition: see PartitionDeliveryState.offer). The subscription's pump runs on every high
 * watermark move, which includes the marker that moves the last stable offset.
 */
export class PartitionFeed {
  readonly #log: PartitionLog;
  readonly #keyed: boolean;
  /** Cached batches in offset order. */
  #cache: CachedBatch[] = [];
  #cachedBytes = 0;

  constructor(log: PartitionLog, keyed: boolean) {
    this.#log = log;
    this.#keyed = keyed;
  }

  get log(): PartitionLog {
    return this.#log;
  }

  /** True when the log holds committed messages the state has not been offered yet. */
  hasUnread(state: PartitionDeliveryState): boolean {
    return state.readPosition < this.#stableEnd();
  }

  /** Reads once from the state's read position and offers what it finds; false if nothing was new. */
  async fill(state: PartitionDeliveryState): Promise<boolean> {
    const from = Math.max(state.readPosition, this.#log.startOffset);
    const end = this.#stableEnd();
    if (from >= end) return false;
    const bytes = await this.#log.read(from, READ_BYTES);
    const aborted = producerStateOf(this.#log)?.abortedTransactions(from, end);
    const offered: OfferedMessage[] = [];
    // Without keys a batch is offered as a range of offsets (offerRanges): no object per message.
    const ranges: Array<[number, number]> = [];
    let lastOffered = from - 1;
    const next = forEachVisibleBatch(bytes, from, end, aborted, ({ baseOffset: base, bytes: batch, lastOffset: last }) => {
      this.#remember({ base, last, bytes: batch });
      if (this.#keyed) {
        for (const r of decodeRecords(batch)) {
          if (r.offset < from) continue;
          offered.push({ offset: r.offset, key: r.key === null ? null : r.key.toString('base64') });
          lastOffered = r.offset;
        }
      } else {
        addRange(ranges, Math.max(from, base), last + 1);
        lastOffered = last;
      }
    });
    // The read ended with batches it may not offer (a marker, aborted data). The read position
    // moves only on offers, so those would be read again forever: the last of their offsets is
    // offered already settled, which moves the read position past them; the rest are gaps.
    if (next - 1 > lastOffered) {
      state.markSettled(next - 1);
      if (this.#keyed) offered.push({ offset: next - 1, key: null });
      else addRange(ranges, next - 1, next);
    }
    if (offered.length > 0) state.offer(offered);
    if (ranges.length > 0) state.offerRanges(ranges);
    return offered.length > 0 || ranges.length > 0;
  }

  /** Where committed data ends: the last stable offset (the high watermark for a log without producer state). */
  #stableEnd(): number {
    const hw = this.#log.highWatermark;
    return producerStateOf(this.#log)?.lastStableOffset(hw) ?? hw;
  }

  /** The whole batches holding `offsets` (ascending), concatenated; missing ones are read from the log. */
  async batchesFor(offsets: readonly number[]): Promise<Buffer> {
    const parts: Buffer[] = [];
    let covered = -1;
    for (const offset of offsets) {
      if (offset <= covered) continue;
      const batch = this.#find(offset) ?? (await this.#readBatch(offset));
      parts.push(batch.bytes);
      covered = batch.last;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Drops cached batches wholly below `floor`: they are settled and never delivered again. */
  trim(floor: number): void {
    let drop = 0;
    while (drop < this.#cache.length && (this.#cache[drop] as CachedBatch).last < floor) {
      this.#cachedBytes -= (this.#cache[drop] as CachedBatch).bytes.length;
      drop++;
    }
    if (drop > 0) this.#cache = this.#cache.slice(drop);
  }

  async #readBatch(offset: number): Promise<CachedBatch> {
    const bytes = await this.#log.read(offset, 1);
    const h = readBatchHeader(bytes, 0);
    return { base: h.baseOffset, last: h.baseOffset + h.lastOffsetDelta, bytes: bytes.subarray(0, h.batchLength + BATCH_OVERHEAD) };
  }

  #find(offset: number): CachedBatch | undefined {
    let lo = 0;
    let hi = this.#cache.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const b = this.#cache[mid] as CachedBatch;
      if (offset < b.base) hi = mid - 1;
      else if (offset > b.last) lo = mid + 1;
      else return b;
    }
    return undefined;
  }

  #remember(batch: CachedBatch): void {
    const tail = this.#cache[this.#cache.length - 1];
    if (tail !== undefined && batch.base <= tail.last) return; // already cached
    this.#cache.push(batch);
    this.#cachedBytes += batch.bytes.length;
    while (this.#cachedBytes > CACHE_BYTES && this.#cache.length > 1) {
      this.#cachedBytes -= (this.#cache.shift() as CachedBatch).bytes.length;
    }
  }
}

/** Appends [start, end) to ascending `ranges`, merged into the last one when they touch. */
function addRange(ranges: Array<[number, number]>, start: number, end: number): void {
  const tail = ranges[ranges.length - 1];
  if (tail !== undefined && tail[1] === start) tail[1] = end;
  else ranges.push([start, end]);
}
