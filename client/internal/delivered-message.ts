import type { PushMessage } from '../push-consumer.js';
import type { SluiceError } from '../protocol/errors.js';
import { SettleOp, type DeliverPush, type SettleOpValue, type SubscriptionConfig } from '../protocol/messages/push.js';
import type { LogRecord } from '../protocol/record-batch.js';
import { CONTENT_TYPE, decodeValue } from '../value-codec.js';
import { decodeDelivered } from './decode-delivered.js';

/** One consumer on the broker: lives until its connection is lost or it unsubscribes. */
export interface Session {
  readonly id: string;
  readonly config: SubscriptionConfig;
  /** Credit the broker still holds for this consumer: granted minus received. */
  credit: number;
  /** Received and neither settled nor past the ack deadline, in deadline order. */
  readonly unsettled: Set<Delivery>;
  /** Why settling its deliveries can no longer work; set once it is lost or closed. */
  gone: SluiceError | undefined;
}

export interface Delivery {
  readonly session: Session;
  readonly partition: number;
  readonly offset: number;
  readonly attempt: number;
  message: PushMessage | undefined;
  /** Client-side ack deadline: never earlier than the broker's, which started before we received it. */
  deadline: number;
  state: 'buffered' | 'yielded' | 'released';
  /** A final settlement (ack, nack, reject) was requested. */
  final: boolean;
  /** In-progress requests on the wire; the deadline is not trusted meanwhile. */
  extending: number;
}

/** How a DeliveredMessage settles itself: the consumer's settle function. */
export type Settler = (d: Delivery, op: SettleOpValue, delayMs: number | undefined, receipt: boolean) => Promise<void>;

/**
 * A delivered message. A class, not an object literal with closures: the hot path allocates one
 * object per message, and ack/nack/reject/inProgress live on the prototype. The delivery and the
 * consumer's settle function sit in private fields, so spreading or serialising a message shows
 * the message fields only, as before.
 */
export class DeliveredMessage implements PushMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly key: Buffer | null;
  readonly value: unknown;
  readonly headers: Readonly<Record<string, Buffer>>;
  readonly attempt: number;
  readonly redelivered: boolean;
  readonly #delivery: Delivery;

  get consumerId(): string {
    return this.#delivery.session.id;
  }
  readonly #settle: Settler;

  constructor(topic: string, partition: number, record: LogRecord, delivery: Delivery, settle: Settler) {
    // As toMessage (value-codec.ts) builds it; no prototype: a header named __proto__ is just a header.
    const headers = Object.create(null) as Record<string, Buffer>;
    const list = record.headers;
    for (let i = 0; i < list.length; i++) {
      const h = list[i] as LogRecord['headers'][number];
      headers[h.key] = h.value;
    }
    const contentType = list.length === 0 ? undefined : headers[CONTENT_TYPE]?.toString('utf8');
    this.topic = topic;
    this.partition = partition;
    this.offset = record.offset;
    this.timestamp = record.timestamp;
    this.key = record.key;
    this.value = decodeValue(record.value, contentType);
    this.headers = headers;
    this.attempt = delivery.attempt;
    this.redelivered = delivery.attempt > 1;
    this.#delivery = delivery;
    this.#settle = settle;
  }

  ack(options?: { receipt?: boolean }): Promise<void> {
    return this.#settle(this.#delivery, SettleOp.Ack, undefined, options?.receipt === true);
  }

  nack(options?: { delayMs?: number }): Promise<void> {
    return this.#settle(this.#delivery, SettleOp.Nack, options?.delayMs, false);
  }

  reject(): Promise<void> {
    return this.#settle(this.#delivery, SettleOp.Reject, undefined, false);
  }

  inProgress(): Promise<void> {
    return this.#settle(this.#delivery, SettleOp.InProgress, undefined, false);
  }
}

/**
 * The deliveries of a Deliver frame for `session`, in offset order: each is added to the
 * session's unsettled set, then handed to `each`, without a message when its record is missing
 * or its value cannot be decoded.
 */
export function eachDelivery(session: Session, push: DeliverPush, settle: Settler, each: (d: Delivery) => void): void {
  const { offsets, attempts, partition, topic } = push;
  let records: LogRecord[] = [];
  try {
    records = decodeDelivered(push.records, offsets);
  } catch {
    // Undecodable batches: every message of this delivery is nacked (by the caller).
  }
  const deadline = Date.now() + session.config.ackWaitMs;
  // Records and offsets both ascend (the broker sends them so): walk them side by side, and
  // fall back to a lookup only if the offsets do not.
  let next = 0;
  let byOffset: Map<number, LogRecord> | undefined;
  for (let i = 0; i < offsets.length; i++) {
    const offset = offsets[i] as number;
    const d: Delivery = { session, partition, offset, attempt: attempts[i] ?? 1, message: undefined, deadline, state: 'buffered', final: false, extending: 0 };
    session.unsettled.add(d);
    let record: LogRecord | undefined;
    while (next < records.length && (records[next] as LogRecord).offset < offset) next++;
    if (next < records.length && (records[next] as LogRecord).offset === offset) record = records[next++];
    else if (i > 0 && offset <= (offsets[i - 1] as number)) {
      byOffset ??= new Map(records.map((r) => [r.offset, r]));
      record = byOffset.get(offset);
    }
    try {
      if (record !== undefined) d.message = new DeliveredMessage(topic, partition, record, d, settle);
    } catch {
      // A value its content-type cannot decode: nacked like a missing record.
    }
    each(d);
  }
}
