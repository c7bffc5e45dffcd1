import { SluiceError } from '../../client/protocol/errors.js';
import type { AheadOfRead } from './ahead-of-read.js';
import type { Entry } from './delivery-entry.js';

/** Stands for "settled at its first attempt, by ack": such entries are not kept (see PartitionDeliveryState#settle). Frozen: never changed. */
const SETTLED_FIRST = Object.freeze({ offset: -1, key: null, state: 'settled', count: 1, consumerId: '', deadline: 0, settledBy: 'ack' }) as Entry;

/**
 * The attempt check of a settlement in a PartitionDeliveryState (partition-state.ts; the rules:
 * docs/protocol.md, "Attempts, STALE_ACK and UNKNOWN_DELIVERY"). Returns the entry `attempt` of
 * `offset` addresses, given `e`, the state's entry for the offset if any: unsettled, or settled
 * with a known settling attempt; undefined when settled at an attempt no longer known. Throws
 * STALE_ACK or UNKNOWN_DELIVERY otherwise.
 */
export function resolveAttempt(
  state: { readonly readPosition: number; readonly ackFloor: number },
  ahead: AheadOfRead,
  e: Entry | undefined,
  offset: number,
  attempt: number,
): Entry | undefined {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(attempt) || attempt < 1) throw unknownDelivery(offset, attempt);
  if (e !== undefined) {
    if (attempt < e.count) {
      throw new SluiceError('STALE_ACK', `attempt ${attempt} of offset ${offset} was superseded by attempt ${e.count}`, {
        details: { offset, attempt, currentAttempt: e.count },
      });
    }
    if (attempt > e.count) throw unknownDelivery(offset, attempt);
    return e;
  }
  if (offset >= state.readPosition) {
    if (ahead.isSettled(offset)) return undefined;
    throw unknownDelivery(offset, attempt);
  }
  if (offset < ahead.horizon || offset < state.ackFloor) return undefined;
  // Settled at its first attempt in this process (later ones are kept), or a gap in the log.
  if (attempt !== 1) throw unknownDelivery(offset, attempt);
  return SETTLED_FIRST;
}

/** nack or reject of a settled offset: a retry of the dead-lettering one says so again; anything else is stale. */
export function settledOutcome(offset: number, attempt: number, e: Entry | undefined): 'dead-letter' {
  if (e?.settledBy === 'dead-letter') return 'dead-letter';
  throw new SluiceError('STALE_ACK', `offset ${offset} is already settled`, { details: { offset, attempt, settled: true } });
}

function unknownDelivery(offset: number, attempt: number): SluiceError {
  return new SluiceError('UNKNOWN_DELIVERY', `offset ${offset} has no delivery attempt ${attempt}`, { details: { offset, attempt } });
}
