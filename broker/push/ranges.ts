import { SluiceError } from '../../client/protocol/errors.js';

/** A half-open range of offsets, [start, end). */
export type OffsetRange = [start: number, end: number];

/**
 * Appends [start, end) to `ranges`, which must stay sorted by start: merged into the last range
 * when they overlap or touch, dropped when empty.
 */
export function appendRange(ranges: OffsetRange[], start: number, end: number): void {
  if (end <= start) return;
  const last = ranges[ranges.length - 1];
  if (last !== undefined && start <= last[1]) {
    if (end > last[1]) last[1] = end;
    return;
  }
  ranges.push([start, end]);
}

/** Index of the range holding `offset` among sorted, disjoint `ranges` (searching from `from`), or -1. */
export function findRange(ranges: readonly OffsetRange[], offset: number, from = 0): number {
  let lo = from;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = ranges[mid] as OffsetRange;
    if (offset < r[0]) hi = mid - 1;
    else if (offset >= r[1]) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** A persisted partition state made canonical; see normalizePersisted. */
export interface NormalizedState {
  floor: number;
  /** Sorted, disjoint, not touching, all above `floor` (a range at the floor is folded into it). */
  acked: OffsetRange[];
  /** Sorted by offset, one per offset (the highest count wins), none below the floor or in `acked`, counts >= 1. */
  counts: Array<[offset: number, count: number]>;
}

function corrupt(what: string): SluiceError {
  return new SluiceError('STORAGE_ERROR', `push subscription state is corrupt: ${what}`);
}

function isOffset(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/**
 * Checks and canonicalises a state read back from storage (it is JSON, so trust nothing): sorts
 * and merges ranges, folds a settled prefix into the floor, and drops counts the ranges or the
 * floor already settle. Throws STORAGE_ERROR on values that are not offsets at all.
 */
export function normalizePersisted(ackFloor: unknown, acked: unknown, deliveryCounts: unknown): NormalizedState {
  if (!isOffset(ackFloor)) throw corrupt(`ackFloor ${String(ackFloor)}`);
  if (!Array.isArray(acked) || !Array.isArray(deliveryCounts)) throw corrupt('acked and deliveryCounts must be arrays');
  const raw: OffsetRange[] = [];
  for (const r of acked as unknown[]) {
    if (!Array.isArray(r) || !isOffset(r[0]) || !isOffset(r[1])) throw corrupt(`acked range ${JSON.stringify(r)}`);
    if (r[1] > r[0] && r[1] > ackFloor) raw.push([Math.max(r[0], ackFloor), r[1]]);
  }
  raw.sort((a, b) => a[0] - b[0]);
  let floor = ackFloor;
  const ranges: OffsetRange[] = [];
  for (const [start, end] of raw) {
    if (ranges.length === 0 && start <= floor) floor = Math.max(floor, end);
    else appendRange(ranges, start, end);
  }
  const byOffset = new Map<number, number>();
  for (const c of deliveryCounts as unknown[]) {
    if (!Array.isArray(c) || !isOffset(c[0]) || !isOffset(c[1])) throw corrupt(`delivery count ${JSON.stringify(c)}`);
    const [offset, count] = c as [number, number];
    if (count === 0 || offset < floor || findRange(ranges, offset) >= 0) continue;
    byOffset.set(offset, Math.max(count, byOffset.get(offset) ?? 0));
  }
  const counts = [...byOffset].sort((a, b) => a[0] - b[0]);
  return { floor, acked: ranges, counts };
}
