import type { Connection, ConnectionState } from './connection.js';
import { sleep } from './internal/backoff.js';
import { deferred, type Deferred } from './internal/deferred.js';
import { SluiceError, hasCode, isSluiceError } from './protocol/errors.js';
import { fromErrorBody } from './protocol/messages/error.js';
import { SettleOp, parseDeliverPush, type DeliverPush, type SettleItem, type SettleOpValue, type SubscriptionConfig, type SubscriptionConfigInput } from './protocol/messages/push.js';
import { Opcode } from './protocol/opcodes.js';
import { BATCH_HEADER_SIZE, BATCH_OVERHEAD, decodeBatches, verifyBatch, type LogRecord, type RecordHeader } from './protocol/record-batch.js';
import { readVarint, readVarlong, type Cursor } from './protocol/varint.js';
import { CONTENT_TYPE, decodeValue, type Message } from './value-codec.js';

export interface PushConsumerOptions {
  topic: string;
  /** The durable subscription to attach to; created on first use. */
  subscription: string;
  /** Most deliveries held at once, buffered or yielded but unsettled; also the first credit. 1 to 100 000. Default 100. */
  prefetch?: number;
  /** Credit is granted again once this fraction of the window is free. (0, 1]. Default 0.5. */
  refillThreshold?: number;
  /** The subscription's settings if this subscribe creates it; ignored when it exists already. */
  create?: SubscriptionConfigInput;
  /** Closes the consumer (gracefully) when aborted. */
  signal?: AbortSignal;
}

/** A delivered message and how to settle it. Each settle method may be called once (inProgress any number of times before). */
export interface PushMessage<V = unknown> extends Message<V> {
  /** 1-based delivery count of this message; above 1 it is a redelivery. */
  readonly attempt: number;
  readonly redelivered: boolean;
  /** The broker-side consumer it was delivered to (what a transaction's ack names). */
  readonly consumerId: string;
  /** Done with it. With `receipt`, resolves only once the broker has made the ack durable. */
  ack(options?: { receipt?: boolean }): Promise<void>;
  /** Redeliver it, after `delayMs` or the subscription's backoff; past maxDeliveries it is dead-lettered. */
  nack(options?: { delayMs?: number }): Promise<void>;
  /** Dead-letter it now (reason `rejected`). */
  reject(): Promise<void>;
  /** Still working on it: restarts its ack deadline. */
  inProgress(): Promise<void>;
}

interface Config {
  readonly topic: string;
  readonly subscription: string;
  readonly prefetch: number;
  /** Free window slots that trigger a Credit request: ceil(refillThreshold * prefetch), at least 1. */
  readonly refillAt: number;
  readonly create: SubscriptionConfigInput | undefined;
}

/** One consumer on the broker: lives until its connection is lost or it unsubscribes. */
interface Session {
  readonly id: string;
  readonly config: SubscriptionConfig;
  /** Credit the broker still holds for this consumer: granted minus received. */
  credit: number;
  /** Received and neither settled nor past the ack deadline, in deadline order. */
  readonly unsettled: Set<Delivery>;
  /** Why settling its deliveries can no longer work; set once it is lost or closed. */
  gone: SluiceError | undefined;
}

interface Delivery {
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

interface QueuedSettle {
  readonly delivery: Delivery;
  readonly item: SettleItem;
  readonly receipt: boolean;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
}

let capturedResolve: () => void = () => undefined;
let capturedReject: (reason: unknown) => void = () => undefined;
/** A Promise executor that leaves its resolvers where the caller picks them up, synchronously. */
function captureResolvers(resolve: () => void, reject: (reason: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

type Settler = (d: Delivery, op: SettleOpValue, delayMs: number | undefined, receipt: boolean) => Promise<void>;

/**
 * A delivered message. A class, not an object literal with closures: the hot path allocates one
 * object per message, and ack/nack/reject/inProgress live on the prototype. The delivery and the
 * consumer's settle function sit in private fields, so spreading or serialising a message shows
 * the message fields only, as before.
 */
class DeliveredMessage implements PushMessage {
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
 * A consumer of a push subscription (docs/semantics.md): the broker pushes deliveries within
 * this consumer's credit and window, and each is settled on its own.
 *
 * - Flow control: the broker never has more than `prefetch` deliveries unsettled at this
 *   consumer. Credit is topped up so that held + credit = prefetch, once at least
 *   `refillThreshold * prefetch` slots are free, so Credit requests stay rare.
 * - Settlements made in the same turn of the event loop go out in one Settle request (with a
 *   receipt if any of them asked for one); each promise settles with its own item's result.
 * - At-least-once: after a lost connection the consumer subscribes again on the new one; the
 *   old consumer's buffered messages are dropped and its yielded ones can no longer be settled
 *   (UNKNOWN_CONSUMER): the broker redelivers all of them.
 * - A message whose ack deadline has passed (by the client's clock, which is never early) is
 *   not yielded and no longer counts against the window: the broker has taken it back.
 */
export class PushConsumer implements AsyncIterable<PushMessage> {
  readonly #conn: Connection;
  readonly #config: Config;
  #session: Session | undefined;
  #lastConfig: SubscriptionConfig | undefined;
  /** Delivered, not yet yielded, from #bufferHead on; entries released meanwhile are skipped. */
  #buffer: Delivery[] = [];
  #bufferHead = 0;
  /** start() succeeded: receive() need not wait for it. */
  #running = false;
  readonly #settler: Settler = (d, op, delayMs, receipt) => this.#settle(d, op, delayMs, receipt);
  /** Yielded deliveries of the live session not settled yet: what close() waits for. */
  #held = 0;
  #queue: QueuedSettle[] = [];
  #flushScheduled = false;
  #settlesInFlight = 0;
  /** Deliver frames that arrived while a Subscribe was on the wire (its consumer id unknown yet). */
  #early: DeliverPush[] | undefined;
  #started: Promise<void> | undefined;
  #subscribing: Promise<void> | undefined;
  #failure: SluiceError | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #wake: Deferred<void> | undefined;
  #idle: (() => void) | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #expiryAt = Infinity;
  readonly #detach: Array<() => void> = [];

  constructor(connection: Connection, options: PushConsumerOptions) {
    this.#conn = connection;
    this.#config = parseOptions(options);
    if (options.signal?.aborted === true) void this.close();
    else options.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  /** The broker's id of the current consumer; undefined before start and between connections. */
  get consumerId(): string | undefined {
    return this.#session?.id;
  }

  /** The subscription's settings as the broker reported them at the last subscribe. */
  get subscriptionConfig(): SubscriptionConfig | undefined {
    return this.#lastConfig;
  }

  /** True once close() was called (or the connection's owner began closing it): iteration is over. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Subscribes (creating the subscription if needed). Idempotent. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  /**
   * The next message; undefined once the consumer is closed or after `timeoutMs` without one.
   * A wait that times out or aborts takes no message, so none is lost to it.
   */
  receive(options?: { signal?: AbortSignal; timeoutMs?: number }): Promise<PushMessage | undefined> {
    // Fast path, once subscribed: a buffered message is handed over without awaiting start().
    if (this.#running && this.#failure === undefined && !this.#closed && options?.signal?.aborted !== true) {
      const next = this.#takeBuffered();
      if (next !== undefined) return Promise.resolve(next);
    }
    return this.#receive(options ?? {});
  }

  async #receive(options: { signal?: AbortSignal; timeoutMs?: number }): Promise<PushMessage | undefined> {
    await this.start();
    const { signal } = options;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new SluiceError('ABORTED', 'receive aborted', { cause: signal.reason });
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#closed) return undefined;
      const next = this.#takeBuffered();
      if (next !== undefined) return next;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await this.#changed(left, signal);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PushMessage> {
    for (;;) {
      const message = await this.receive();
      if (message === undefined) return;
      yield message;
    }
  }

  /**
   * Graceful: iteration ends at once and no more credit is granted; waits (up to `timeoutMs`)
   * until every yielded message is settled, then unsubscribes with release, so messages
   * buffered but never yielded, and any still unsettled, are redelivered at once. Settling a
   * message after that fails with CLIENT_CLOSED. (An abrupt end needs nothing from the consumer:
   * when its connection is destroyed the broker redelivers what it held.)
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.timeoutMs ?? 5_000);
    return this.#closing;
  }

  async #start(): Promise<void> {
    if (this.#closed) throw new SluiceError('CLIENT_CLOSED', 'push consumer is closed');
    this.#detach.push(
      this.#conn.onPush(Opcode.Deliver, (body) => this.#onDeliver(body)),
      this.#conn.onStateChange((state) => this.#onState(state)),
    );
    const first = this.#subscribe();
    this.#subscribing = first.catch(() => undefined);
    try {
      await first;
    } catch (err) {
      for (const detach of this.#detach.splice(0)) detach();
      throw err;
    } finally {
      this.#subscribing = undefined;
    }
    this.#running = true;
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    this.#notify();
    try {
      await this.#started;
    } catch {
      // Never subscribed: nothing to give back.
    }
    if (this.#held > 0 || this.#settlesInFlight > 0 || this.#queue.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      this.#idle = undefined;
    }
    await this.#subscribing;
    const session = this.#session;
    if (session !== undefined && session.gone === undefined) {
      this.#lose(session, new SluiceError('CLIENT_CLOSED', 'the push consumer was closed; its unsettled messages went back to the broker'));
      await this.#conn.request('Unsubscribe', { consumerId: session.id, release: true }).catch(() => undefined);
    }
    clearTimeout(this.#expiryTimer);
    for (const detach of this.#detach.splice(0)) detach();
  }

  async #subscribe(): Promise<void> {
    const { topic, subscription, prefetch, create } = this.#config;
    this.#early = [];
    try {
      const res = await this.#conn.request('Subscribe', { subscription, topic, prefetch, ...(create === undefined ? {} : { create }) });
      const session: Session = { id: res.consumerId, config: res.config, credit: prefetch, unsettled: new Set(), gone: undefined };
      this.#session = session;
      this.#lastConfig = res.config;
      for (const d of this.#early) if (d.consumerId === session.id) this.#accept(session, d);
    } finally {
      this.#early = undefined;
    }
  }

  /** Subscribes again after the consumer was lost; retries while the connection stays up. */
  #resubscribe(): void {
    if (this.#subscribing !== undefined || this.#started === undefined) return;
    this.#subscribing = (async () => {
      while (!this.#closed && this.#session === undefined && this.#conn.state === 'connected') {
        try {
          await this.#subscribe();
        } catch (err) {
          if (!isSluiceError(err) || !err.retriable) {
            this.#fail(isSluiceError(err) ? err : new SluiceError('UNKNOWN', String(err), { cause: err }));
            return;
          }
          await sleep(100);
        }
      }
    })().finally(() => (this.#subscribing = undefined));
  }

  #onState(state: ConnectionState): void {
    if (state === 'connected') {
      if (this.#session === undefined && !this.#closed) this.#resubscribe();
      return;
    }
    const session = this.#session;
    if (session !== undefined) this.#lose(session, new SluiceError('UNKNOWN_CONSUMER', `consumer ${session.id} was lost with its connection; the broker redelivers its unsettled messages`));
    if (state === 'closing') this.#closed = true; // the owner is closing the connection: iteration ends
    if (state === 'closed' && !this.#closed) this.#fail(new SluiceError('CONNECTION_CLOSED', 'the connection of this push consumer closed'));
    this.#notify();
  }

  /** The consumer is gone on the broker's side: its deliveries will be redelivered there. */
  #lose(session: Session, reason: SluiceError): void {
    session.gone = reason;
    for (const d of [...session.unsettled]) this.#release(d);
    this.#buffer = this.#buffer.slice(this.#bufferHead).filter((d) => d.session !== session);
    this.#bufferHead = 0;
    if (this.#session === session) this.#session = undefined;
    this.#notify();
    this.#checkIdle();
  }

  /** The broker answered UNKNOWN_CONSUMER on a live connection (it dropped us): start over. */
  #dropped(session: Session): void {
    if (session.gone !== undefined) return;
    this.#lose(session, new SluiceError('UNKNOWN_CONSUMER', `the broker no longer knows consumer ${session.id}; it redelivers its unsettled messages`));
    this.#resubscribe();
  }

  #onDeliver(body: unknown): void {
    let push: DeliverPush;
    try {
      push = parseDeliverPush(body);
    } catch {
      return; // not ours to judge; the broker's deadline redelivers whatever it was
    }
    const session = this.#session;
    if (session !== undefined && push.consumerId === session.id) this.#accept(session, push);
    else this.#early?.push(push);
  }

  #accept(session: Session, push: DeliverPush): void {
    if (session.gone !== undefined) return;
    const { offsets, attempts, partition, topic } = push;
    session.credit = Math.max(0, session.credit - offsets.length);
    let records: LogRecord[] = [];
    try {
      records = decodeDelivered(push.records, offsets);
    } catch {
      // Undecodable batches: every message of this delivery is nacked below.
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
        if (record !== undefined) d.message = new DeliveredMessage(topic, partition, record, d, this.#settler);
      } catch {
        // A value its content-type cannot decode: nacked below like a missing record.
      }
      if (d.message === undefined) {
        // Nacked rather than held: retried, and dead-lettered after maxDeliveries, never stuck.
        this.#settle(d, SettleOp.Nack, undefined, false).catch(() => undefined);
        continue;
      }
      this.#buffer.push(d);
    }
    this.#armExpiry(session);
    this.#notify();
  }

  #takeBuffered(): PushMessage | undefined {
    const buffer = this.#buffer;
    let head = this.#bufferHead;
    let out: PushMessage | undefined;
    while (head < buffer.length) {
      const d = buffer[head++] as Delivery;
      if (d.state !== 'buffered' || d.session !== this.#session) continue;
      d.state = 'yielded';
      this.#held++;
      out = d.message;
      break;
    }
    if (head === buffer.length) {
      buffer.length = 0;
      head = 0;
    } else if (head > 1024 && 2 * head > buffer.length) {
      this.#buffer = buffer.slice(head);
      head = 0;
    }
    this.#bufferHead = head;
    return out;
  }

  #settle(d: Delivery, op: SettleOpValue, delayMs?: number, receipt = false): Promise<void> {
    if (d.final) return Promise.reject(new SluiceError('UNKNOWN_DELIVERY', `${this.#config.topic}/${d.partition}@${d.offset} attempt ${d.attempt} is already settled`));
    if (d.session.gone !== undefined) return Promise.reject(d.session.gone);
    if (delayMs !== undefined && (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 86_400_000)) {
      return Promise.reject(new SluiceError('INVALID_CONFIG', `nack delayMs must be an integer in [0, 86400000], got ${delayMs}`));
    }
    const item: SettleItem = delayMs === undefined ? [d.partition, d.offset, d.attempt, op] : [d.partition, d.offset, d.attempt, op, delayMs];
    const promise = new Promise<void>(captureResolvers); // no closure per settlement
    this.#queue.push({ delivery: d, item, receipt, resolve: capturedResolve, reject: capturedReject });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
    if (op === SettleOp.InProgress) d.extending++;
    else {
      d.final = true;
      this.#release(d); // counted settled now: the Settle goes out before any Credit it frees
    }
    return promise;
  }

  /** Sends what was settled this turn: one Settle request per consumer, then any credit it freed. */
  #flush(): void {
    this.#flushScheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    // Almost always one consumer (sessions change only across a lost connection).
    const first = queue[0]?.delivery.session;
    if (queue.every((q) => q.delivery.session === first)) {
      if (first !== undefined) this.#sendSettle(first, queue);
    } else {
      const bySession = new Map<Session, QueuedSettle[]>();
      for (const q of queue) {
        const list = bySession.get(q.delivery.session) ?? [];
        list.push(q);
        bySession.set(q.delivery.session, list);
      }
      for (const [session, entries] of bySession) this.#sendSettle(session, entries);
    }
    this.#refill();
    this.#checkIdle();
  }

  #sendSettle(session: Session, entries: QueuedSettle[]): void {
    if (session.gone !== undefined) {
      for (const e of entries) this.#settled(e, session.gone);
      return;
    }
    let receipt = false;
    const items: SettleItem[] = new Array<SettleItem>(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as QueuedSettle;
      items[i] = e.item;
      if (e.receipt) receipt = true;
    }
    this.#settlesInFlight++;
    this.#conn
      .request('Settle', receipt ? { consumerId: session.id, items, receipt } : { consumerId: session.id, items })
      .then(
        (res) => {
          if (res.errors.length === 0) {
            for (const e of entries) this.#settled(e, undefined);
            return;
          }
          const failed = new Map(res.errors.map(([index, body]) => [index, fromErrorBody(body)]));
          entries.forEach((e, i) => this.#settled(e, failed.get(i)));
        },
        (err: unknown) => {
          for (const e of entries) this.#settled(e, err);
          if (hasCode(err, 'UNKNOWN_CONSUMER') && this.#conn.state === 'connected') this.#dropped(session);
        },
      )
      .finally(() => {
        this.#settlesInFlight--;
        this.#checkIdle();
      });
  }

  #settled(e: QueuedSettle, err: unknown): void {
    const d = e.delivery;
    if (e.item[3] === SettleOp.InProgress) {
      d.extending--;
      const { session } = d;
      if (err === undefined && !d.final && session.gone === undefined) {
        // (Re-)added last so the set stays in deadline order: the new deadline is the latest.
        // It may have expired here meanwhile; the broker's answer says it is still ours.
        d.deadline = Date.now() + session.config.ackWaitMs;
        if (!session.unsettled.delete(d)) {
          d.state = 'yielded';
          this.#held++;
        }
        session.unsettled.add(d);
        this.#armExpiry(session);
      } else if (err !== undefined && !d.final) {
        this.#release(d); // the broker no longer has this attempt out
        this.#refill();
        this.#armExpiry(session);
      }
    }
    if (err === undefined) e.resolve();
    else e.reject(err);
  }

  /** Takes a delivery out of the window: settled, past its deadline, or its consumer is gone. */
  #release(d: Delivery): void {
    if (!d.session.unsettled.delete(d)) return;
    if (d.state === 'yielded') this.#held--;
    d.state = 'released';
    this.#checkIdle();
  }

  /** Grants credit once enough of the window is free: held + credit never exceeds prefetch. */
  #refill(): void {
    const session = this.#session;
    if (session === undefined || session.gone !== undefined || this.#closed) return;
    const free = this.#config.prefetch - session.unsettled.size - session.credit;
    if (free < this.#config.refillAt) return;
    session.credit += free;
    this.#conn.request('Credit', { consumerId: session.id, credit: free }).catch((err: unknown) => {
      if (hasCode(err, 'UNKNOWN_CONSUMER') && this.#conn.state === 'connected') this.#dropped(session);
      else if (session.gone === undefined) session.credit -= free; // not granted; the next settlement tries again
    });
  }

  /** Arms the timer for the earliest deadline; one being extended waits for its answer instead. */
  #armExpiry(session: Session): void {
    let at = Infinity;
    for (const d of session.unsettled) {
      if (d.extending > 0) continue;
      at = d.deadline;
      break;
    }
    if (at >= this.#expiryAt) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryAt = at;
    this.#expiryTimer = setTimeout(() => this.#expire(), Math.max(0, at - Date.now()));
    this.#expiryTimer.unref();
  }

  /** Deliveries past their deadline: the broker has taken them back, so they leave the window. */
  #expire(): void {
    this.#expiryAt = Infinity;
    const session = this.#session;
    if (session === undefined) return;
    const now = Date.now();
    for (const d of [...session.unsettled]) {
      if (d.deadline > now) break;
      if (d.extending === 0) this.#release(d);
    }
    this.#refill();
    this.#armExpiry(session);
  }

  #fail(err: SluiceError): void {
    this.#failure ??= err;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.resolve();
  }

  #checkIdle(): void {
    if (this.#idle !== undefined && this.#held === 0 && this.#settlesInFlight === 0 && this.#queue.length === 0) this.#idle();
  }

  /** Resolves on the next delivery or state change, after `ms`, or when `signal` aborts. */
  async #changed(ms: number, signal: AbortSignal | undefined): Promise<void> {
    this.#wake ??= deferred<void>();
    const wake = this.#wake.promise;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      void wake.then(resolve);
      if (Number.isFinite(ms)) timer = setTimeout(resolve, ms);
      onAbort = resolve;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
  }
}

function parseOptions(o: PushConsumerOptions): Config {
  const bad = (name: string, what: string, got: unknown): never => {
    throw new SluiceError('INVALID_CONFIG', `push consumer option ${name} must be ${what}, got ${JSON.stringify(got)}`, { details: { option: name } });
  };
  if (typeof o !== 'object' || o === null) bad('options', 'an object', o);
  if (typeof o.topic !== 'string' || o.topic === '') bad('topic', 'a topic name', o.topic);
  if (typeof o.subscription !== 'string' || o.subscription === '') bad('subscription', 'a subscription name', o.subscription);
  const prefetch = o.prefetch ?? 100;
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 100_000) bad('prefetch', 'an integer in [1, 100000]', prefetch);
  const threshold = o.refillThreshold ?? 0.5;
  if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) bad('refillThreshold', 'a number in (0, 1]', threshold);
  if (o.create !== undefined && (typeof o.create !== 'object' || o.create === null)) bad('create', 'an object', o.create);
  return Object.freeze({
    topic: o.topic,
    subscription: o.subscription,
    prefetch,
    refillAt: Math.max(1, Math.ceil(threshold * prefetch)),
    create: o.create === undefined ? undefined : { ...o.create },
  });
}

/** Smallest record: length, attributes, timestampDelta, offsetDelta, key and value lengths, header count. */
const MIN_RECORD_SIZE = 7;
const NO_HEADERS: RecordHeader[] = [];
const EMPTY = Buffer.alloc(0);

function invalidRecord(message: string): SluiceError {
  return new SluiceError('INVALID_RECORD', message);
}

/**
 * The records a Deliver frame delivers, ascending. The frame carries whole stored batches, which
 * hold many more records than it delivers (a batch of thousands is sent again with every window
 * of its offsets), so only the delivered records are decoded: each batch is verified whole (CRC
 * and header, as decodeBatches does), records before a delivered one are skipped by their length,
 * and the walk stops after the batch's last delivered offset. A delivered record is checked as
 * decodeRecords checks it. Offsets out of order fall back to decoding everything.
 */
function decodeDelivered(buf: Buffer, offsets: readonly number[]): LogRecord[] {
  for (let i = 1; i < offsets.length; i++) if ((offsets[i] as number) <= (offsets[i - 1] as number)) return decodeBatches(buf);
  const out: LogRecord[] = [];
  const cur: Cursor = { pos: 0 };
  let k = 0;
  for (let pos = 0; pos < buf.length; ) {
    const h = verifyBatch(buf, pos);
    const end = pos + h.batchLength + BATCH_OVERHEAD;
    const last = h.baseOffset + h.lastOffsetDelta;
    while (k < offsets.length && (offsets[k] as number) < h.baseOffset) k++;
    // verifyBatch checked lastOffsetDelta = recordCount - 1, and offset deltas must rise strictly
    // from 0 to it: record i has offsetDelta i, so records are skipped by counting.
    cur.pos = pos + BATCH_HEADER_SIZE;
    for (let i = 0; i < h.recordCount && k < offsets.length && (offsets[k] as number) <= last; i++) {
      const at = cur.pos;
      const length = readVarint(buf, cur, end);
      if (length < MIN_RECORD_SIZE - 1 || length > end - cur.pos) throw invalidRecord(`batch at byte ${pos}: record ${i}: length ${length} at byte ${at} does not fit the batch`);
      const recordEnd = cur.pos + length;
      if (h.baseOffset + i !== offsets[k]) {
        cur.pos = recordEnd;
        continue;
      }
      out.push(decodeRecord(buf, cur, recordEnd, h.baseOffset, h.baseTimestamp, i, pos));
      k++;
    }
    pos = end;
  }
  return out;
}

/** One record from `cur.pos` (past its length) to `recordEnd`, the i-th of the batch at `batchPos`. */
function decodeRecord(buf: Buffer, cur: Cursor, recordEnd: number, baseOffset: number, baseTimestamp: number, i: number, batchPos: number): LogRecord {
  const where = (): string => `batch at byte ${batchPos}: record ${i}`;
  cur.pos++; // attributes: unused in v2
  const timestampDelta = readVarlong(buf, cur, recordEnd);
  const offsetDelta = readVarint(buf, cur, recordEnd);
  if (offsetDelta !== i) throw invalidRecord(`${where()}: offsetDelta ${offsetDelta}, expected ${i}`);
  const key = readBytes(buf, cur, recordEnd, where, 'key');
  const value = readBytes(buf, cur, recordEnd, where, 'value');
  const headerCount = readVarint(buf, cur, recordEnd);
  if (headerCount < 0) throw invalidRecord(`${where()}: headerCount ${headerCount}`);
  let headers = NO_HEADERS;
  if (headerCount > 0) {
    headers = [];
    for (let h = 0; h < headerCount; h++) {
      const keyAt = cur.pos;
      const keyLength = readVarint(buf, cur, recordEnd);
      if (keyLength < 0 || keyLength > recordEnd - cur.pos) throw invalidRecord(`${where()}: header key length ${keyLength} at byte ${keyAt} does not fit the record`);
      const headerKey = buf.toString('utf8', cur.pos, cur.pos + keyLength);
      cur.pos += keyLength;
      // A null header value reads as empty, as in decodeRecords.
      headers.push({ key: headerKey, value: readBytes(buf, cur, recordEnd, where, 'header value') ?? EMPTY });
    }
  }
  if (cur.pos !== recordEnd) throw invalidRecord(`${where()}: ${recordEnd - cur.pos} bytes left over at byte ${cur.pos}`);
  const timestamp = baseTimestamp + timestampDelta;
  if (!Number.isSafeInteger(timestamp)) throw invalidRecord(`${where()}: timestamp is outside the safe integer range`);
  return { offset: baseOffset + i, timestamp, key, value, headers };
}

/** A nullable length-prefixed byte string, as a view into `buf`. */
function readBytes(buf: Buffer, cur: Cursor, end: number, where: () => string, what: string): Buffer | null {
  const at = cur.pos;
  const length = readVarint(buf, cur, end);
  if (length === -1) return null;
  if (length < -1 || length > end - cur.pos) throw invalidRecord(`${where()}: ${what} length ${length} at byte ${at} does not fit the record`);
  const bytes = buf.subarray(cur.pos, cur.pos + length);
  cur.pos += length;
  return bytes;
}
