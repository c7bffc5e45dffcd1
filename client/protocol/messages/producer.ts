import { fields, int, optInt, optStr } from '../shape.js';

/**
 * InitProducer (0x50): gets a producer id and epoch for idempotent (and transactional) produce.
 *
 *   request  = { transactionalId?: str(<=249), transactionTimeoutMs?: int }
 *   response = { producerId: int, producerEpoch: int }
 *
 * Without transactionalId: a fresh producer id, epoch 0. With one: the id that transactional id
 * always had (a new one the first time), and an epoch one higher than any before, which fences
 * every older instance of that producer (PRODUCER_FENCED) and aborts its open transaction.
 *
 * The producer then stamps every batch with producerId, producerEpoch and a per-partition
 * baseSequence (0, then the previous batch's last sequence + 1; a new epoch starts at 0 again).
 * A batch the broker already has is answered with its original offsets and `duplicate: true`
 * and is not written again; a gap is OUT_OF_ORDER_SEQUENCE; an older epoch is PRODUCER_FENCED.
 */
export interface InitProducerRequest {
  readonly transactionalId?: string;
  readonly transactionTimeoutMs?: number;
}

export interface InitProducerResponse {
  readonly producerId: number;
  readonly producerEpoch: number;
}

export const MAX_TRANSACTIONAL_ID_LENGTH = 249;

export function parseInitProducerRequest(body: unknown): InitProducerRequest {
  const o = fields(body ?? {}, 'InitProducer');
  const transactionalId = optStr(o, 'transactionalId', 'InitProducer', MAX_TRANSACTIONAL_ID_LENGTH);
  const transactionTimeoutMs = optInt(o, 'transactionTimeoutMs', 'InitProducer', { min: 100, max: 3_600_000 });
  return {
    ...(transactionalId === undefined ? {} : { transactionalId }),
    ...(transactionTimeoutMs === undefined ? {} : { transactionTimeoutMs }),
  };
}

export function parseInitProducerResponse(body: unknown): InitProducerResponse {
  const o = fields(body, 'InitProducerResponse');
  return { producerId: int(o, 'producerId', 'InitProducerResponse', { min: 0 }), producerEpoch: int(o, 'producerEpoch', 'InitProducerResponse', { min: 0, max: 32_767 }) };
}
