import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { PROTOCOL_VERSION } from '../client/protocol/frame.js';
import { parsers, type ApiName, type HelloResponse } from '../client/protocol/messages/index.js';
import { opcodeName } from '../client/protocol/opcodes.js';
import { parseBrokerConfig, type BrokerConfig, type BrokerOptions } from './config.js';
import { lockDataDir } from './data-dir.js';
import { GroupCoordinator } from './groups/coordinator.js';
import { fetchHandlers } from './handlers/fetch.js';
import { groupHandlers } from './handlers/groups.js';
import type { HandledApi, Handler, HandlerTable } from './handlers/handler.js';
import { handlePing } from './handlers/ping.js';
import { produceHandlers } from './handlers/produce.js';
import { producerHandlers } from './handlers/producer.js';
import { pushHandlers } from './handlers/push.js';
import type { Services } from './handlers/services.js';
import { topicHandlers } from './handlers/topics.js';
import { transactionHandlers } from './handlers/transactions.js';
import { LogManager, type FileIO } from './log/index.js';
import { createLogger, type Logger } from './logger.js';
import type { MetaStore } from './meta/meta-store.js';
import { openMetaStore } from './meta/sqlite-meta-store.js';
import { ServerConnection, type RequestContext, type RequestHost } from './net/server-connection.js';
import { PushService } from './push/push-service.js';
import { TopicRegistry } from './topics.js';
import { TransactionCoordinator } from './txn/coordinator.js';
import { ProducerIds } from './txn/producer-ids.js';
import { ProducerStateManager } from './txn/producer-states.js';
import { SLUICE_VERSION } from './version.js';

/** How often expired consumer-group sessions are swept. */
const SESSION_SWEEP_MS = 1_000;

/**
 * The broker core: owns storage and state, and answers requests through one handler per request
 * type. It never sees a socket; `handleConnection` takes any duplex stream.
 */
/** Where a broker keeps its bytes, when not the real file system (tests). */
export interface BrokerStorage {
  io?: FileIO;
}

export class Broker implements RequestHost {
  readonly config: BrokerConfig;
  readonly log: Logger;
  readonly #connections = new Set<ServerConnection>();
  readonly #handlers: HandlerTable;
  readonly #meta: MetaStore;
  readonly #logs: LogManager;
  readonly #topics: TopicRegistry;
  readonly #push: PushService;
  readonly #producerStates: ProducerStateManager;
  readonly #transactions: TransactionCoordinator;
  readonly #stopping = new AbortController();
  readonly #unlock: () => void;
  readonly #timers: NodeJS.Timeout[] = [];
  #closing: Promise<void> | undefined;
  #fatal: Error | undefined;
  #halting = false;
  readonly #closed: Promise<void>;
  #markClosed!: () => void;

  private constructor(config: BrokerConfig, log: Logger, meta: MetaStore, logs: LogManager, unlock: () => void) {
    this.config = config;
    this.log = log;
    this.#meta = meta;
    this.#logs = logs;
    this.#unlock = unlock;
    this.#closed = new Promise((resolve) => (this.#markClosed = resolve));
    this.#producerStates = new ProducerStateManager({ logger: log });
    this.#topics = new TopicRegistry(meta, logs, { partitions: config.defaultPartitions, autoCreate: config.autoCreateTopics }, this.#producerStates);
    this.#push = new PushService(this.#topics, meta.subscriptions, log);
    const groups = new GroupCoordinator({
      store: meta,
      partitionsOf: (topic) => this.#topics.partitionsOf(topic),
      sessionTimeoutMs: config.groupSessionTimeoutMs,
      heartbeatIntervalMs: config.groupHeartbeatIntervalMs,
    });
    const producerIds = new ProducerIds(meta.producers);
    this.#transactions = new TransactionCoordinator({
      store: meta.transactions,
      producerIds,
      producerStates: this.#producerStates,
      topics: this.#topics,
      groups,
      acks: this.#push,
      logger: log,
    });
    const services: Services = {
      topics: this.#topics,
      meta,
      groups,
      push: this.#push,
      producerIds,
      producerStates: this.#producerStates,
      transactions: this.#transactions,
      // Room for the response's own framing next to the records.
      maxFetchBytes: config.maxFrameBytes - (64 << 10),
      stopping: this.#stopping.signal,
      now: Date.now,
    };
    this.#handlers = {
      Ping: handlePing,
      ...topicHandlers(services),
      ...produceHandlers(services),
      ...producerHandlers(services),
      ...fetchHandlers(services),
      ...groupHandlers(services),
      ...pushHandlers(services),
      ...transactionHandlers(services),
    };
    const sweep = setInterval(() => services.groups.expireSessions(Date.now()), SESSION_SWEEP_MS);
    const retention = setInterval(() => {
      logs.enforceRetention().catch((err: unknown) => log.error({ err }, 'retention failed'));
    }, config.retentionCheckIntervalMs);
    for (const t of [sweep, retention]) {
      t.unref();
      this.#timers.push(t);
    }
  }

  /**
   * Opens the data directory: locks it, opens SQLite, recovers every partition log. `storage.io`
   * replaces the file system the logs use (sluice/testing passes a PowerCutIO to pull the plug).
   */
  static async open(options: BrokerOptions = {}, storage: BrokerStorage = {}): Promise<Broker> {
    const config = parseBrokerConfig(options);
    const log = config.logger ?? createLogger(config.logLevel);
    const unlock = lockDataDir(config.dataDir);
    let meta: MetaStore | undefined;
    try {
      meta = openMetaStore(join(config.dataDir, 'sluice.db'));
      let broker: Broker | undefined;
      const logs = new LogManager({
        dataDir: config.dataDir,
        ...(storage.io === undefined ? {} : { io: storage.io }),
        defaults: { fsync: config.fsync, fsyncIntervalMs: config.fsyncIntervalMs, maxBatchBytes: config.maxBatchBytes, logger: log },
        onFatal: (err, topic, partition) => broker?.fail(err, `${topic}/${partition}`),
      });
      broker = new Broker(config, log, meta, logs, unlock);
      await broker.#topics.openAll((topic, err) => log.error({ topic, err }, 'topic could not be opened; it is unavailable until fixed'));
      await broker.#push.openAll();
      // Before serving: finish the commits and aborts a crash interrupted (markers, acks, offsets).
      await broker.#transactions.recover();
      broker.#transactions.start();
      log.info({ dataDir: config.dataDir, fsync: config.fsync, topics: broker.#topics.list().length }, 'broker opened');
      return broker;
    } catch (err) {
      meta?.close();
      unlock();
      throw err;
    }
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** The storage failure that stopped the broker, if one did. */
  get fatalError(): Error | undefined {
    return this.#fatal;
  }

  handleConnection(stream: Duplex, remoteAddress?: string): void {
    if (this.#closing !== undefined) {
      stream.destroy();
      return;
    }
    const conn = new ServerConnection(stream, this, this.config, remoteAddress);
    this.#connections.add(conn);
    stream.once('close', () => this.#connections.delete(conn));
  }

  hello(): HelloResponse {
    return {
      version: PROTOCOL_VERSION,
      server: 'sluice',
      serverVersion: SLUICE_VERSION,
      features: [],
      limits: {
        maxFrameBytes: this.config.maxFrameBytes,
        maxBatchBytes: this.config.maxBatchBytes,
        maxInFlight: this.config.maxInFlight,
        idleTimeoutMs: this.config.idleTimeoutMs,
        heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      },
    };
  }

  serves(opcode: number): boolean {
    const name = opcodeName(opcode);
    return name !== undefined && name in this.#handlers;
  }

  async dispatch(opcode: number, body: unknown, ctx: RequestContext): Promise<unknown> {
    const name = opcodeName(opcode) as HandledApi;
    const request = parsers[name].request(body);
    const handler = this.#handlers[name] as Handler<ApiName>;
    return handler(request as never, ctx);
  }

  /**
   * A storage failure (a failed write or fsync) stops the broker: what was pending has already
   * failed with STORAGE_ERROR, and nothing after it may be acknowledged.
   */
  fail(err: Error, where: string): void {
    // Halting (a simulated crash) fails storage on purpose; that is not news.
    if (this.#fatal !== undefined || this.#halting) return;
    this.#fatal = err;
    this.log.error({ err, where }, 'storage failure; stopping the broker');
    void this.close();
  }

  /** Graceful: wake parked requests, drain every connection, then close storage. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closing = this.#close();
      this.#closing.then(this.#markClosed, this.#markClosed);
    }
    return this.#closing;
  }

  /**
   * Ends the leases of a push subscription's in-flight deliveries now (all, or those `match`
   * picks), as if their ack wait had run out: they are redelivered (or dead-lettered at
   * maxDeliveries), and a late ack of the old attempt gets STALE_ACK. Returns how many. For
   * fault-injection tests (sluice/testing); SUBSCRIPTION_NOT_FOUND if there is no such subscription.
   */
  expireLeases(subscription: string, match?: (partition: number, offset: number) => boolean): number {
    return this.#push.endLeases(subscription, match);
  }

  /** The push subscription a connected consumer id belongs to (sluice/testing reads Deliver frames by it). */
  subscriptionOfConsumer(consumerId: string): string | undefined {
    return this.#push.subscriptionOf(consumerId);
  }

  /**
   * Stops at once, as a crash would: connections are cut and nothing more is written on the way
   * out (push state not yet saved stays unsaved; no final indexes, recovery point, clean-shutdown
   * marker or producer-state snapshots), so the next open recovers as after a crash. Files,
   * SQLite and the data-dir lock are released so the same process can open the directory again.
   * What the page cache holds still reaches the disk, as after kill -9; `powerCut` runs once the
   * broker has stopped answering and before files close, to lose that too (sluice/testing passes
   * PowerCutIO.cut). Storage failures it causes are expected and not reported.
   */
  halt(powerCut?: () => Promise<unknown>): Promise<void> {
    if (this.#closing === undefined) {
      this.#halting = true;
      this.#closing = this.#halt(powerCut);
      this.#closing.then(this.#markClosed, this.#markClosed);
    }
    return this.#closing;
  }

  async #halt(powerCut: (() => Promise<unknown>) | undefined): Promise<void> {
    this.#stopping.abort();
    for (const t of this.#timers) clearInterval(t);
    for (const c of this.#connections) c.destroy();
    this.#push.close({ flush: false });
    const quietly = (what: string) => (err: unknown) => this.log.debug({ err }, `${what} failed while halting`);
    try {
      await powerCut?.();
    } finally {
      await this.#transactions.close().catch(quietly('transactions'));
      await this.#logs.close({ abandon: true }).catch(quietly('logs'));
      await this.#producerStates.close({ snapshot: false }).catch(quietly('producer state'));
      this.#meta.close();
      this.#unlock();
    }
  }

  /** Resolves once the broker has closed, whoever closed it (a caller, or a storage failure). */
  whenClosed(): Promise<void> {
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#stopping.abort();
    for (const t of this.#timers) clearInterval(t);
    await Promise.all([...this.#connections].map((c) => c.drain(this.config.shutdownTimeoutMs)));
    // A transaction being ended by its timeout finishes its markers while the logs are open.
    await this.#transactions.close().catch((err: unknown) => this.log.error({ err }, 'closing the transaction coordinator failed'));
    this.#push.close();
    try {
      await this.#logs.close();
    } finally {
      // After the logs: each partition's final producer-state snapshot covers its whole log
      // (none for a log that did not close cleanly: the next open rescans it).
      await this.#producerStates.close().catch((err: unknown) => this.log.error({ err }, 'closing producer state failed'));
      this.#meta.close();
      this.#unlock();
    }
  }
}
