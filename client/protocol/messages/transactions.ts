import { bool, fields, int, invalid, list, optStr, str } from '../shape.js';
import { topicPartition } from './common.js';
import type { OffsetCommit } from './groups.js';
import { MAX_TRANSACTIONAL_ID_LENGTH } from './producer.js';

/**
 * Transactions (docs/protocol.md, "Transactions"; docs/semantics.md, "Exactly-once"). A
 * transactional producer (InitProducer with a transactionalId) writes batches with the
 * TRANSACTIONAL attribute; its first such batch to a partition, or its first staged offsets or
 * acks, begins a transaction, and the first batch to each partition adds that partition to it.
 * Consumed input joins the same transaction:
 *
 *   TxnCommitOffsets (0x51) request  = { transactionalId, producerId, producerEpoch,
 *                                        groupId, memberId?, memberEpoch, offsets: [{ topic, partition, offset, metadata? }] }
 *                           response = {}
 *       Stages a consumer group's offsets; they are committed only if the transaction commits.
 *       The group checks the member (epoch, assignment) now, as for CommitOffsets.
 *   TxnSettle        (0x52) request  = { transactionalId, producerId, producerEpoch, consumerId,
 *                                        items: [[partition, offset, attempt]] }
 *                           response = {}
 *       Stages acks of push deliveries (consumerId: a consumer on this connection); applied only
 *       if the transaction commits. If one of them was superseded by then (its ack deadline
 *       passed and it was redelivered), the commit aborts the transaction instead
 *       (TRANSACTION_ABORTED): the input is redelivered and the output never becomes visible.
 *   EndTxn           (0x53) request  = { transactionalId, producerId, producerEpoch, commit: bool }
 *                           response = { producerId, producerEpoch }
 *       Commits or aborts: control markers go into every partition of the transaction, staged
 *       offsets and acks are applied or dropped. The epoch is bumped for every transaction, so a
 *       delayed request of an ended transaction can never touch the next one (PRODUCER_FENCED):
 *       the producer continues with the returned id and epoch (the id changes only when the
 *       epoch runs out, after 32767) and sequence numbers from 0. A TRANSACTION_ABORTED error
 *       carries the same two in its details.
 *
 * Fetch with `isolation: 'read_committed'` returns data only below each partition's last stable
 * offset (the first offset of the oldest open transaction) and never batches of aborted
 * transactions; push subscriptions always deliver committed data only.
 */
export interface TxnIdentity {
  readonly transactionalId: string;
  readonly producerId: number;
  readonly producerEpoch: number;
}

export interface TxnCommitOffsetsRequest extends TxnIdentity {
  readonly groupId: string;
  readonly memberId?: string;
  readonly memberEpoch: number;
  readonly offsets: readonly OffsetCommit[];
}

export type TxnSettleItem = readonly [partition: number, offset: number, attempt: number];

export interface TxnSettleRequest extends TxnIdentity {
  readonly consumerId: string;
  readonly items: readonly TxnSettleItem[];
}

export interface EndTxnRequest extends TxnIdentity {
  readonly commit: boolean;
}

function identity(o: ReturnType<typeof fields>, path: string): TxnIdentity {
  return {
    transactionalId: str(o, 'transactionalId', path, MAX_TRANSACTIONAL_ID_LENGTH),
    producerId: int(o, 'producerId', path, { min: 0 }),
    producerEpoch: int(o, 'producerEpoch', path, { min: 0, max: 32_767 }),
  };
}

export function parseTxnCommitOffsetsRequest(body: unknown): TxnCommitOffsetsRequest {
  const path = 'TxnCommitOffsets';
  const o = fields(body, path);
  const memberId = optStr(o, 'memberId', path, 255);
  return {
    ...identity(o, path),
    groupId: str(o, 'groupId', path, 255),
    memberEpoch: int(o, 'memberEpoch', path, { min: -1 }),
    ...(memberId === undefined ? {} : { memberId }),
    offsets: list(o, 'offsets', path, (v, p) => {
      const e = fields(v, p);
      const metadata = e['metadata'] === null || e['metadata'] === undefined ? null : str(e, 'metadata', p, 4096);
      return { ...topicPartition(e, p), offset: int(e, 'offset', p, { min: 0 }), metadata };
    }, 10_000),
  };
}

export function parseTxnSettleRequest(body: unknown): TxnSettleRequest {
  const path = 'TxnSettle';
  const o = fields(body, path);
  return {
    ...identity(o, path),
    consumerId: str(o, 'consumerId', path, 64),
    items: list(o, 'items', path, (v, p) => {
      if (!Array.isArray(v) || v.length !== 3) invalid(p, '[partition, offset, attempt]', v);
      const t = v as unknown[];
      const at = (i: number, min: number): number => int({ x: t[i] }, 'x', `${p}[${i}]`, { min });
      return [at(0, 0), at(1, 0), at(2, 1)] as const;
    }, 100_000),
  };
}

export function parseEndTxnRequest(body: unknown): EndTxnRequest {
  const o = fields(body, 'EndTxn');
  return { ...identity(o, 'EndTxn'), commit: bool(o, 'commit', 'EndTxn', false) };
}

export interface EndTxnResponse {
  readonly producerId: number;
  readonly producerEpoch: number;
}

export function parseEndTxnResponse(body: unknown): EndTxnResponse {
  const o = fields(body, 'EndTxnResponse');
  return { producerId: int(o, 'producerId', 'EndTxnResponse', { min: 0 }), producerEpoch: int(o, 'producerEpoch', 'EndTxnResponse', { min: 0, max: 32_767 }) };
}
