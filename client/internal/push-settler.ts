import type { Connection } from '../connection.js';
import { SluiceError, hasCode } from '../protocol/errors.js';
import { fromErrorBody } from '../protocol/messages/error.js';
import { SettleOp, type SettleItem, type SettleOpValue } from '../protocol/messages/push.js';
import type { Delivery, Session } from './delivered-message.js';
import type { PushConsumerConfig } from './push-options.js';

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

/** What the settler needs of its push consumer. */
export interface SettlerHost {
  /** Takes a delivery out of the window. */
  release(d: Delivery): void;
  /** A delivery the broker extended after it expired here is yielded and held again. */
  hold(): void;
  /** Grants credit if enough of the live session's window is free (then calls refill(session)). */
  refill(): void;
  armExpiry(session: Session): void;
  /** Wakes close() once nothing is held or settling. */
  checkIdle(): void;
  /** The broker answered UNKNOWN_CONSUMER on a live connection. */
  dropped(session: Session): void;
}

/**
 * A push consumer's settlements: those made in the same turn of the event loop go out in one
 * Settle request per consumer (with a receipt if any of them asked for one), then any credit
 * they freed is granted; each promise settles with its own item's result.
 */
export class PushSettler {
  readonly #conn: Connection;
  readonly #config: PushConsumerConfig;
  readonly #host: SettlerHost;
  #queue: QueuedSettle[] = [];
  #flushScheduled = false;
  #settlesInFlight = 0;

  constructor(conn: Connection, config: PushConsumerConfig, host: SettlerHost) {
    this.#conn = conn;
    this.#config = config;
    this.#host = host;
  }

  /** Settlements queued or on the wire. */
  get busy(): boolean {
    return this.#settlesInFlight > 0 || this.#queue.length > 0;
  }

  /** Queues a settlement for this turn's Settle request; an ack, nack or reject leaves the window at once. */
  settle(d: Delivery, op: SettleOpValue, delayMs?: number, receipt = false): Promise<void> {
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
      this.#host.release(d); // counted settled now: the Settle goes out before any Credit it frees
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
    this.#host.refill();
    this.#host.checkIdle();
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
          if (hasCode(err, 'UNKNOWN_CONSUMER') && this.#conn.state === 'connected') this.#host.dropped(session);
        },
      )
      .finally(() => {
        this.#settlesInFlight--;
        this.#host.checkIdle();
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
          this.#host.hold();
        }
        session.unsettled.add(d);
        this.#host.armExpiry(session);
      } else if (err !== undefined && !d.final) {
        this.#host.release(d); // the broker no longer has this attempt out
        this.#host.refill();
        this.#host.armExpiry(session);
      }
    }
    if (err === undefined) e.resolve();
    else e.reject(err);
  }

  /** Grants `session` credit once enough of its window is free: held + credit never exceeds prefetch. */
  refill(session: Session): void {
    const free = this.#config.prefetch - session.unsettled.size - session.credit;
    if (free < this.#config.refillAt) return;
    session.credit += free;
    this.#conn.request('Credit', { consumerId: session.id, credit: free }).catch((err: unknown) => {
      if (hasCode(err, 'UNKNOWN_CONSUMER') && this.#conn.state === 'connected') this.#host.dropped(session);
      else if (session.gone === undefined) session.credit -= free; // not granted; the next settlement tries again
    });
  }
}
