import { SluiceError } from '../../client/protocol/errors.js';

export type Ordering = 'partition' | 'key';

export interface PartitionStateOptions {
  /** A delivery not settled within this is redelivered (or dead-lettered at maxDeliveries). */
  ackWaitMs: number;
  /** Deliveries of one message before it goes to the dead-letter path; Infinity for no limit. */
  maxDeliveries: number;
  /** Redelivery delay after failed attempt n: backoffMs[n-1], the last one repeating; empty = at once. */
  backoffMs: readonly number[];
  ordering: Ordering;
}

/** Throws INVALID_CONFIG unless the options make sense. */
export function checkOptions(o: PartitionStateOptions): void {
  const bad = (what: string): SluiceError => new SluiceError('INVALID_CONFIG', `push subscription: ${what}`);
  if (!(Number.isFinite(o.ackWaitMs) && o.ackWaitMs > 0)) throw bad(`ackWaitMs must be positive, not ${o.ackWaitMs}`);
  if (!(o.maxDeliveries === Infinity || (Number.isSafeInteger(o.maxDeliveries) && o.maxDeliveries >= 1))) {
    throw bad(`maxDeliveries must be a positive integer, not ${o.maxDeliveries}`);
  }
  for (const ms of o.backoffMs) if (!(Number.isFinite(ms) && ms >= 0)) throw bad(`backoffMs must be non-negative, not ${ms}`);
  if (o.ordering !== 'partition' && o.ordering !== 'key') throw bad(`unknown ordering ${String(o.ordering)}`);
}

/** The redelivery delay after failed attempt `attempt`: backoffMs[attempt-1], the last one repeating; none: at once. */
export function backoffDelay(backoffMs: readonly number[], attempt: number): number {
  const n = backoffMs.length;
  return n === 0 ? 0 : (backoffMs[Math.min(attempt, n) - 1] as number);
}
