/**
 * Where one known offset stands.
 * - ahead: known but not placed yet: a restored delivery count whose message was not offered
 *   again yet (its key is still unknown), or a new message for the instant of its offer;
 * - blocked: ordering 'key', behind an unsettled message with the same key;
 * - fresh: never delivered, deliverable; ready: due for redelivery; delayed: redelivered later;
 * - inflight: delivered, neither settled nor expired; dead: for the dispatcher to dead-letter;
 * - settled: done (most settled entries are forgotten at once, see PartitionDeliveryState#settle).
 */
export type State = 'ahead' | 'blocked' | 'fresh' | 'ready' | 'delayed' | 'inflight' | 'dead' | 'settled';

/** One known offset of a PartitionDeliveryState (partition-state.ts). */
export interface Entry {
  readonly offset: number;
  key: string | null;
  state: State;
  /** Deliveries so far; once settled, the settling attempt. */
  count: number;
  /** The holder while in flight, else ''. */
  consumerId: string;
  deadline: number;
  settledBy: 'ack' | 'dead-letter' | null;
}

export function newEntry(offset: number, key: string | null, count: number): Entry {
  return { offset, key, state: 'ahead', count, consumerId: '', deadline: 0, settledBy: null };
}
