import { SluiceError } from '../../client/protocol/errors.js';
import type {
  SubscribeRequest,
  SubscribeResponse,
  SubscriptionConfig,
  SubscriptionConfigInput,
  SubscriptionDescription,
  SubscriptionSummary,
  SettleRequest,
  SettleResponse,
} from '../../client/protocol/messages/push.js';
import type { Logger } from '../logger.js';
import type { SubscriptionStore } from '../meta/subscription-store.js';
import { validateTopicName } from '../meta/topic-name.js';
import type { Session } from '../net/server-connection.js';
import type { TopicRegistry } from '../topics.js';
import { recordAt, writtenSince } from './dead-letters.js';
import type { PersistedPartitionState } from './partition-state.js';
import { Subscription } from './subscription.js';

/** How often settled state is saved when no receipt asks for it sooner. */
const FLUSH_INTERVAL_MS = 100;

export const SUBSCRIPTION_DEFAULTS = { start: 'latest', ackWaitMs: 30_000, maxDeliveries: 20, backoffMs: [], ordering: 'partition' } as const;

interface ConsumerRef {
  readonly subscription: Subscription;
  readonly session: Session;
}

/**
 * The push half of the broker: durable subscriptions, the consumers attached to them from any
 * connection, and saving their delivery state to SQLite, in batches or at once for receipts.
 */
export class PushService {
  readonly #topics: TopicRegistry;
  readonly #store: SubscriptionStore;
  readonly #log: Logger;
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #opening = new Map<string, Promise<Subscription>>();
  readonly #consumers = new Map<string, ConsumerRef>();
  readonly #unsaved = new Set<Subscription>();
  readonly #flushTimer: NodeJS.Timeout;
  #nextConsumer = 1;

  constructor(topics: TopicRegistry, store: SubscriptionStore, log: Logger) {
    this.#topics = topics;
    this.#store = store;
    this.#log = log;
    this.#flushTimer = setInterval(() => this.#flushAll(), FLUSH_INTERVAL_MS);
    this.#flushTimer.unref();
  }

  /** Opens every stored subscription, settling dead letters a crash left unrecorded. */
  async openAll(): Promise<void> {
    for (const record of this.#store.listSubscriptions()) {
      if (this.#topics.get(record.topic) === undefined) continue;
      try {
        await this.#open(record.name, record.topic, JSON.parse(record.config) as SubscriptionConfig, record.dlqCheckpoint);
      } catch (err) {
        // One broken subscription (e.g. its dead-letter topic is unavailable) must not keep the
        // broker from starting; it stays closed until fixed, and says why.
        this.#log.error({ err, subscription: record.name }, 'subscription could not be opened; it is unavailable until fixed');
      }
    }
  }

  async subscribe(req: SubscribeRequest, session: Session, signal: AbortSignal): Promise<SubscribeResponse> {
    const sub = await this.#getOrCreate(req.subscription, req.topic, req.create ?? {});
    const consumerId = `c${session.id}-${this.#nextConsumer++}`;
    this.#consumers.set(consumerId, { subscription: sub, session });
    sub.addConsumer(consumerId, session, req.prefetch);
    // A consumer whose connection goes away gives its deliveries back at once.
    signal.addEventListener('abort', () => this.#drop(consumerId, true), { once: true });
    return { consumerId, subscription: sub.name, topic: sub.topic, config: sub.config };
  }

  grant(session: Session, consumerId: string, credit: number): number {
    return this.#owned(session, consumerId).subscription.grant(consumerId, credit);
  }

  async settle(session: Session, req: SettleRequest): Promise<SettleResponse> {
    const errors = await this.#owned(session, req.consumerId).subscription.settle(req.consumerId, req.items, req.receipt === true);
    return { errors };
  }

  unsubscribe(session: Session, consumerId: string, release: boolean): void {
    const ref = this.#owned(session, consumerId);
    // Without release the consumer stays registered, so it can still settle what it holds.
    if (release) this.#drop(consumerId, true);
    else ref.subscription.removeConsumer(consumerId, false);
  }

  list(): SubscriptionSummary[] {
    return this.#store.listSubscriptions().map((r) => ({ subscription: r.name, topic: r.topic, consumers: this.#subscriptions.get(r.name)?.consumerCount ?? 0 }));
  }

  async describe(name: string, now = Date.now()): Promise<SubscriptionDescription> {
    const sub = this.#require(name);
    const { oldest, ...rest } = sub.describe();
    let oldestTimestamp = Infinity;
    for (const { partition, offset } of oldest) {
      const log = this.#topics.partition(sub.topic, partition);
      if (offset < log.startOffset || offset >= log.highWatermark) continue;
      const record = recordAt(await log.read(offset, 1), offset);
      if (record !== undefined) oldestTimestamp = Math.min(oldestTimestamp, record.timestamp);
    }
    return { ...rest, oldestPendingAgeMs: Number.isFinite(oldestTimestamp) ? Math.max(0, now - oldestTimestamp) : null };
  }

  delete(name: string): void {
    const sub = this.#require(name);
    this.#close(sub);
    this.#store.deleteSubscription(name);
  }

  /** Subscriptions that dead-letter into `topic`, which therefore must not be deleted. */
  deadLetterUsers(topic: string): string[] {
    return [...this.#subscriptions.values()].filter((s) => s.config.deadLetterTopic === topic && s.topic !== topic).map((s) => s.name);
  }

  /** Ends in-flight leases of a subscription now, as if their ack wait ran out (Broker.expireLeases). */
  endLeases(name: string, match?: (partition: number, offset: number) => boolean): number {
    return this.#require(name).endLeases(match);
  }

  /** The subscription a consumer id belongs to, if it is connected. */
  subscriptionOf(consumerId: string): string | undefined {
    return this.#consumers.get(consumerId)?.subscription.name;
  }

  /** The topic is gone (its subscriptions went with it in SQLite): forget them here too. */
  dropTopic(topic: string): void {
    for (const sub of [...this.#subscriptions.values()]) if (sub.topic === topic) this.#close(sub);
  }

  /** `flush: false` is a crash (Broker.halt): state not yet saved is lost, as it would be. */
  close({ flush = true }: { flush?: boolean } = {}): void {
    clearInterval(this.#flushTimer);
    if (flush) this.#flushAll();
    for (const sub of [...this.#subscriptions.values()]) sub.close();
  }

  // ---- Transactions (broker/txn/coordinator.ts): acks staged by TxnSettle, applied at commit ----

  /** TxnSettle: the subscription of `consumerId`, which must be this session's (UNKNOWN_CONSUMER). */
  txnAckSubscription(session: Session, consumerId: string): string {
    return this.#owned(session, consumerId).subscription.name;
  }

  /**
   * Throws STALE_ACK or UNKNOWN_DELIVERY unless every ack is still current (Subscription.checkTxnAcks).
   * A subscription deleted meanwhile has nothing left to ack.
   */
  checkTxnAcks(subscription: string, items: readonly (readonly [number, number, number])[], now: number): void {
    this.#subscriptions.get(subscription)?.checkTxnAcks(items, now);
  }

  /** Applies acks checkTxnAcks passed in this same tick (in memory; settleTxnAcks saves them). */
  applyTxnAcks(subscription: string, items: readonly (readonly [number, number, number])[]): void {
    this.#subscriptions.get(subscription)?.applyTxnAcks(items);
  }

  /**
   * Settles the offsets whatever their attempt (a committed transaction's acks: applied already,
   * or, after a restart, found in the coordinator's record) and saves the state durably now.
   */
  settleTxnAcks(subscription: string, items: readonly (readonly [number, number, number])[]): void {
    const sub = this.#subscriptions.get(subscription);
    if (sub === undefined) return;
    const byPartition = new Map<number, number[]>();
    for (const [partition, offset] of items) {
      const list = byPartition.get(partition);
      if (list === undefined) byPartition.set(partition, [offset]);
      else list.push(offset);
    }
    for (const [partition, offsets] of byPartition) sub.settleRecovered(partition, offsets);
    this.#save(sub);
  }

  // ---- end of transactions ----

  async #getOrCreate(name: string, topic: string, input: SubscriptionConfigInput): Promise<Subscription> {
    validateSubscriptionName(name);
    const open = this.#subscriptions.get(name) ?? (await this.#opening.get(name));
    if (open !== undefined) return checkTopic(open, topic);
    const record = this.#store.getSubscription(name);
    if (record !== undefined) {
      if (record.topic !== topic) throw conflict(name, record.topic, topic);
      return this.#open(name, topic, JSON.parse(record.config) as SubscriptionConfig, record.dlqCheckpoint);
    }
    const opening = this.#create(name, topic, input);
    this.#opening.set(name, opening);
    try {
      return await opening;
    } finally {
      this.#opening.delete(name);
    }
  }

  async #create(name: string, topic: string, input: SubscriptionConfigInput): Promise<Subscription> {
    const record = this.#topics.require(topic);
    const config = resolveConfig(topic, input);
    if (config.deadLetterTopic === topic) throw new SluiceError('INVALID_CONFIG', 'a subscription cannot dead-letter into the topic it consumes');
    if (this.#topics.get(config.deadLetterTopic) === undefined) {
      await this.#topics.create({ topic: config.deadLetterTopic, partitions: 1 }).catch((err: unknown) => {
        if (!(err instanceof SluiceError && err.code === 'TOPIC_ALREADY_EXISTS')) throw err;
      });
    }
    const states = new Map<number, PersistedPartitionState>();
    for (let p = 0; p < record.partitions; p++) states.set(p, { ackFloor: await this.#startOffset(topic, p, config), acked: [], deliveryCounts: [] });
    const dlqEnd = this.#topics.partition(config.deadLetterTopic, 0).highWatermark;
    this.#store.createSubscription({ name, topic, config: JSON.stringify(config), dlqCheckpoint: dlqEnd, createdAt: Date.now() });
    this.#store.savePartitionStates(name, [...states].map(([partition, state]) => ({ partition, state: JSON.stringify(state) })), dlqEnd);
    this.#log.info({ subscription: name, topic }, 'subscription created');
    return this.#open(name, topic, config, dlqEnd);
  }

  async #startOffset(topic: string, partition: number, config: SubscriptionConfig): Promise<number> {
    const log = this.#topics.partition(topic, partition);
    if (config.startOffset !== undefined) return Math.min(Math.max(config.startOffset, log.startOffset), log.highWatermark);
    if (config.startTime !== undefined) return (await log.offsetForTimestamp(config.startTime)) ?? log.highWatermark;
    return config.start === 'earliest' ? log.startOffset : log.highWatermark;
  }

  async #open(name: string, topic: string, config: SubscriptionConfig, dlqCheckpoint: number): Promise<Subscription> {
    const topicRecord = this.#topics.require(topic);
    const states = new Map(this.#store.loadPartitionStates(name).map((row) => [row.partition, JSON.parse(row.state) as PersistedPartitionState]));
    const deadLetterLog = this.#topics.partition(config.deadLetterTopic, 0);
    const sub: Subscription = new Subscription(name, topic, config, {
      logs: Array.from({ length: topicRecord.partitions }, (_, p) => this.#topics.partition(topic, p)),
      deadLetterLog,
      states,
      log: this.#log,
      persist: (urgent) => this.#persist(sub, urgent),
    });
    for (const [partition, offsets] of await writtenSince(deadLetterLog, dlqCheckpoint, name)) sub.settleRecovered(partition, offsets);
    this.#subscriptions.set(name, sub);
    this.#save(sub);
    return sub;
  }

  #persist(sub: Subscription, urgent: boolean): Promise<void> {
    if (urgent) this.#save(sub);
    else this.#unsaved.add(sub);
    return Promise.resolve();
  }

  #flushAll(): void {
    for (const sub of [...this.#unsaved]) this.#save(sub);
  }

  /** One durable SQLite transaction (synchronous=FULL) with every dirty partition of `sub`. */
  #save(sub: Subscription): void {
    this.#unsaved.delete(sub);
    if (!this.#subscriptions.has(sub.name)) return;
    // Its topic was deleted, and the subscription's rows with it (SQLite cascades): nothing to
    // save, and saving would fail on the foreign key (before the fix, in the flush timer, an
    // uncaught exception that took the broker down).
    if (this.#topics.get(sub.topic) === undefined) return;
    // Read before the snapshot: dead letters written after it are rescanned on recovery.
    const checkpoint = this.#topics.get(sub.config.deadLetterTopic) === undefined ? 0 : this.#topics.partition(sub.config.deadLetterTopic, 0).highWatermark;
    const dirty = sub.takeDirty();
    if (dirty.length === 0) return;
    this.#store.savePartitionStates(sub.name, dirty.map((d) => ({ partition: d.partition, state: JSON.stringify(d.state) })), checkpoint);
  }

  #drop(consumerId: string, release: boolean): void {
    const ref = this.#consumers.get(consumerId);
    if (ref === undefined) return;
    this.#consumers.delete(consumerId);
    ref.subscription.removeConsumer(consumerId, release);
  }

  #close(sub: Subscription): void {
    this.#save(sub);
    sub.close();
    this.#subscriptions.delete(sub.name);
    for (const [id, ref] of [...this.#consumers]) if (ref.subscription === sub) this.#consumers.delete(id);
  }

  #owned(session: Session, consumerId: string): ConsumerRef {
    const ref = this.#consumers.get(consumerId);
    if (ref === undefined || ref.session !== session) throw new SluiceError('UNKNOWN_CONSUMER', `consumer ${consumerId} is not subscribed on this connection`);
    return ref;
  }

  #require(name: string): Subscription {
    const sub = this.#subscriptions.get(name);
    if (sub === undefined) throw new SluiceError('SUBSCRIPTION_NOT_FOUND', `subscription ${name} does not exist`, { details: { subscription: name } });
    return sub;
  }
}

/** Subscription names follow topic names' rules: they show up in headers, logs and the CLI. */
function validateSubscriptionName(name: string): void {
  try {
    validateTopicName(name);
  } catch (err) {
    throw new SluiceError('INVALID_CONFIG', `subscription name ${JSON.stringify(name)} is invalid: ${(err as Error).message}`);
  }
}

function resolveConfig(topic: string, input: SubscriptionConfigInput): SubscriptionConfig {
  const config: SubscriptionConfig = {
    start: input.start ?? SUBSCRIPTION_DEFAULTS.start,
    ackWaitMs: input.ackWaitMs ?? SUBSCRIPTION_DEFAULTS.ackWaitMs,
    maxDeliveries: input.maxDeliveries ?? SUBSCRIPTION_DEFAULTS.maxDeliveries,
    backoffMs: input.backoffMs ?? SUBSCRIPTION_DEFAULTS.backoffMs,
    deadLetterTopic: validateTopicName(input.deadLetterTopic ?? `${topic}.dlq`),
    ordering: input.ordering ?? SUBSCRIPTION_DEFAULTS.ordering,
    ...(input.startOffset === undefined ? {} : { startOffset: input.startOffset }),
    ...(input.startTime === undefined ? {} : { startTime: input.startTime }),
  };
  return config;
}

function checkTopic(sub: Subscription, topic: string): Subscription {
  if (sub.topic !== topic) throw conflict(sub.name, sub.topic, topic);
  return sub;
}

function conflict(name: string, existing: string, asked: string): SluiceError {
  return new SluiceError('SUBSCRIPTION_CONFLICT', `subscription ${name} is on topic ${existing}, not ${asked}`, { details: { subscription: name, topic: existing } });
}
