import { appendRange, normalizePersisted, type NormalizedState, type OffsetRange } from './ranges.js';
import type { AheadOfRead } from './ahead-of-read.js';
import type { OffsetWindow } from './offset-window.js';

/** What survives a restart (persisted as JSON in SQLite). */
export interface PersistedPartitionState {
  ackFloor: number;
  /** Settled ranges above the floor, [start, end), sorted and disjoint. */
  acked: Array<[start: number, end: number]>;
  /** Deliveries so far of unsettled offsets. */
  deliveryCounts: Array<[offset: number, count: number]>;
}

/** The persisted state a PartitionDeliveryState starts from, checked and made canonical; none: a fresh start at 0. */
export function restoreSnapshot(persisted: PersistedPartitionState | undefined): NormalizedState {
  return persisted === undefined ? { floor: 0, acked: [], counts: [] } : normalizePersisted(persisted.ackFloor, persisted.acked, persisted.deliveryCounts);
}

/**
 * PartitionDeliveryState.snapshot(): the floor, settled ranges above it and delivery counts of
 * unsettled offsets. O(unsettled): settled ranges are the gaps between unsettled offsets.
 */
export function takeSnapshot(ackFloor: number, readPosition: number, window: OffsetWindow, ahead: AheadOfRead): PersistedPartitionState {
  const acked: OffsetRange[] = [];
  const deliveryCounts: Array<[number, number]> = [];
  let next = ackFloor;
  window.forEach((e) => {
    if (e.state === 'settled') return;
    appendRange(acked, next, e.offset);
    next = e.offset + 1;
    if (e.count > 0) deliveryCounts.push([e.offset, e.count]);
  });
  appendRange(acked, next, readPosition);
  ahead.appendSettled(acked, readPosition);
  // Only when nothing below the read position is unsettled: what the floor already covers.
  while (acked.length > 0 && (acked[0] as OffsetRange)[0] < ackFloor) {
    const first = acked[0] as OffsetRange;
    if (first[1] > ackFloor) {
      first[0] = ackFloor;
      break;
    }
    acked.shift();
  }
  ahead.forEachUnoffered((e) => {
    if (e.state !== 'settled') deliveryCounts.push([e.offset, e.count]);
  });
  return { ackFloor, acked, deliveryCounts };
}
