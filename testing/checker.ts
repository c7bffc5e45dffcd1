/**
 * Checks a recorded history (history.ts) against the broker's promises: every acknowledged
 * message is consumed, nothing appears that was never sent or was aborted, an offset holds one
 * value and a value one offset, and a poll consumer reads each partition forwards without
 * skipping anything visible.
 *
 * Terms: a value is *acked* when its send has an ok and, if transactional, its txn ended ok; it
 * is *aborted* when its send failed (and has no ok or unknown) or its txn ended fail; otherwise
 * its outcome is unknown (including a txn with no recorded end) and it is never counted lost.
 * *Reads* are the records of poll ok, deliver and ack events (any outcome: the consumer held
 * them); *consumed* are those of poll ok and of every ack event: a consumer that asked to ack a
 * message has processed it, whether the broker took the ack, refused it as stale (a redelivery
 * owns the message now) or never answered (a lost ack only causes a redelivery). A delivery
 * alone is not consumption: the consumer may die before its handler finishes.
 *
 * Pure and linear-ish: one pass over the events builds maps keyed by value and by position, a
 * second pass over those maps reports. Outputs are sorted so two runs over one history agree.
 */
import type { HistoryEvent, PartitionOffset, RecordRef, TopicPartition } from './history.js';

/** Where a lost value sits against the offsets consumers did observe in its partition. */
export type LostRegion = 'prefix' | 'middle' | 'postfix';

/** An acknowledged value no consumer consumed. `ackedAt` is the time of its send ok. */
export interface LostValue extends RecordRef {
  readonly region: LostRegion;
  readonly ackedAt: number;
}

/** How a consumer came to hold a record. */
export type ReadVia = 'poll' | 'deliver' | 'ack';

/** The first read of a value that should not be readable. */
export interface BadRead extends RecordRef {
  readonly process: string;
  /** The index of the event that read it. */
  readonly index: number;
  readonly via: ReadVia;
}

/** A read of a value whose send definitely failed or whose transaction aborted. */
export interface AbortedRead extends BadRead {
  readonly reason: 'send-failed' | 'txn-aborted';
}

/** A value seen at two or more positions (send ok and reads together). */
export interface DuplicatedValue {
  readonly value: string;
  readonly positions: readonly PartitionOffset[];
}

/** One offset seen holding two or more values (send ok and reads together). */
export interface InconsistentOffset extends PartitionOffset {
  readonly values: readonly string[];
}

/** A poll read at or below the previous poll read of that process in that partition. */
export interface NonMonotonicPoll extends TopicPartition {
  readonly process: string;
  readonly previous: number;
  readonly offset: number;
  /** The index of the poll event holding the read. */
  readonly index: number;
}

/**
 * A poll consumer moved from `from` to `to` in one step past offsets known to hold visible
 * values: the open range (from, to) between two reads, or [from, to) from an assign to the
 * first read.
 */
export interface SkippedOffsets extends TopicPartition {
  readonly process: string;
  readonly from: number;
  readonly to: number;
  /** The visible offsets skipped, at most `MAX_SKIPPED_LISTED` of them. */
  readonly skipped: readonly number[];
  /** How many visible offsets were skipped in all. */
  readonly count: number;
}

/** Counts that say how much the history exercised, to tell a quiet run from a good one. */
export interface CheckStats {
  readonly sends: {
    /** Distinct values sent. */
    readonly invoked: number;
    /** Send ok, and committed when transactional. */
    readonly acked: number;
    /** Definitely not visible: the send failed or its transaction aborted. */
    readonly failed: number;
    /** The rest: outcome unknown, no reply, or transaction unresolved. */
    readonly unknown: number;
  };
  readonly reads: {
    /** Records in poll ok events. */
    readonly polled: number;
    /** Records in deliver events. */
    readonly delivered: number;
    /** Records in ack ok events. */
    readonly acked: number;
  };
  /** Distinct values polled or acked. */
  readonly consumed: number;
  /** Deliveries of a value beyond its first. */
  readonly redeliveries: number;
}

/** Everything `checkHistory` found; `valid` when every anomaly list is empty. */
export interface CheckResult {
  readonly valid: boolean;
  readonly stats: CheckStats;
  readonly lost: readonly LostValue[];
  /** Partitions with lost values that no consumer read at all. */
  readonly unreadPartitions: readonly TopicPartition[];
  readonly unexpected: readonly BadRead[];
  readonly duplicated: readonly DuplicatedValue[];
  readonly inconsistentOffsets: readonly InconsistentOffset[];
  readonly nonMonotonicPolls: readonly NonMonotonicPoll[];
  readonly skippedOffsets: readonly SkippedOffsets[];
  readonly abortedReads: readonly AbortedRead[];
}

/** How many skipped offsets one `SkippedOffsets` entry lists; `count` has the total. */
export const MAX_SKIPPED_LISTED = 100;

type Outcome = 'acked' | 'aborted' | 'unknown';
type TxnStatus = 'ok' | 'fail' | 'unknown';

interface SendState {
  txn: string | undefined;
  ok: { readonly part: PartitionState; readonly offset: number; readonly time: number } | undefined;
  failed: boolean;
  unknown: boolean;
}

/** What the checker knows of one topic-partition. */
interface PartitionState extends TopicPartition {
  readonly slots: Map<number, Slot>;
  /** The smallest and largest offsets any read observed; undefined until one does. */
  min: number | undefined;
  max: number | undefined;
}

/** One (topic, partition, offset) and the distinct values seen there. */
interface Slot {
  readonly part: PartitionState;
  readonly offset: number;
  readonly values: string[];
  /** The values a consumer read here (not only a send ok); allocated on the first read. */
  readValues: string[] | undefined;
}

interface Cursor {
  previous: number | undefined;
  assignedAt: number | undefined;
}

interface Gap {
  readonly part: PartitionState;
  readonly process: string;
  readonly from: number;
  readonly to: number;
  /** Inclusive bounds of the offsets passed over. */
  readonly lo: number;
  readonly hi: number;
}

const TXN_RANK: Record<HistoryEvent['type'], number> = { invoke: 0, unknown: 1, fail: 2, ok: 3 };

function comparePositions(a: PartitionOffset, b: PartitionOffset): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition || a.offset - b.offset;
}

function compareRecords(a: RecordRef, b: RecordRef): number {
  return comparePositions(a, b) || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0);
}

const positionOf = (slot: Slot): PartitionOffset => ({
  topic: slot.part.topic,
  partition: slot.part.partition,
  offset: slot.offset,
});

/** Checks a history; see the module comment and the field docs of `CheckResult`. */
export function checkHistory(events: Iterable<HistoryEvent>): CheckResult {
  const sends = new Map<string, SendState>();
  // A txn's strongest end seen: ok (committed) beats fail beats unknown beats a bare invoke.
  const txns = new Map<string, HistoryEvent['type']>();
  // Nested maps rather than string keys: no key is built per record on the hot path.
  const partitions = new Map<string, Map<number, PartitionState>>();
  // Most values sit at one position: keep the slot itself and an array only for the rest.
  const positionsOf = new Map<string, Slot | Slot[]>();
  const firstReads = new Map<string, BadRead>();
  const consumed = new Set<string>();
  const delivered = new Set<string>();
  const cursors = new Map<string, Map<PartitionState, Cursor>>();
  const nonMonotonicPolls: NonMonotonicPoll[] = [];
  const gaps: Gap[] = [];
  let polled = 0;
  let deliveredCount = 0;
  let ackedCount = 0;
  let redeliveries = 0;

  const partitionOf = (topic: string, partition: number): PartitionState => {
    let byNumber = partitions.get(topic);
    if (byNumber === undefined) partitions.set(topic, (byNumber = new Map()));
    let part = byNumber.get(partition);
    if (part === undefined) {
      part = { topic, partition, slots: new Map(), min: undefined, max: undefined };
      byNumber.set(partition, part);
    }
    return part;
  };

  const place = (value: string, part: PartitionState, offset: number, read: boolean): void => {
    let slot = part.slots.get(offset);
    if (slot === undefined) {
      slot = { part, offset, values: [value], readValues: undefined };
      part.slots.set(offset, slot);
    } else if (!slot.values.includes(value)) slot.values.push(value);
    if (read) {
      if (slot.readValues === undefined) slot.readValues = [value];
      else if (!slot.readValues.includes(value)) slot.readValues.push(value);
    }
    const positions = positionsOf.get(value);
    if (positions === undefined) positionsOf.set(value, slot);
    else if (Array.isArray(positions)) {
      if (!positions.includes(slot)) positions.push(slot);
    } else if (positions !== slot) positionsOf.set(value, [positions, slot]);
  };

  const observe = (record: RecordRef, via: ReadVia, event: HistoryEvent): PartitionState => {
    const { topic, partition, offset, value } = record;
    const part = partitionOf(topic, partition);
    place(value, part, offset, true);
    if (part.min === undefined || offset < part.min) part.min = offset;
    if (part.max === undefined || offset > part.max) part.max = offset;
    if (!firstReads.has(value)) {
      firstReads.set(value, { topic, partition, offset, value, process: event.process, index: event.index, via });
    }
    return part;
  };

  const cursorOf = (process: string, part: PartitionState): Cursor => {
    let byPart = cursors.get(process);
    if (byPart === undefined) cursors.set(process, (byPart = new Map()));
    let cursor = byPart.get(part);
    if (cursor === undefined) {
      cursor = { previous: undefined, assignedAt: undefined };
      byPart.set(part, cursor);
    }
    return cursor;
  };

  const advance = (part: PartitionState, offset: number, event: HistoryEvent): void => {
    const { process, index } = event;
    const cursor = cursorOf(process, part);
    const { previous, assignedAt } = cursor;
    const gap = (from: number, lo: number): void => {
      if (lo <= offset - 1) gaps.push({ part, process, from, to: offset, lo, hi: offset - 1 });
    };
    if (previous !== undefined) {
      if (offset <= previous) {
        nonMonotonicPolls.push({ process, topic: part.topic, partition: part.partition, previous, offset, index });
      } else gap(previous, previous + 1);
    } else if (assignedAt !== undefined) gap(assignedAt, assignedAt);
    // Follow the consumer from where it is now, so one rewind is one anomaly, not many.
    cursor.previous = offset;
    cursor.assignedAt = undefined;
  };

  for (const event of events) {
    switch (event.f) {
      case 'send': {
        let send = sends.get(event.value);
        if (send === undefined) {
          send = { txn: undefined, ok: undefined, failed: false, unknown: false };
          sends.set(event.value, send);
        }
        if (event.txn !== undefined) send.txn = event.txn;
        if (event.type === 'ok') {
          const part = partitionOf(event.topic, event.partition);
          send.ok ??= { part, offset: event.offset, time: event.time };
          place(event.value, part, event.offset, false);
        } else if (event.type === 'fail') send.failed = true;
        else if (event.type === 'unknown') send.unknown = true;
        break;
      }
      case 'poll':
        if (event.type !== 'ok') break;
        for (const record of event.records) {
          advance(observe(record, 'poll', event), record.offset, event);
          consumed.add(record.value);
        }
        polled += event.records.length;
        break;
      case 'deliver':
        for (const record of event.records) {
          observe(record, 'deliver', event);
          if (delivered.has(record.value)) redeliveries++;
          else delivered.add(record.value);
        }
        deliveredCount += event.records.length;
        break;
      case 'ack':
        // Whatever the ack's outcome, the consumer held these records and processed them.
        for (const record of event.records) observe(record, 'ack', event);
        for (const record of event.records) consumed.add(record.value);
        if (event.type === 'ok') ackedCount += event.records.length;
        break;
      case 'txn': {
        const seen = txns.get(event.txn);
        if (seen === undefined || TXN_RANK[event.type] > TXN_RANK[seen]) txns.set(event.txn, event.type);
        break;
      }
      case 'assign':
        for (const { topic, partition, offset } of event.partitions) {
          const cursor = cursorOf(event.process, partitionOf(topic, partition));
          cursor.previous = undefined;
          cursor.assignedAt = offset;
        }
        break;
      case 'fault':
        break;
    }
  }

  const txnStatus = (txn: string | undefined): TxnStatus => {
    if (txn === undefined) return 'ok';
    const seen = txns.get(txn);
    return seen === 'ok' || seen === 'fail' ? seen : 'unknown';
  };
  const outcomes = new Map<string, Outcome>();
  const counts = { acked: 0, aborted: 0, unknown: 0 };
  for (const [value, send] of sends) {
    const txn = txnStatus(send.txn);
    const definitelyFailed = send.failed && send.ok === undefined && !send.unknown;
    const outcome: Outcome =
      txn === 'fail' || definitelyFailed ? 'aborted' : send.ok !== undefined && txn === 'ok' ? 'acked' : 'unknown';
    outcomes.set(value, outcome);
    counts[outcome]++;
  }

  const lost: LostValue[] = [];
  const unread = new Set<PartitionState>();
  for (const [value, send] of sends) {
    if (outcomes.get(value) !== 'acked' || consumed.has(value) || send.ok === undefined) continue;
    const { part, offset, time } = send.ok;
    let region: LostRegion;
    if (part.min === undefined || part.max === undefined) {
      region = 'postfix';
      unread.add(part);
    } else region = offset < part.min ? 'prefix' : offset > part.max ? 'postfix' : 'middle';
    lost.push({ topic: part.topic, partition: part.partition, offset, value, region, ackedAt: time });
  }

  const unexpected: BadRead[] = [];
  const abortedReads: AbortedRead[] = [];
  for (const [value, read] of firstReads) {
    const send = sends.get(value);
    if (send === undefined) unexpected.push(read);
    else if (outcomes.get(value) === 'aborted') {
      abortedReads.push({ ...read, reason: txnStatus(send.txn) === 'fail' ? 'txn-aborted' : 'send-failed' });
    }
  }

  const duplicated: DuplicatedValue[] = [];
  for (const [value, positions] of positionsOf) {
    if (!Array.isArray(positions)) continue;
    duplicated.push({ value, positions: positions.map(positionOf).sort(comparePositions) });
  }

  const inconsistentOffsets: InconsistentOffset[] = [];
  for (const byNumber of partitions.values()) {
    for (const part of byNumber.values()) {
      for (const slot of part.slots.values()) {
        if (slot.values.length > 1) inconsistentOffsets.push({ ...positionOf(slot), values: [...slot.values].sort() });
      }
    }
  }

  const skippedOffsets = findSkipped(gaps, sends, outcomes);

  lost.sort(compareRecords);
  unexpected.sort(compareRecords);
  abortedReads.sort(compareRecords);
  duplicated.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  inconsistentOffsets.sort(comparePositions);
  const unreadPartitions = [...unread]
    .map(({ topic, partition }) => ({ topic, partition }))
    .sort((a, b) => comparePositions({ ...a, offset: 0 }, { ...b, offset: 0 }));

  const valid =
    lost.length === 0 &&
    unexpected.length === 0 &&
    duplicated.length === 0 &&
    inconsistentOffsets.length === 0 &&
    nonMonotonicPolls.length === 0 &&
    skippedOffsets.length === 0 &&
    abortedReads.length === 0;

  return {
    valid,
    stats: {
      sends: { invoked: sends.size, acked: counts.acked, failed: counts.aborted, unknown: counts.unknown },
      reads: { polled, delivered: deliveredCount, acked: ackedCount },
      consumed: consumed.size,
      redeliveries,
    },
    lost,
    unreadPartitions,
    unexpected,
    duplicated,
    inconsistentOffsets,
    nonMonotonicPolls,
    skippedOffsets,
    abortedReads,
  };
}

/**
 * Turns the poll consumers' jumps into skipped offsets: offsets in the jumped range that hold a
 * visible value, i.e. an acked value's offset or a read of a value that was not aborted.
 * Offsets nobody knows of (aborted data, transaction markers, unknown sends) are fine to pass.
 */
function findSkipped(
  gaps: readonly Gap[],
  sends: ReadonlyMap<string, SendState>,
  outcomes: ReadonlyMap<string, Outcome>,
): SkippedOffsets[] {
  if (gaps.length === 0) return [];
  const visible = new Map<PartitionState, Set<number>>();
  for (const gap of gaps) visible.set(gap.part, new Set());
  for (const [value, send] of sends) {
    if (send.ok !== undefined && outcomes.get(value) === 'acked') visible.get(send.ok.part)?.add(send.ok.offset);
  }
  for (const [part, offsets] of visible) {
    for (const slot of part.slots.values()) {
      if (slot.readValues?.some((value) => outcomes.get(value) !== 'aborted')) offsets.add(slot.offset);
    }
  }
  const sorted = new Map<PartitionState, number[]>();
  for (const [part, offsets] of visible) sorted.set(part, [...offsets].sort((a, b) => a - b));

  const skippedOffsets: SkippedOffsets[] = [];
  for (const { part, process, from, to, lo, hi } of gaps) {
    const offsets = sorted.get(part) ?? [];
    const skipped: number[] = [];
    let count = 0;
    for (let i = lowerBound(offsets, lo); i < offsets.length; i++) {
      const offset = offsets[i] as number;
      if (offset > hi) break;
      count++;
      if (skipped.length < MAX_SKIPPED_LISTED) skipped.push(offset);
    }
    if (count > 0) skippedOffsets.push({ process, topic: part.topic, partition: part.partition, from, to, skipped, count });
  }
  return skippedOffsets;
}

/** The first index whose element is >= `target` in an ascending array. */
function lowerBound(sorted: readonly number[], target: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export { formatCheck } from './format-check.js';
