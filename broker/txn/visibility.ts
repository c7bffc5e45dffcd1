/**
 * What a reader may see of the batches read from a partition (docs/protocol.md, "Fetch";
 * docs/semantics.md, "Exactly-once"), shared by Fetch and the push feed:
 *
 * - Control batches (transaction markers) are never handed to anyone: they are the broker's.
 * - A read_committed reader (and every push subscription) reads only below the last stable
 *   offset, the first offset of the oldest open transaction (ProducerStateTable.lastStableOffset),
 *   and skips the data batches of aborted transactions: the batches of producer P whose base
 *   offset lies within [firstOffset, lastOffset] of one of P's aborted transactions (a producer
 *   has at most one transaction open per partition, so every batch of P in that range is one).
 *
 * Batches are kept whole and as stored; a read that drops nothing returns the read buffer itself.
 */
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_OVERHEAD } from '../../client/protocol/record-batch.js';
import type { AbortedTxn } from './producer-state.js';
import { readInt64BE } from '../../client/protocol/int64.js';

export interface VisibleBatch {
  readonly baseOffset: number;
  readonly lastOffset: number;
  /** The whole batch: a view into the read buffer. */
  readonly bytes: Buffer;
}

// RecordBatch v2 header fields read here (docs/record-batch.md): only what visibility needs,
// read straight from the buffer, since every Fetch walks every batch it returns.
const BATCH_LENGTH_AT = 8;
const ATTRIBUTES_AT = 21;
const LAST_OFFSET_DELTA_AT = 23;
const PRODUCER_ID_AT = 43;

/**
 * Calls `visit` for each batch of `bytes` (whole batches as PartitionLog.read returns them) that
 * ends at or after `fromOffset`, begins before `endOffset` and is visible: not a control batch,
 * and not in `aborted` (pass undefined for read_uncommitted). Returns the offset after the last
 * batch examined (kept or not), or `fromOffset` when none was: where the next read continues.
 */
export function forEachVisibleBatch(
  bytes: Buffer,
  fromOffset: number,
  endOffset: number,
  aborted: readonly AbortedTxn[] | undefined,
  visit: (batch: VisibleBatch) => void,
): number {
  const abortedBy = aborted === undefined || aborted.length === 0 ? undefined : byProducer(aborted);
  let next = fromOffset;
  for (let pos = 0; pos + BATCH_OVERHEAD <= bytes.length; ) {
    const start = pos;
    const baseOffset = readInt64BE(bytes, pos);
    pos += bytes.readInt32BE(pos + BATCH_LENGTH_AT) + BATCH_OVERHEAD;
    if (baseOffset >= endOffset) break;
    const lastOffset = baseOffset + bytes.readInt32BE(start + LAST_OFFSET_DELTA_AT);
    if (lastOffset < fromOffset) continue;
    next = lastOffset + 1;
    const attributes = bytes.readInt16BE(start + ATTRIBUTES_AT);
    if ((attributes & ATTR_CONTROL) !== 0) continue;
    if (abortedBy !== undefined && (attributes & ATTR_TRANSACTIONAL) !== 0) {
      const producerId = readInt64BE(bytes, start + PRODUCER_ID_AT);
      if (isAborted(abortedBy, producerId, baseOffset)) continue;
    }
    visit({ baseOffset, lastOffset, bytes: bytes.subarray(start, pos) });
  }
  return next;
}

export interface VisibleRead {
  /** The visible batches back to back (the read buffer itself when nothing was left out). */
  readonly records: Buffer;
  /** As forEachVisibleBatch returns. */
  readonly nextOffset: number;
}

/** forEachVisibleBatch, collected into one buffer for a Fetch response. */
export function visibleRecords(bytes: Buffer, fromOffset: number, endOffset: number, aborted: readonly AbortedTxn[] | undefined): VisibleRead {
  const kept: Buffer[] = [];
  let keptBytes = 0;
  const nextOffset = forEachVisibleBatch(bytes, fromOffset, endOffset, aborted, ({ bytes: b }) => {
    kept.push(b);
    keptBytes += b.length;
  });
  if (keptBytes === bytes.length) return { records: bytes, nextOffset };
  if (kept.length === 0) return { records: EMPTY, nextOffset };
  // One contiguous run (only a head or tail was left out, e.g. past the last stable offset): a view, no copy.
  if (isContiguous(kept)) {
    const first = kept[0] as Buffer;
    return { records: Buffer.from(first.buffer, first.byteOffset, keptBytes), nextOffset };
  }
  return { records: Buffer.concat(kept, keptBytes), nextOffset };
}

const EMPTY = Buffer.alloc(0);

function isContiguous(parts: readonly Buffer[]): boolean {
  for (let i = 1; i < parts.length; i++) {
    const prev = parts[i - 1] as Buffer;
    const cur = parts[i] as Buffer;
    if (prev.buffer !== cur.buffer || prev.byteOffset + prev.length !== cur.byteOffset) return false;
  }
  return true;
}

function byProducer(aborted: readonly AbortedTxn[]): Map<number, AbortedTxn[]> {
  const map = new Map<number, AbortedTxn[]>();
  for (const t of aborted) {
    const list = map.get(t.producerId);
    if (list === undefined) map.set(t.producerId, [t]);
    else list.push(t);
  }
  return map;
}

function isAborted(abortedBy: ReadonlyMap<number, readonly AbortedTxn[]>, producerId: number, baseOffset: number): boolean {
  const list = abortedBy.get(producerId);
  if (list === undefined) return false;
  for (const t of list) if (t.firstOffset <= baseOffset && baseOffset <= t.lastOffset) return true;
  return false;
}
