import type { Connection, ConnectionState } from './connection.js';
import { sleep } from './internal/backoff.js';
import { eachDelivery, type Delivery, type Session, type Settler } from './internal/delivered-message.js';
import { deferred, type Deferred } from './internal/deferred.js';
import { parsePushConsumerOptions, type PushConsumerConfig } from './internal/push-options.js';
import { PushSettler } from './internal/push-settler.js';
import { SluiceError, hasCode, isSluiceError } from './protocol/errors.js';
import { SettleOp, parseDeliverPush, type DeliverPush, type SubscriptionConfig, type SubscriptionConfigInput } from './protocol/messages/push.js';
import { Opcode } from './protocol/opcodes.js';
import type { Message } from './value-codec.js';

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
  readonly #config: PushConsumerConfig;
  #session: Session | undefined;
  #lastConfig: SubscriptionConfig | undefined;
  /** Delivered, not yet yielded, from #bufferHead on; entries released meanwhile are skipped. */
  #buffer: Delivery[] = [];
  #bufferHead = 0;
  /** start() succeeded: receive() need not wait for it. */
  #running = false;
  readonly #settler: Settler = (d, op, delayMs, receipt) => this.#settlements.settle(d, op, delayMs, receipt);
  /** Settle batching: one Settle request per turn of the event loop, then a credit refill. */
  readonly #settlements: PushSettler;
  /** Yielded deliveries of the live session not settled yet: what close() waits for. */
  #held = 0;
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
    this.#config = parsePushConsumerOptions(options);
    this.#settlements = new PushSettler(connection, this.#config, {
      release: (d) => this.#release(d),
      hold: () => {
        this.#held++;
      },
      refill: () => this.#refill(),
      armExpiry: (session) => this.#armExpiry(session),
      checkIdle: () => this.#checkIdle(),
      dropped: (session) => this.#dropped(session),
    });
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
    const { signal } = options;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    if (!this.#running) {
      // The first Subscribe may be waiting for the broker to come back: the deadline holds meanwhile.
      const started = this.start();
      if (deadline === Infinity) await started;
      else {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([started.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, deadline - Date.now()))))]).finally(() => clearTimeout(timer));
        if (timedOut) return undefined;
      }
    }
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
    const first = this.#firstSubscribe();
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
    if (this.#held > 0 || this.#settlements.busy) {
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

  /**
   * The first Subscribe. A retriable failure (the connection dropped, the broker is restarting)
   * is retried while the connection reconnects, as after any later loss; the rest fail start().
   */
  async #firstSubscribe(): Promise<void> {
    for (;;) {
      try {
        return await this.#subscribe();
      } catch (err) {
        // Only a loss of the connection (or a broker on its way down): a timed-out Subscribe may
        // have registered a consumer, and a retry would leave it holding messages.
        const state = this.#conn.state;
        const lost = hasCode(err, 'CONNECTION_CLOSED') || hasCode(err, 'SHUTTING_DOWN');
        if (this.#closed || !lost || state === 'closing' || state === 'closed') throw err;
        await sleep(100);
        if (this.#closed) throw err;
      }
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
    session.credit = Math.max(0, session.credit - push.offsets.length);
    eachDelivery(session, push, this.#settler, (d) => {
      if (d.message === undefined) {
        // Nacked rather than held: retried, and dead-lettered after maxDeliveries, never stuck.
        this.#settlements.settle(d, SettleOp.Nack, undefined, false).catch(() => undefined);
        return;
      }
      this.#buffer.push(d);
    });
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
    this.#settlements.refill(session);
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
    if (this.#idle !== undefined && this.#held === 0 && !this.#settlements.busy) this.#idle();
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
