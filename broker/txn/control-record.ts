/**
 * Control records: the transaction markers the broker writes into a partition when a
 * transaction commits or aborts (Kafka's layout, so a Kafka-wire listener could serve them as is).
 *
 * A control batch has ATTR_CONTROL and ATTR_TRANSACTIONAL set, the producer id and epoch of the
 * transaction, baseSequence -1, and exactly one record:
 *
 *   key   = version int16 (0) | type int16 (0 = ABORT, 1 = COMMIT)
 *   value = version int16 (0) | coordinatorEpoch int32
 *
 * Readers only ever need the key's type; the value is kept for Kafka compatibility.
 */
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, encodeRecordBatch } from '../../client/protocol/record-batch.js';

export const ControlType = { ABORT: 0, COMMIT: 1 } as const;
export type ControlType = (typeof ControlType)[keyof typeof ControlType];

export const CONTROL_KEY_SIZE = 4;
const CONTROL_VERSION = 0;

export function encodeControlKey(type: ControlType): Buffer {
  const key = Buffer.alloc(CONTROL_KEY_SIZE);
  key.writeInt16BE(CONTROL_VERSION, 0);
  key.writeInt16BE(type, 2);
  return key;
}

/**
 * The marker type in a control record's key, or undefined for a key this broker does not know
 * (another version, another control type, a missing key): such a batch is not a marker.
 */
export function parseControlKey(key: Buffer | null): ControlType | undefined {
  if (key === null || key.length < CONTROL_KEY_SIZE) return undefined;
  if (key.readInt16BE(0) !== CONTROL_VERSION) return undefined;
  const type = key.readInt16BE(2);
  return type === ControlType.ABORT || type === ControlType.COMMIT ? type : undefined;
}

export interface ControlBatchOptions {
  readonly producerId: number;
  readonly producerEpoch: number;
  readonly type: ControlType;
  readonly coordinatorEpoch?: number;
  readonly timestamp?: number;
}

/** One marker as a complete record batch, ready for PartitionLog.append. */
export function encodeControlBatch(options: ControlBatchOptions): Buffer {
  const value = Buffer.alloc(6);
  value.writeInt16BE(CONTROL_VERSION, 0);
  value.writeInt32BE(options.coordinatorEpoch ?? 0, 2);
  return encodeRecordBatch([{ key: encodeControlKey(options.type), value, ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }) }], {
    attributes: ATTR_CONTROL | ATTR_TRANSACTIONAL,
    producerId: options.producerId,
    producerEpoch: options.producerEpoch,
    baseSequence: -1,
  });
}
