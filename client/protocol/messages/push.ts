import { bin, bool, fields, int, invalid, list, oneOf, optInt, optList, optStr, str, type Fields } from '../shape.js';
import { MAX_TOPIC_LENGTH } from './common.js';

/**
 * Push subscriptions (docs/semantics.md): the broker pushes deliveries to competing consumers
 * within their credit; each delivery is settled on its own.
 *
 *   Subscribe   (0x40) request  = { subscription, topic, prefetch, create?: SubscriptionConfig }
 *                      response = { consumerId, subscription, topic, config: SubscriptionConfig }
 *       Creates the subscription on first use (with `create`, or defaults). `prefetch` bounds the
 *       consumer's unsettled deliveries and is its initial credit.
 *   Credit      (0x41) request  = { consumerId, credit }          response = { credit }
 *       Grants `credit` more deliveries; the response is the consumer's credit now.
 *   Deliver     (0x42) broker push, correlation id 0:
 *                      { consumerId, topic, partition, records: bin, offsets: [int], attempts: [int] }
 *       `records` are whole record batches as stored; deliver exactly the records at `offsets`
 *       (other records of those batches are not part of this delivery). attempts[i] is the
 *       1-based delivery count of offsets[i]; above 1 it is a redelivery.
 *   Settle      (0x43) request  = { consumerId, items: [[partition, offset, attempt, op, delayMs?]], receipt? }
 *                      response = { errors: [[index, Error]] }
 *       op: 0 ack, 1 nack (requeue, after delayMs or the backoff), 2 reject (dead-letter), 3 in
 *       progress (extend the ack deadline). Items are tuples because this is the hot path. With
 *       `receipt`, the response is sent only once the settlement is durable; otherwise it is sent
 *       at once and the state is persisted within the flush interval. `errors` lists the items
 *       that failed (STALE_ACK, UNKNOWN_DELIVERY), by index; the others took effect.
 *   Unsubscribe (0x44) request  = { consumerId, release: bool }    response = {}
 *       Stops deliveries. With `release`, unsettled deliveries are redelivered at once; without,
 *       they stay the consumer's until settled or their ack deadline passes.
 *   ListSubscriptions    (0x45) request = {}  response = { subscriptions: [{ subscription, topic, consumers }] }
 *   DescribeSubscription (0x46) request = { subscription }  response = SubscriptionDescription
 *   DeleteSubscription   (0x47) request = { subscription }  response = { subscription }
 */
export type SubscriptionStart = 'earliest' | 'latest';
export type Ordering = 'partition' | 'key';

export interface SubscriptionConfig {
  /** Where a new subscription starts: earliest, latest, an offset (every partition) or a timestamp. */
  readonly start: SubscriptionStart;
  readonly startOffset?: number;
  readonly startTime?: number;
  /** A delivery not settled within this is redelivered. */
  readonly ackWaitMs: number;
  /** Deliveries of one message before it is dead-lettered. */
  readonly maxDeliveries: number;
  /** Redelivery delays after a nack without its own delay: attempt n waits backoffMs[n-1] (the last repeats). */
  readonly backoffMs: readonly number[];
  /** Where dead letters go; default TOPIC.dlq. */
  readonly deadLetterTopic: string;
  readonly ordering: Ordering;
}

export type SubscriptionConfigInput = Partial<SubscriptionConfig>;

export interface SubscribeRequest {
  readonly subscription: string;
  readonly topic: string;
  readonly prefetch: number;
  readonly create?: SubscriptionConfigInput;
}

export interface SubscribeResponse {
  readonly consumerId: string;
  readonly subscription: string;
  readonly topic: string;
  readonly config: SubscriptionConfig;
}

export interface CreditRequest {
  readonly consumerId: string;
  readonly credit: number;
}

export interface DeliverPush {
  readonly consumerId: string;
  readonly topic: string;
  readonly partition: number;
  readonly records: Buffer;
  readonly offsets: readonly number[];
  readonly attempts: readonly number[];
}

export const SettleOp = { Ack: 0, Nack: 1, Reject: 2, InProgress: 3 } as const;
export type SettleOpValue = (typeof SettleOp)[keyof typeof SettleOp];

export type SettleItem = readonly [partition: number, offset: number, attempt: number, op: SettleOpValue, delayMs?: number];

export interface SettleRequest {
  readonly consumerId: string;
  readonly items: readonly SettleItem[];
  readonly receipt?: boolean;
}

export interface SettleResponse {
  readonly errors: readonly (readonly [index: number, error: { readonly code: number; readonly name: string; readonly message: string }])[];
}

export interface UnsubscribeRequest {
  readonly consumerId: string;
  readonly release: boolean;
}

export interface SubscriptionRef {
  readonly subscription: string;
}

export interface SubscriptionSummary {
  readonly subscription: string;
  readonly topic: string;
  readonly consumers: number;
}

export interface SubscriptionDescription {
  readonly subscription: string;
  readonly topic: string;
  readonly config: SubscriptionConfig;
  readonly consumers: readonly { readonly consumerId: string; readonly clientId: string; readonly prefetch: number; readonly inFlight: number; readonly credit: number }[];
  readonly partitions: readonly { readonly partition: number; readonly ackFloor: number; readonly endOffset: number; readonly pending: number; readonly inFlight: number }[];
  /** Messages not yet settled (delivered or not), over all partitions. */
  readonly pending: number;
  readonly inFlight: number;
  /** Redeliveries and dead letters since the broker started. */
  readonly redelivered: number;
  readonly deadLettered: number;
  /** Age of the oldest unsettled message, by its timestamp; null when nothing is pending. */
  readonly oldestPendingAgeMs: number | null;
}

export const MAX_SUBSCRIPTION_LENGTH = 249;
const SUB = MAX_SUBSCRIPTION_LENGTH;
const MAX_PREFETCH = 100_000;

function configInput(v: unknown, path: string): SubscriptionConfigInput {
  const o = fields(v, path);
  const out: { -readonly [K in keyof SubscriptionConfig]?: SubscriptionConfig[K] } = {};
  if (o['start'] !== undefined && o['start'] !== null) out.start = oneOf(o, 'start', path, ['earliest', 'latest'] as const);
  const startOffset = optInt(o, 'startOffset', path, { min: 0 });
  if (startOffset !== undefined) out.startOffset = startOffset;
  const startTime = optInt(o, 'startTime', path, { min: 0 });
  if (startTime !== undefined) out.startTime = startTime;
  const ackWaitMs = optInt(o, 'ackWaitMs', path, { min: 10, max: 86_400_000 });
  if (ackWaitMs !== undefined) out.ackWaitMs = ackWaitMs;
  const maxDeliveries = optInt(o, 'maxDeliveries', path, { min: 1, max: 1_000_000 });
  if (maxDeliveries !== undefined) out.maxDeliveries = maxDeliveries;
  const backoff = optList(o, 'backoffMs', path, (x, p) => int({ x }, 'x', p, { min: 0, max: 86_400_000 }), 100);
  if (backoff !== undefined) out.backoffMs = backoff;
  const dlq = optStr(o, 'deadLetterTopic', path, MAX_TOPIC_LENGTH);
  if (dlq !== undefined) out.deadLetterTopic = dlq;
  if (o['ordering'] !== undefined && o['ordering'] !== null) out.ordering = oneOf(o, 'ordering', path, ['partition', 'key'] as const);
  return out;
}

function config(v: unknown, path: string): SubscriptionConfig {
  const c = configInput(v, path) as SubscriptionConfig;
  for (const key of ['start', 'ackWaitMs', 'maxDeliveries', 'backoffMs', 'deadLetterTopic', 'ordering'] as const) {
    if (c[key] === undefined) invalid(`${path}.${key}`, 'present', undefined);
  }
  return c;
}

export function parseSubscribeRequest(body: unknown): SubscribeRequest {
  const o = fields(body, 'Subscribe');
  return {
    subscription: str(o, 'subscription', 'Subscribe', SUB),
    topic: str(o, 'topic', 'Subscribe', MAX_TOPIC_LENGTH),
    prefetch: int(o, 'prefetch', 'Subscribe', { min: 1, max: MAX_PREFETCH }),
    ...(o['create'] === undefined || o['create'] === null ? {} : { create: configInput(o['create'], 'Subscribe.create') }),
  };
}

export function parseSubscribeResponse(body: unknown): SubscribeResponse {
  const o = fields(body, 'SubscribeResponse');
  return {
    consumerId: str(o, 'consumerId', 'SubscribeResponse', 64),
    subscription: str(o, 'subscription', 'SubscribeResponse', SUB),
    topic: str(o, 'topic', 'SubscribeResponse', MAX_TOPIC_LENGTH),
    config: config(o['config'], 'SubscribeResponse.config'),
  };
}

export function parseCreditRequest(body: unknown): CreditRequest {
  const o = fields(body, 'Credit');
  return { consumerId: str(o, 'consumerId', 'Credit', 64), credit: int(o, 'credit', 'Credit', { min: 0, max: MAX_PREFETCH }) };
}

export function parseCreditResponse(body: unknown): { readonly credit: number } {
  return { credit: int(fields(body, 'CreditResponse'), 'credit', 'CreditResponse', { min: 0 }) };
}

export function parseDeliverPush(body: unknown): DeliverPush {
  const o = fields(body, 'Deliver');
  const nat = (x: unknown, p: string): number => int({ x }, 'x', p, { min: 0 });
  const offsets = list(o, 'offsets', 'Deliver', nat, MAX_PREFETCH);
  const attempts = list(o, 'attempts', 'Deliver', nat, MAX_PREFETCH);
  if (offsets.length !== attempts.length) invalid('Deliver.attempts', `as long as offsets (${offsets.length})`, attempts);
  return {
    consumerId: str(o, 'consumerId', 'Deliver', 64),
    topic: str(o, 'topic', 'Deliver', MAX_TOPIC_LENGTH),
    partition: int(o, 'partition', 'Deliver', { min: 0 }),
    records: bin(o, 'records', 'Deliver'),
    offsets,
    attempts,
  };
}

function settleItem(v: unknown, path: string): SettleItem {
  if (!Array.isArray(v) || v.length < 4 || v.length > 5) invalid(path, '[partition, offset, attempt, op, delayMs?]', v);
  const t = v as unknown[];
  const at = (i: number, min: number, max: number): number => int({ x: t[i] }, 'x', `${path}[${i}]`, { min, max });
  const op = at(3, 0, 3) as SettleOpValue;
  const partition = at(0, 0, 0x7fffffff);
  const offset = at(1, 0, Number.MAX_SAFE_INTEGER);
  const attempt = at(2, 1, 0x7fffffff);
  return t[4] === undefined || t[4] === null ? [partition, offset, attempt, op] : [partition, offset, attempt, op, at(4, 0, 86_400_000)];
}

export function parseSettleRequest(body: unknown): SettleRequest {
  const o = fields(body, 'Settle');
  return { consumerId: str(o, 'consumerId', 'Settle', 64), items: list(o, 'items', 'Settle', settleItem, MAX_PREFETCH), receipt: bool(o, 'receipt', 'Settle', false) };
}

export function parseSettleResponse(body: unknown): SettleResponse {
  return {
    errors: list(fields(body, 'SettleResponse'), 'errors', 'SettleResponse', (v, path) => {
      if (!Array.isArray(v) || v.length !== 2) invalid(path, '[index, error]', v);
      const e = fields(v[1], `${path}[1]`);
      return [int({ x: v[0] }, 'x', `${path}[0]`, { min: 0 }), { code: int(e, 'code', path), name: str(e, 'name', path, 64), message: str(e, 'message', path, 4096) }] as const;
    }, MAX_PREFETCH),
  };
}

export function parseUnsubscribeRequest(body: unknown): UnsubscribeRequest {
  const o = fields(body, 'Unsubscribe');
  return { consumerId: str(o, 'consumerId', 'Unsubscribe', 64), release: bool(o, 'release', 'Unsubscribe', true) };
}

export function parseSubscriptionRef(body: unknown): SubscriptionRef {
  return { subscription: str(fields(body, 'SubscriptionRef'), 'subscription', 'SubscriptionRef', SUB) };
}

export function parseListSubscriptionsResponse(body: unknown): { readonly subscriptions: readonly SubscriptionSummary[] } {
  return {
    subscriptions: list(fields(body, 'ListSubscriptions'), 'subscriptions', 'ListSubscriptions', (v, path) => {
      const s = fields(v, path);
      return { subscription: str(s, 'subscription', path, SUB), topic: str(s, 'topic', path, MAX_TOPIC_LENGTH), consumers: int(s, 'consumers', path, { min: 0 }) };
    }, 100_000),
  };
}

export function parseDescribeSubscriptionResponse(body: unknown): SubscriptionDescription {
  const o = fields(body, 'DescribeSubscription');
  const path = 'DescribeSubscription';
  const n = (f: Fields, k: string, p: string): number => int(f, k, p, { min: 0 });
  return {
    subscription: str(o, 'subscription', path, SUB),
    topic: str(o, 'topic', path, MAX_TOPIC_LENGTH),
    config: config(o['config'], `${path}.config`),
    consumers: list(o, 'consumers', path, (v, p) => {
      const c = fields(v, p);
      return { consumerId: str(c, 'consumerId', p, 64), clientId: str(c, 'clientId', p, 256), prefetch: n(c, 'prefetch', p), inFlight: n(c, 'inFlight', p), credit: n(c, 'credit', p) };
    }),
    partitions: list(o, 'partitions', path, (v, p) => {
      const c = fields(v, p);
      return { partition: n(c, 'partition', p), ackFloor: n(c, 'ackFloor', p), endOffset: n(c, 'endOffset', p), pending: n(c, 'pending', p), inFlight: n(c, 'inFlight', p) };
    }),
    pending: n(o, 'pending', path),
    inFlight: n(o, 'inFlight', path),
    redelivered: n(o, 'redelivered', path),
    deadLettered: n(o, 'deadLettered', path),
    oldestPendingAgeMs: o['oldestPendingAgeMs'] === null || o['oldestPendingAgeMs'] === undefined ? null : n(o, 'oldestPendingAgeMs', path),
  };
}
