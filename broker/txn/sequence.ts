/**
 * Producer sequence numbers: int32, non-negative, wrapping from 2^31 - 1 back to 0 as Kafka's do
 * (DefaultRecordBatch.incrementSequence). Comparisons are serial-number arithmetic (RFC 1982):
 * of two sequences, the one less than 2^30 steps ahead is the later one.
 */
export const MAX_SEQUENCE = 0x7fff_ffff;
const SEQUENCE_SPACE = 0x8000_0000;
const HALF_SPACE = 0x4000_0000;

/** `seq` advanced by `n` (n >= 0), wrapping past MAX_SEQUENCE. -1 + 1 is 0. */
export function addSequence(seq: number, n: number): number {
  return (seq + n) % SEQUENCE_SPACE;
}

/** The sequence of a batch's last record: baseSequence + lastOffsetDelta, wrapped. */
export function lastSequenceOf(baseSequence: number, lastOffsetDelta: number): number {
  return addSequence(baseSequence, lastOffsetDelta);
}

/** How many steps `to` lies ahead of `from` on the sequence circle, in [0, 2^31). */
export function sequenceDistance(from: number, to: number): number {
  const d = (to - from) % SEQUENCE_SPACE;
  return d < 0 ? d + SEQUENCE_SPACE : d;
}

/** True when `seq` comes before `reference` (it is behind it by less than half the circle). */
export function isBehind(seq: number, reference: number): boolean {
  const d = sequenceDistance(seq, reference);
  return d > 0 && d <= HALF_SPACE;
}
