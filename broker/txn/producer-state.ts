/**
 * The producer state of one partition (Kafka's ProducerStateManager, KIP-98): for each producer
 * id that wrote to it, the epoch, the last sequence and the last few batches, so that a retried
 * batch is answered with its original offsets instead of being written twice; plus what
 * transactions need: the first offset of each producer's open transaction (which bounds the
 * last stable offset) and the index of aborted transactions fed by ABORT markers.
 *
 * Pure: no I/O, no clock. The caller keeps the protocol (partition-producers.ts):
 * - check() then apply() for one batch with nothing in between, and apply() in log order, right
 *   when the append is issued: a retry of a batch still in flight then finds it and waits for
 *   the same result, and two batches of one producer can never both pass check() for one slot.
 * - On rebuild (snapshot, log scan) apply() replays the log's batches without check().
 *
 * Rules of check() for an idempotent batch (producerId >= 0), in this order:
 *   epoch < current                          PRODUCER_FENCED
 *   epoch > current, baseSequence != 0       OUT_OF_ORDER_SEQUENCE (a new epoch starts at 0)
 *   baseSequence == lastSequence + 1         append
 *   same first and last sequence as one of
 *   the last RECENT_BATCHES batches          duplicate (its offsets, or its pending append)
 *   baseSequence <= lastSequence             DUPLICATE_SEQUENCE (too old to answer)
 *   otherwise (a gap)                        OUT_OF_ORDER_SEQUENCE, details { expected, got }
 * A producer id this partition has no state for (never wrote here, or expired) may start at any
 * sequence, as in Kafka since KIP-360: its state may have been expired while the producer lived.
 * Whether the producer id and epoch were ever issued is the producer-id registry's question
 * (producer-ids.ts), asked before this one.
 */
import { SluiceError } from '../../client/protocol/errors.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL } from '../../client/protocol/record-batch.js';
import { ControlType } from './control-record.js';
import { addSequence, isBehind, lastSequenceOf } from './sequence.js';

/** Kafka keeps the last five batches: a producer has at most five in flight per partition. */
export const RECENT_BATCHES = 5;

/** What the state reads of a batch header (the protocol's BatchHeader has all of it). */
export interface ProducerBatch {
  readonly producerId: number;
  readonly producerEpoch: number;
  readonly baseSequence: number;
  readonly lastOffsetDelta: number;
  readonly attributes: number;
  readonly maxTimestamp: number;
}

export interface AppendOffsets {
  readonly baseOffset: number;
  readonly lastOffset: number;
}

/** One of a producer's recent batches. */
export interface BatchMetadata extends AppendOffsets {
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Set while the append is in flight: the log's promise for it. Cleared once it succeeds. */
  readonly pending: Promise<AppendOffsets> | undefined;
}

export type CheckResult =
  | { readonly kind: 'append' }
  /** The batch is in the log already: answer with these offsets once `pending` (if any) settles. */
  | ({ readonly kind: 'duplicate' } & BatchMetadata);

/** One aborted transaction on this partition: read_committed readers skip its data batches. */
export interface AbortedTxn {
  readonly producerId: number;
  /** The transaction's first offset on this partition. */
  readonly firstOffset: number;
  /** The offset of its ABORT marker. */
  readonly lastOffset: number;
}

/** A read-only view of one producer's state, for tests, snapshots and diagnostics. */
export interface ProducerView {
  readonly producerId: number;
  readonly epoch: number;
  /**
   * The last sequence written at this epoch; -1 when the epoch has written nothing yet here (the
   * next batch must start at 0); null when unknown (state rebuilt from a marker alone).
   */
  readonly lastSequence: number | null;
  readonly batches: readonly BatchMetadata[];
  /** When the producer was last seen (ApplyOptions.now, else batch timestamps); drives expiry. */
  readonly lastTimestamp: number;
  /** First offset of the producer's open transaction on this partition, if one is open. */
  readonly txnFirstOffset: number | null;
}

/** The durable part of the state, as the snapshot stores it (no pending appends). */
export interface ProducerStateData {
  readonly producers: readonly {
    readonly producerId: number;
    readonly epoch: number;
    readonly lastSequence: number | null;
    readonly lastTimestamp: number;
    readonly txnFirstOffset: number | null;
    /** [firstSeq, lastSeq, baseOffset, lastOffset], oldest first. */
    readonly batches: readonly (readonly [number, number, number, number])[];
  }[];
  readonly aborted: readonly AbortedTxn[];
}

interface MutableBatch {
  firstSeq: number;
  lastSeq: number;
  baseOffset: number;
  lastOffset: number;
  pending: Promise<AppendOffsets> | undefined;
}

interface ProducerEntry {
  epoch: number;
  lastSequence: number | null;
  batches: MutableBatch[];
  lastTimestamp: number;
  txnFirstOffset: number | null;
}

export interface ApplyOptions {
  /** The in-flight append of this batch; duplicates wait for it. */
  readonly pending?: Promise<AppendOffsets>;
  /** For a control batch: the marker type read from its key (undefined: not a known marker). */
  readonly control?: ControlType;
  /**
   * The broker's clock, for expiry. Without it the batch's own maxTimestamp counts (the
   * producer's clock, which a backfill with old timestamps would make look long idle).
   */
  readonly now?: number;
}

export class ProducerStateTable {
  readonly #producers = new Map<number, ProducerEntry>();
  /** producerId -> first offset of its open transaction; few entries, so a scan finds the min. */
  readonly #openTxns = new Map<number, number>();
  /** Ordered by lastOffset (markers are appended in log order). */
  #aborted: AbortedTxn[] = [];

  /** Number of producers with state here. */
  get size(): number {
    return this.#producers.size;
  }

  /**
   * Decides what to do with a batch about to be appended; throws PRODUCER_FENCED,
   * OUT_OF_ORDER_SEQUENCE or DUPLICATE_SEQUENCE. Changes nothing: apply() does, once appended.
   * Batches without a producer id and control batches with a current epoch always append.
   */
  check(batch: ProducerBatch): CheckResult {
    const { producerId, producerEpoch: epoch, baseSequence } = batch;
    if (producerId < 0) return APPEND;
    const entry = this.#producers.get(producerId);
    if (entry === undefined) return APPEND;
    if (epoch < entry.epoch) {
      throw new SluiceError('PRODUCER_FENCED', `producer ${producerId} epoch ${epoch} is fenced by epoch ${entry.epoch}`, {
        details: { producerId, epoch, currentEpoch: entry.epoch },
      });
    }
    if ((batch.attributes & ATTR_CONTROL) !== 0) return APPEND;
    if (epoch > entry.epoch) {
      if (baseSequence !== 0) throw outOfOrder(producerId, 0, baseSequence, `a new epoch ${epoch} must start at sequence 0`);
      return APPEND;
    }
    const last = entry.lastSequence;
    if (last === null) return APPEND;
    const expected = addSequence(last, 1);
    if (baseSequence === expected) return APPEND;
    const lastSeq = lastSequenceOf(baseSequence, batch.lastOffsetDelta);
    for (const b of entry.batches) {
      if (b.firstSeq === baseSequence && b.lastSeq === lastSeq) return { kind: 'duplicate', ...b };
    }
    if (last >= 0 && isBehind(baseSequence, expected)) {
      throw new SluiceError(
        'DUPLICATE_SEQUENCE',
        `producer ${producerId} already wrote sequence ${baseSequence} (last ${last}); it is older than the last ${RECENT_BATCHES} batches, whose offsets are kept`,
        { details: { producerId, lastSequence: last, got: baseSequence } },
      );
    }
    throw outOfOrder(producerId, expected, baseSequence, last < 0 ? `epoch ${epoch} has written nothing here yet` : `last sequence is ${last}`);
  }

  /**
   * Records a batch appended at `offsets` (issued now, or replayed from the log), in log order.
   * Batches without a producer id change nothing.
   */
  apply(batch: ProducerBatch, offsets: AppendOffsets, options: ApplyOptions = {}): void {
    const { producerId, producerEpoch: epoch } = batch;
    if (producerId < 0) return;
    const isControl = (batch.attributes & ATTR_CONTROL) !== 0;
    const seenAt = options.now ?? batch.maxTimestamp;
    let entry = this.#producers.get(producerId);
    if (entry === undefined) {
      // A marker alone says nothing about the producer's sequences here (its data may be older
      // than what was kept); a data batch starts the record.
      entry = { epoch, lastSequence: null, batches: [], lastTimestamp: seenAt, txnFirstOffset: null };
      this.#producers.set(producerId, entry);
    } else if (epoch > entry.epoch) {
      entry.epoch = epoch;
      entry.lastSequence = -1;
      entry.batches = [];
    }
    if (seenAt > entry.lastTimestamp) entry.lastTimestamp = seenAt;
    if (isControl) {
      this.#endTxn(producerId, entry, offsets, options.control);
      return;
    }
    if (epoch === entry.epoch && batch.baseSequence >= 0) {
      const meta: MutableBatch = {
        firstSeq: batch.baseSequence,
        lastSeq: lastSequenceOf(batch.baseSequence, batch.lastOffsetDelta),
        baseOffset: offsets.baseOffset,
        lastOffset: offsets.lastOffset,
        pending: options.pending,
      };
      if (options.pending !== undefined) {
        options.pending.then(
          () => (meta.pending = undefined),
          // A failed append fails the log: the broker stops, and a retry gets the same error.
          () => undefined,
        );
      }
      entry.batches.push(meta);
      if (entry.batches.length > RECENT_BATCHES) entry.batches.shift();
      entry.lastSequence = meta.lastSeq;
    }
    if ((batch.attributes & ATTR_TRANSACTIONAL) !== 0 && entry.txnFirstOffset === null) {
      entry.txnFirstOffset = offsets.baseOffset;
      this.#openTxns.set(producerId, offsets.baseOffset);
    }
  }

  /** A marker ends the producer's open transaction here; an ABORT indexes its offset range. */
  #endTxn(producerId: number, entry: ProducerEntry, offsets: AppendOffsets, control: ControlType | undefined): void {
    if (control === undefined || entry.txnFirstOffset === null) return;
    if (control === ControlType.ABORT) {
      this.#aborted.push({ producerId, firstOffset: entry.txnFirstOffset, lastOffset: offsets.lastOffset });
    }
    entry.txnFirstOffset = null;
    this.#openTxns.delete(producerId);
  }

  /** The first offset of the oldest open transaction, if any. */
  firstUnstableOffset(): number | undefined {
    let min: number | undefined;
    for (const offset of this.#openTxns.values()) if (min === undefined || offset < min) min = offset;
    return min;
  }

  /** How far read_committed readers may read: below every open transaction, and below `highWatermark`. */
  lastStableOffset(highWatermark: number): number {
    const first = this.firstUnstableOffset();
    return first === undefined ? highWatermark : Math.min(first, highWatermark);
  }

  /**
   * The aborted transactions a read of [fromOffset, toOffset) must filter: those ending at or
   * after fromOffset and starting before toOffset, in marker order.
   */
  abortedTransactions(fromOffset: number, toOffset = Number.MAX_SAFE_INTEGER): AbortedTxn[] {
    let lo = 0;
    let hi = this.#aborted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#aborted[mid]!.lastOffset < fromOffset) lo = mid + 1;
      else hi = mid;
    }
    const out: AbortedTxn[] = [];
    for (let i = lo; i < this.#aborted.length; i++) {
      const t = this.#aborted[i]!;
      if (t.firstOffset < toOffset) out.push(t);
    }
    return out;
  }

  /** Forgets aborted transactions wholly below the log start (retention deleted them). */
  pruneAbortedBefore(logStartOffset: number): void {
    const keep = this.#aborted.findIndex((t) => t.lastOffset >= logStartOffset);
    this.#aborted = keep < 0 ? [] : this.#aborted.slice(keep);
  }

  /**
   * Drops producers not seen since before `now - maxIdleMs` (Kafka's producer.id.expiration.ms),
   * except those with an open transaction or an append in flight.
   * Returns how many were dropped.
   */
  expire(now: number, maxIdleMs: number): number {
    let dropped = 0;
    for (const [producerId, entry] of this.#producers) {
      if (entry.lastTimestamp >= now - maxIdleMs || entry.txnFirstOffset !== null) continue;
      if (entry.batches.some((b) => b.pending !== undefined)) continue;
      this.#producers.delete(producerId);
      dropped++;
    }
    return dropped;
  }

  producer(producerId: number): ProducerView | undefined {
    const entry = this.#producers.get(producerId);
    return entry === undefined ? undefined : view(producerId, entry);
  }

  producers(): ProducerView[] {
    return [...this.#producers].sort((a, b) => a[0] - b[0]).map(([id, entry]) => view(id, entry));
  }

  /** The state as data, in-flight appends included as if complete (the caller waits for them). */
  toData(): ProducerStateData {
    return {
      producers: this.producers().map((p) => ({
        producerId: p.producerId,
        epoch: p.epoch,
        lastSequence: p.lastSequence,
        lastTimestamp: p.lastTimestamp,
        txnFirstOffset: p.txnFirstOffset,
        batches: p.batches.map((b) => [b.firstSeq, b.lastSeq, b.baseOffset, b.lastOffset] as const),
      })),
      aborted: this.#aborted.map((t) => ({ ...t })),
    };
  }

  /** A table holding `data` (already validated: see producer-snapshot.ts). */
  static fromData(data: ProducerStateData): ProducerStateTable {
    const table = new ProducerStateTable();
    for (const p of data.producers) {
      table.#producers.set(p.producerId, {
        epoch: p.epoch,
        lastSequence: p.lastSequence,
        lastTimestamp: p.lastTimestamp,
        txnFirstOffset: p.txnFirstOffset,
        batches: p.batches.map(([firstSeq, lastSeq, baseOffset, lastOffset]) => ({ firstSeq, lastSeq, baseOffset, lastOffset, pending: undefined })),
      });
      if (p.txnFirstOffset !== null) table.#openTxns.set(p.producerId, p.txnFirstOffset);
    }
    table.#aborted = data.aborted.map((t) => ({ ...t }));
    return table;
  }
}

const APPEND: CheckResult = { kind: 'append' };

function outOfOrder(producerId: number, expected: number, got: number, why: string): SluiceError {
  return new SluiceError('OUT_OF_ORDER_SEQUENCE', `producer ${producerId}: expected sequence ${expected}, got ${got} (${why})`, {
    details: { producerId, expected, got },
  });
}

function view(producerId: number, e: ProducerEntry): ProducerView {
  return {
    producerId,
    epoch: e.epoch,
    lastSequence: e.lastSequence,
    batches: e.batches.map((b) => ({ ...b })),
    lastTimestamp: e.lastTimestamp,
    txnFirstOffset: e.txnFirstOffset,
  };
}
