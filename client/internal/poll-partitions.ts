import type { Connection } from '../connection.js';
import type { StartFrom } from '../poll-consumer.js';
import { hasCode } from '../protocol/errors.js';
import type { OffsetSpec } from '../protocol/messages/common.js';
import type { ResponseOf } from '../protocol/messages/index.js';
import { fromErrorBody } from '../protocol/messages/error.js';
import type { IsolationLevel } from '../protocol/messages/fetch.js';
import type { Message } from '../value-codec.js';
import { keyOf, type TopicPartitionKey } from './group-membership.js';

export interface PartitionState extends TopicPartitionKey {
  /** Where the partition started when it was assigned: its committed offset, else the `from` position. */
  readonly start: number;
  /** Next offset to fetch. */
  position: number;
  /** Everything below this offset has been processed (the offset a commit stores). */
  processed: number;
  /** What the group last committed for it, to skip no-op commits. */
  committed: number;
  paused: boolean;
}

export interface PartitionOffset {
  topic: string;
  partition: number;
  offset: number;
}

/** What a commit of the processed progress stores: the partitions processed past their last commit. */
export function uncommittedOffsets(states: Iterable<PartitionState>): PartitionOffset[] {
  return [...states].filter((p) => p.processed > p.committed).map(({ topic, partition, processed }) => ({ topic, partition, offset: processed }));
}

/** Records offsets the group accepted, to skip no-op commits. */
export function recordCommitted(partitions: ReadonlyMap<string, PartitionState>, offsets: readonly PartitionOffset[]): void {
  for (const o of offsets) {
    const state = partitions.get(keyOf(o.topic, o.partition));
    if (state !== undefined && o.offset > state.committed) state.committed = o.offset;
  }
}

/** Marks a handed-out message (and everything before it in its partition) processed. */
export function advanceProcessed(partitions: ReadonlyMap<string, PartitionState>, m: Message): void {
  const state = partitions.get(keyOf(m.topic, m.partition));
  if (state !== undefined && m.offset + 1 > state.processed) state.processed = m.offset + 1;
}

/**
 * The group's committed offsets. While a transaction holding offsets of the group is still
 * finishing, the broker answers UNSTABLE_OFFSETS: wait and ask again, so a position is never
 * taken from offsets that commit is about to move.
 */
export async function fetchCommitted(conn: Connection, group: string, closed: () => boolean): Promise<ResponseOf<'FetchOffsets'>> {
  for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
    try {
      return await conn.request('FetchOffsets', { groupId: group });
    } catch (err) {
      if (!hasCode(err, 'UNSTABLE_OFFSETS') || closed()) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Resolves a starting point to an offset per partition. */
export async function resolveStart(conn: Connection, tps: readonly TopicPartitionKey[], from: StartFrom, isolation: IsolationLevel): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (tps.length === 0) return out;
  if (typeof from === 'object' && 'offset' in from) {
    for (const tp of tps) out.set(keyOf(tp.topic, tp.partition), from.offset);
    return out;
  }
  const at: OffsetSpec = typeof from === 'object' ? from.timestamp : from;
  const res = await conn.request('ListOffsets', { ...(isolation === 'read_committed' ? { isolation } : {}), partitions: tps.map((tp) => ({ ...tp, at })) });
  for (const p of res.partitions) {
    if (p.error !== undefined) throw fromErrorBody(p.error);
    out.set(keyOf(p.topic, p.partition), p.offset);
  }
  return out;
}
