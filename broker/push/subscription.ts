import { SluiceError, isSluiceError } from '../../client/protocol/errors.js';
import { toErrorBody, type ErrorBody } from '../../client/protocol/messages/error.js';
import { SettleOp, type SettleItem, type SubscriptionConfig, type SubscriptionDescription } from '../../client/protocol/messages/push.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import type { PartitionLog } from '../log/index.js';
import type { Logger } from '../logger.js';
import type { Session } from '../net/server-connection.js';
import { deadLetterBatch, recordAt, type DeadLetterReason } from './dead-letters.js';
import { PartitionFeed } from './partition-feed.js';
import { PartitionDeliveryState, type Delivery, type PersistedPartitionState } from './partition-state.js';

/** Offered-but-undelivered messages a partition keeps ready; past this the log is not read. */
const READ_AHEAD = 2_000;

interface Consumer {
  readonly id: string;
  readonly session: Session;
  readonly prefetch: number;
  credit: number;
  /** Unsubscribed without release: gets nothing new, but may still settle what it holds. */
  stopped: boolean;
}

interface PartitionSlot {
  readonly partition: number;
  readonly state: PartitionDeliveryState;
  readonly feed: PartitionFeed;
  readonly stopWatching: () => void;
}

interface DeadLetterJob {
  readonly slot: PartitionSlot;
  readonly offset: number;
  readonly attempts: number;
  readonly reason: DeadLetterReason;
}

export interface SubscriptionDeps {
  readonly logs: readonly PartitionLog[];
  readonly deadLetterLog: PartitionLog;
  readonly states: ReadonlyMap<number, PersistedPartitionState>;
  readonly log: Logger;
  /** Asks the service to save this subscription's state soon (or now, awaiting durability). */
  persist(urgent: boolean): Promise<void>;
}

/**
 * Pumps on every high watermark move (new data, transaction markers) and after retention deletes
 * segments: messages it took before they were settled must stop counting as pending at once,
 * not at the next delivery deadline (which may be minutes away).
 */
function watchLog(log: PartitionLog, wake: () => void): () => void {
  const stopVisible = log.onVisible(wake);
  const stopRetention = log.onRetention(wake);
  return () => {
    stopVisible();
    stopRetention();
  };
}

/**
 * One durable push subscription: competing consumers, credit, and one delivery state per
 * partition. A single pump (never two at once) expires deadlines, reads the logs ahead, hands
 * deliveries to consumers within their credit and window, and writes dead letters.
 */
export class Subscription {
  readonly name: string;
  readonly topic: string;
  readonly config: SubscriptionConfig;
  readonly #slots: PartitionSlot[];
  readonly #consumers = new Map<string, Consumer>();
  readonly #deps: SubscriptionDeps;
  readonly #dirty = new Set<number>();
  readonly #deadLetters: DeadLetterJob[] = [];
  #pumping: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #nextConsumer = 0;
  #closed = false;

  constructor(name: string, topic: string, config: SubscriptionConfig, deps: SubscriptionDeps) {
    this.name = name;
    this.topic = topic;
    this.config = config;
    this.#deps = deps;
    const options = { ackWaitMs: config.ackWaitMs, maxDeliveries: config.maxDeliveries, backoffMs: config.backoffMs, ordering: config.ordering };
    this.#slots = deps.logs.map((log, partition) => ({
      partition,
      state: new PartitionDeliveryState(options, deps.states.get(partition)),
      feed: new PartitionFeed(log, config.ordering === 'key'),
      stopWatching: watchLog(log, () => void this.pump()),
    }));
    for (const slot of this.#slots) {
      for (const offset of slot.state.pendingDeadLetters()) this.#deadLetters.push({ slot, offset, attempts: config.maxDeliveries, reason: 'max-deliveries' });
    }
  }

  get consumerCount(): number {
    return this.#consumers.size;
  }

  /** Settles offsets recovery found already dead-lettered (see dead-letters.ts, writtenSince). */
  settleRecovered(partition: number, offsets: readonly number[]): void {
    const slot = this.#slots[partition];
    if (slot === undefined) return;
    for (const offset of offsets) slot.state.markSettled(offset);
    this.#dirty.add(partition);
  }

  addConsumer(id: string, session: Session, prefetch: number): void {
    this.#consumers.set(id, { id, session, prefetch, credit: prefetch, stopped: false });
    void this.pump();
  }

  /** Adds credit; returns the consumer's credit now. */
  grant(consumerId: string, credit: number): number {
    const c = this.#consumer(consumerId);
    c.credit = Math.min(c.credit + credit, 1_000_000);
    void this.pump();
    return c.credit;
  }

  /**
   * Without `release`: no new deliveries, but the consumer keeps (and may settle) what it holds
   * until each ack deadline. With `release`: it is gone, and what it held is redelivered at once.
   */
  removeConsumer(consumerId: string, release: boolean): void {
    const c = this.#consumers.get(consumerId);
    if (c === undefined) return;
    if (!release) {
      c.stopped = true;
      return;
    }
    this.#consumers.delete(consumerId);
    const now = Date.now();
    for (const slot of this.#slots) {
      for (const r of slot.state.release(consumerId, now)) {
        if (r.outcome === 'dead-letter') this.#deadLetters.push({ slot, offset: r.offset, attempts: this.config.maxDeliveries, reason: 'max-deliveries' });
      }
      this.#markDirty(slot.partition);
    }
    void this.pump();
  }

  /**
   * Applies settlements in order; returns the ones refused, by index. With `receipt`, resolves
   * once the dead letters they caused are written and the new state is durable; without, at once
   * (the state is saved within the flush interval, dead letters by the pump).
   */
  async settle(consumerId: string, items: readonly SettleItem[], receipt: boolean): Promise<Array<[number, ErrorBody]>> {
    this.#consumer(consumerId);
    const errors: Array<[number, ErrorBody]> = [];
    const now = Date.now();
    let dirty = -1;
    for (let index = 0; index < items.length; index++) {
      const [partition, offset, attempt, op, delayMs] = items[index] as SettleItem;
      try {
        const slot = this.#slots[partition];
        if (slot === undefined) throw new SluiceError('UNKNOWN_DELIVERY', `${this.topic} has no partition ${partition}`);
        const { state } = slot;
        if (op === SettleOp.Ack) state.ack(offset, attempt);
        else if (op === SettleOp.InProgress) state.inProgress(offset, attempt, now);
        else {
          const outcome = op === SettleOp.Reject ? state.reject(offset, attempt) : state.nack(offset, attempt, now, delayMs);
          if (outcome === 'dead-letter') this.#deadLetters.push({ slot, offset, attempts: attempt, reason: op === SettleOp.Reject ? 'rejected' : 'max-deliveries' });
        }
        if (partition !== dirty) {
          this.#dirty.add(partition);
          dirty = partition;
        }
      } catch (err) {
        errors.push([index, toErrorBody(isSluiceError(err) ? err : new SluiceError('UNKNOWN', undefined, { cause: err }))]);
      }
    }
    const pumped = this.pump();
    if (receipt) {
      await pumped;
      await this.#deps.persist(true);
    } else void this.#deps.persist(false);
    return errors;
  }

  /** Takes the dirty partitions' states for saving. */
  takeDirty(): Array<{ partition: number; state: PersistedPartitionState }> {
    const out = [...this.#dirty].map((partition) => ({ partition, state: (this.#slots[partition] as PartitionSlot).state.snapshot() }));
    this.#dirty.clear();
    for (const slot of this.#slots) slot.feed.trim(slot.state.ackFloor);
    return out;
  }

  /** Every partition's state, for the initial save of a new subscription. */
  snapshotAll(): Array<{ partition: number; state: PersistedPartitionState }> {
    return this.#slots.map((s) => ({ partition: s.partition, state: s.state.snapshot() }));
  }

  /** Ends in-flight leases now (all, or those `match` picks) and redelivers them; returns how many. */
  endLeases(match: (partition: number, offset: number) => boolean = () => true): number {
    const now = Date.now();
    let ended = 0;
    for (const slot of this.#slots) ended += slot.state.endLeases(now, (offset) => match(slot.partition, offset));
    if (ended > 0) void this.pump();
    return ended;
  }

  /**
   * Runs the pump, or asks the running one for another round; resolves when the rounds that
   * cover this call are done (so a caller can wait for the dead letters it caused).
   */
  pump(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#pumping !== undefined) {
      this.#again = true;
      return this.#pumping;
    }
    this.#pumping = this.#runPump().finally(() => (this.#pumping = undefined));
    return this.#pumping;
  }

  async #runPump(): Promise<void> {
    try {
      do {
        this.#again = false;
        await this.#pumpOnce();
      } while (this.#again && !this.#closed);
    } catch (err) {
      this.#deps.log.error({ err, subscription: this.name }, 'push delivery failed; retrying shortly');
      this.#schedule(Date.now() + 200);
    }
  }

  async #pumpOnce(): Promise<void> {
    const now = Date.now();
    for (const slot of this.#slots) {
      const expired = slot.state.expire(now);
      for (const e of expired) if (e.outcome === 'dead-letter') this.#deadLetters.push({ slot, offset: e.offset, attempts: e.attempt, reason: 'max-deliveries' });
      // Retention removed messages this subscription never settled: they cannot come back.
      const lost = slot.state.ackFloor < slot.feed.log.startOffset ? slot.state.settleBelow(slot.feed.log.startOffset) : 0;
      if (expired.length > 0 || lost > 0) this.#markDirty(slot.partition);
    }
    await this.#writeDeadLetters();
    // Deliver what is buffered before reading ahead: the read (I/O) is not on a delivery's path.
    // What it finds goes out in the next round, which it asks for.
    await this.#deliver(now);
    await Promise.all(this.#slots.map(async (slot) => {
      if (slot.state.buffered < READ_AHEAD && slot.feed.hasUnread(slot.state)) {
        if (await slot.feed.fill(slot.state)) this.#again = true;
      }
    }));
    const wake = Math.min(...this.#slots.map((s) => s.state.nextWakeAt() ?? Infinity));
    this.#schedule(wake);
  }

  /** Round-robin over consumers and partitions, within each consumer's credit and window. */
  async #deliver(now: number): Promise<void> {
    const consumers = [...this.#consumers.values()];
    if (consumers.length === 0) return;
    const start = this.#nextConsumer++ % consumers.length;
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < consumers.length; i++) {
      const c = consumers[(start + i) % consumers.length] as Consumer;
      if (c.stopped) continue;
      let room = Math.min(c.credit, c.prefetch - this.#inFlightOf(c.id));
      for (let k = 0; k < this.#slots.length && room > 0; k++) {
        const slot = this.#slots[(start + k) % this.#slots.length] as PartitionSlot;
        const deliveries = slot.state.take(room, c.id, now);
        if (deliveries.length === 0) continue;
        room -= deliveries.length;
        c.credit -= deliveries.length;
        // Delivery counts are state too: maxDeliveries must hold across a restart.
        this.#markDirty(slot.partition);
        sends.push(this.#send(c, slot, deliveries));
      }
    }
    await Promise.all(sends);
  }

  async #send(c: Consumer, slot: PartitionSlot, deliveries: readonly Delivery[]): Promise<void> {
    // In offset order: take() hands out redeliveries first, each kind ascending.
    let ordered = deliveries;
    for (let i = 1; i < deliveries.length; i++) {
      if ((deliveries[i] as Delivery).offset < (deliveries[i - 1] as Delivery).offset) {
        ordered = [...deliveries].sort((a, b) => a.offset - b.offset);
        break;
      }
    }
    const offsets = new Array<number>(ordered.length);
    const attempts = new Array<number>(ordered.length);
    for (let i = 0; i < ordered.length; i++) {
      const d = ordered[i] as Delivery;
      offsets[i] = d.offset;
      attempts[i] = d.attempt;
    }
    let records: Buffer;
    try {
      records = await slot.feed.batchesFor(offsets);
    } catch (err) {
      // Not sent (e.g. retention removed the data meanwhile): the credit was not used. The
      // deliveries expire, or are settled by settleBelow, in a later round.
      c.credit += ordered.length;
      throw err;
    }
    const body = { consumerId: c.id, topic: this.topic, partition: slot.partition, records, offsets, attempts };
    if (!this.#consumers.has(c.id) || !c.session.push(Opcode.Deliver, body)) {
      // The consumer left (or its connection cannot take more): hand the messages back at once.
      this.removeConsumer(c.id, true);
    }
  }

  async #writeDeadLetters(): Promise<void> {
    while (this.#deadLetters.length > 0) {
      const job = this.#deadLetters.shift() as DeadLetterJob;
      // Queued twice (a retried nack), settled meanwhile (a late ack) or found by recovery: skip.
      if (!job.slot.state.isPendingDeadLetter(job.offset)) continue;
      const record = recordAt(await job.slot.feed.batchesFor([job.offset]), job.offset);
      if (record !== undefined) {
        const origin = { subscription: this.name, topic: this.topic, partition: job.slot.partition, offset: job.offset, attempts: job.attempts, reason: job.reason };
        try {
          await this.#deps.deadLetterLog.append(deadLetterBatch(record, origin));
        } catch (err) {
          // Not written: keep the job, so the next round tries again; never settle unwritten.
          this.#deadLetters.unshift(job);
          throw err;
        }
      }
      job.slot.state.deadLettered(job.offset);
      this.#dirty.add(job.slot.partition);
      // Saved at once: a crash before this save is what dead-letters.ts's recovery scan covers.
      await this.#deps.persist(true);
    }
  }

  /** Marks a partition's state changed and asks for it to be saved within the flush interval. */
  #markDirty(partition: number): void {
    this.#dirty.add(partition);
    void this.#deps.persist(false);
  }

  #schedule(at: number): void {
    if (!Number.isFinite(at) || at >= this.#timerAt || this.#closed) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timerAt = Infinity;
      void this.pump();
    }, Math.max(0, at - Date.now()));
    this.#timer.unref();
  }

  #inFlightOf(consumerId: string): number {
    let n = 0;
    for (const slot of this.#slots) n += slot.state.inFlightOf(consumerId);
    return n;
  }

  #consumer(consumerId: string): Consumer {
    const c = this.#consumers.get(consumerId);
    if (c === undefined) throw new SluiceError('UNKNOWN_CONSUMER', `consumer ${consumerId} is not subscribed to ${this.name}`);
    return c;
  }

  describe(): Omit<SubscriptionDescription, 'oldestPendingAgeMs'> & { oldest: Array<{ partition: number; offset: number }> } {
    let pending = 0;
    let inFlight = 0;
    let redelivered = 0;
    let deadLettered = 0;
    const oldest: Array<{ partition: number; offset: number }> = [];
    const partitions = this.#slots.map((slot) => {
      const s = slot.state.stats();
      const snapshot = slot.state.snapshot();
      const floor = snapshot.ackFloor;
      const end = slot.feed.log.highWatermark;
      const settledAbove = snapshot.acked.reduce((n, [a, b]) => n + (b - a), 0);
      const p = Math.max(0, end - floor - settledAbove);
      pending += p;
      inFlight += s.inFlight;
      redelivered += s.redeliveries;
      deadLettered += s.deadLettered;
      if (p > 0) oldest.push({ partition: slot.partition, offset: s.oldestUnsettled ?? floor });
      return { partition: slot.partition, ackFloor: floor, endOffset: end, pending: p, inFlight: s.inFlight };
    });
    return {
      subscription: this.name,
      topic: this.topic,
      config: this.config,
      consumers: [...this.#consumers.values()].map((c) => ({ consumerId: c.id, clientId: c.session.clientId, prefetch: c.prefetch, inFlight: this.#inFlightOf(c.id), credit: c.credit })),
      partitions,
      pending,
      inFlight,
      redelivered,
      deadLettered,
      oldest,
    };
  }

  // ---- Transactions (broker/txn/coordinator.ts): acks staged by TxnSettle, applied at commit ----

  /**
   * Throws STALE_ACK or UNKNOWN_DELIVERY unless every [partition, offset, attempt] is still the
   * current attempt of its offset; settles nothing. An in-flight delivery's deadline moves on, as
   * for InProgress: the transaction holding its ack is working on it.
   */
  checkTxnAcks(items: readonly (readonly [number, number, number])[], now: number): void {
    for (const [partition, offset, attempt] of items) this.#txnSlot(partition, offset, attempt).state.inProgress(offset, attempt, now);
  }

  /** Acks them all; call right after checkTxnAcks passed for them, in the same tick, so none fails. */
  applyTxnAcks(items: readonly (readonly [number, number, number])[]): void {
    for (const [partition, offset, attempt] of items) {
      this.#txnSlot(partition, offset, attempt).state.ack(offset, attempt);
      this.#dirty.add(partition);
    }
    void this.pump();
  }

  #txnSlot(partition: number, offset: number, attempt: number): PartitionSlot {
    const slot = this.#slots[partition];
    if (slot === undefined) throw new SluiceError('UNKNOWN_DELIVERY', `${this.topic} has no partition ${partition}`, { details: { partition, offset, attempt } });
    return slot;
  }

  // ---- end of transactions ----

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const slot of this.#slots) slot.stopWatching();
  }
}
