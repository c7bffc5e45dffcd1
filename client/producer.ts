import type { Connection, RequestOptions } from './connection.js';
import { NO_HEADERS, RECORD_FIXED_OVERHEAD, sendClock, type FlatHeaders, type RecordValue } from './internal/accumulator.js';
import { deferred, type Deferred } from './internal/deferred.js';
import type { Batch, Resolve } from './internal/produce-batch.js';
import { prepareMessage, type Prepared } from './internal/produce-message.js';
import { ProduceSender } from './internal/produce-sender.js';
import { ProducerIdentityKeeper } from './internal/producer-identity.js';
import { parseProducerOptions, type ProducerConfig, type ProducerOptions } from './internal/producer-options.js';
import { PartitionCounts } from './partitioner.js';
import { SluiceError } from './protocol/errors.js';
import { Transaction, runTransaction, type ProducerIdentity, type TransactionHost } from './transaction.js';
import type { MessageHeaders } from './value-codec.js';

export { parseProducerOptions, type ProducerConfig, type ProducerOptions } from './internal/producer-options.js';

export interface ProducerMessage {
  topic: string;
  key?: Buffer | string | null;
  /** Buffer: raw bytes; string: UTF-8; anything else: msgpack (see value-codec.ts). */
  value: unknown;
  headers?: MessageHeaders;
  /** Explicit partition; otherwise by key (Kafka's murmur2) or sticky for keyless messages. */
  partition?: number;
  /** Milliseconds since the epoch. Default: the time of `send()`. */
  timestamp?: number;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
}

/** A send waiting in the intake queue (for a partition count, buffer room, or earlier sends that wait). */
interface PendingSend {
  readonly topic: string;
  readonly partition: number | undefined;
  readonly key: Buffer | null;
  readonly value: RecordValue;
  readonly headers: FlatHeaders;
  readonly timestamp: number;
  /** recordFixedSize of key, value and headers. */
  readonly fixed: number;
  readonly resolve: Resolve;
  readonly reject: (reason: unknown) => void;
  /** Waiting (abortable), then in `batch`, or settled without ever being batched. */
  state: 'queued' | 'batched' | 'settled';
  batch: Batch | undefined;
  detach: (() => void) | undefined;
}

// new Promise() with one shared executor: no closure per send.
let capturedResolve: Resolve | undefined;
let capturedReject: ((reason: unknown) => void) | undefined;
function capture(resolve: Resolve, reject: (reason: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * Batches messages per topic-partition and sends them in Produce requests.
 *
 * Pipeline: `send()` -> the partition's open batch, written record by record (or first the
 * intake queue, FIFO, while a partition count or buffer room is awaited or earlier sends wait
 * there, so calls keep their order) -> Produce requests (several partitions each, at most
 * maxInFlight at once).
 *
 * A batch stays open, taking records, until it is full or a request takes it. A partition's open
 * batch is due lingerMs after its first record; it goes out when due and the partition has no
 * request in flight. While one is in flight, records keep landing in the open batch, which goes
 * out the moment the reply arrives (Kafka's accumulator): latency stays near one round trip
 * under light load, and batches grow with the load instead of queueing up one small batch per
 * round trip. Full batches queue behind one another, bounded by maxBufferedBytes.
 *
 * Ordering rule: a partition never has more than one request in flight. A failed batch that is
 * retried goes back to the head of its partition's queue, so retries cannot reorder a
 * partition. (Kafka's max.in.flight=1 per partition, applied per partition rather than per
 * connection so that other partitions keep flowing.)
 *
 * Idempotence (the default; docs/semantics.md, "The idempotent producer"): before its first
 * batch the producer asks the broker for a producer id (InitProducer), and each batch carries
 * it, its epoch and the sequence number of its first record in its partition (records sent
 * before in that partition under this id and epoch, wrapping after 2^31 - 1). Sequences are
 * assigned when a batch first goes on the wire, in partition order (one request per partition
 * at a time), and a retry resends the same bytes, so a batch that was written but whose reply
 * was lost is answered as a duplicate with its original offsets, and its sends resolve with
 * those. A final failure that leaves the broker's sequence for a partition unknown (retries
 * exhausted, OUT_OF_ORDER_SEQUENCE, UNKNOWN_PRODUCER: a broker that lost state) fails that
 * batch's sends and makes the producer take a fresh producer id for what follows; a failure the
 * broker answered before writing (INVALID_RECORD, TOPIC_NOT_FOUND, ...) gives the sequence
 * numbers back. PRODUCER_FENCED closes the producer and fails everything pending. With
 * `idempotent: false`, delivery is at-least-once: a retry after a lost reply writes again.
 *
 * Transactions (`transactionalId`, client/transaction.ts): InitProducer with the id, every
 * batch TRANSACTIONAL, sends only inside `transaction()`, and after each transaction the epoch
 * the broker answers EndTxn with, under which every partition's sequence starts at 0 again.
 *
 * Timestamps: a message without one gets the time of its send() call as read once per
 * synchronous run of the caller (see sendClock); the RecordMetadata reports the stored value.
 */
export class Producer {
  readonly #config: ProducerConfig;
  readonly #requestOptions: RequestOptions;
  readonly #partitionCounts: PartitionCounts;
  /** The producer id, epoch and sequence generation; the fence. */
  readonly #identities: ProducerIdentityKeeper;
  /** The per-partition batches and the Produce requests that carry them. */
  readonly #sender: ProduceSender;
  #intake: PendingSend[] = [];
  #intakeHead = 0;
  #pumping = false;
  #closed = false;
  #progress: Deferred<void> | undefined;
  readonly #prepared: Prepared = { topic: '', partition: undefined, key: null, value: null, headers: NO_HEADERS, timestamp: 0, fixed: 0 };
  /** The transaction `transaction()` runs now; a transactional producer's sends belong to it. */
  #txn: Transaction | undefined;
  /** The end of the chain of transactions (and initTransactions calls): one runs at a time. */
  #txnTail: Promise<void> = Promise.resolve();
  readonly #host: TransactionHost;

  constructor(connection: Connection, options: ProducerOptions = {}) {
    this.#config = parseProducerOptions(options);
    this.#requestOptions = this.#config.requestTimeoutMs === undefined ? {} : { timeoutMs: this.#config.requestTimeoutMs };
    this.#partitionCounts = new PartitionCounts(connection, { maxAgeMs: this.#config.metadataMaxAgeMs, retries: this.#config.retries, request: this.#requestOptions });
    this.#identities = new ProducerIdentityKeeper(connection, this.#config, this.#requestOptions);
    this.#sender = new ProduceSender(connection, this.#config, this.#requestOptions, this.#partitionCounts, this.#identities, {
      fence: (error) => this.#fence(error),
      failWaiting: (error) => this.#failWaiting(error),
      notifyProgress: () => this.#notifyProgress(),
    });
    this.#host = {
      connection,
      transactionalId: this.#config.transactionalId ?? '',
      requestOptions: this.#requestOptions,
      retryBudgetMs: this.#identities.retryBudgetMs(),
      identity: () => this.#identities.ensure(),
      adopt: (identity) => this.#identities.adopt(identity),
      forget: () => this.#identities.forget(),
      fence: (error) => this.#fence(error),
      fatal: () => this.#identities.fatal,
      closed: () => this.#closed,
      begin: (tx) => {
        this.#txn = tx;
      },
      end: () => {
        this.#txn = undefined;
      },
      send: (message, options) => this.#send(message, options),
      flush: () => this.flush(),
    };
  }

  get config(): ProducerConfig {
    return this.#config;
  }

  /** The producer id and epoch the next batch is stamped with (undefined before the first InitProducer, or when not idempotent). */
  get identity(): ProducerIdentity | undefined {
    return this.#identities.current;
  }

  /**
   * Runs `fn` as one transaction (needs `transactionalId`): every message sent in it (with
   * `tx.send`, or `producer.send` while it runs), every consumer-group offset staged with
   * `tx.commitOffsets` and every push delivery acked with `tx.ack` takes effect if and only if it
   * commits. When `fn` resolves, the SDK waits for the transaction's sends, then commits (EndTxn);
   * when `fn` throws, or one of its sends or stagings failed, it aborts and rejects with that
   * error. One transaction runs at a time: later calls wait. See client/transaction.ts.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T> | T): Promise<T> {
    if (this.#config.transactionalId === undefined) {
      return Promise.reject(new SluiceError('INVALID_CONFIG', 'transaction() needs a transactional producer: pass `transactionalId` in the producer options'));
    }
    const run = this.#txnTail.then(() => runTransaction(this.#host, fn));
    this.#txnTail = run.then(noop, noop);
    return run;
  }

  /**
   * Registers the transactional id with the broker now (InitProducer): a new epoch, which fences
   * every older instance and aborts the transaction one left open. The first `transaction()`
   * does this on its own; call it to take over from a previous instance at startup, or after a
   * transaction whose outcome is unknown (its EndTxn never got an answer): once it returns, that
   * transaction is either committed or aborted for good, so consumed offsets can be read back.
   */
  initTransactions(): Promise<ProducerIdentity> {
    if (this.#config.transactionalId === undefined) {
      return Promise.reject(new SluiceError('INVALID_CONFIG', 'initTransactions() needs a transactional producer: pass `transactionalId` in the producer options'));
    }
    const run = this.#txnTail.then(() => {
      if (this.#identities.fatal !== undefined) throw this.#identities.fatal;
      if (this.#closed) throw new SluiceError('CLIENT_CLOSED', 'producer is closed');
      this.#identities.forget();
      return this.#identities.ensure();
    });
    this.#txnTail = run.then(noop, noop);
    return run;
  }

  /**
   * Resolves once the broker has acknowledged the message (durably, under its fsync mode). The
   * signal cancels a send still waiting for metadata or buffer room: it is then never written.
   * Once the message is in a batch the signal is ignored and the promise reports the outcome.
   */
  send(message: ProducerMessage, options?: { signal?: AbortSignal }): Promise<RecordMetadata> {
    if (this.#config.transactionalId === undefined) return this.#send(message, options);
    const txn = this.#txn;
    if (txn === undefined) {
      return Promise.reject(this.#identities.fatal ?? new SluiceError('INVALID_TXN_STATE', 'a transactional producer sends only inside producer.transaction()'));
    }
    return txn.send(message, options);
  }

  #send(message: ProducerMessage, options?: { signal?: AbortSignal }): Promise<RecordMetadata> {
    const p = this.#prepared;
    try {
      if (this.#identities.fatal !== undefined) throw this.#identities.fatal;
      // A running transaction may still send after close(): close() waits for it to end.
      if (this.#closed && this.#txn === undefined) throw new SluiceError('CLIENT_CLOSED', 'producer is closed');
      prepareMessage(message, p, this.#sender.maxBatchBytes());
    } catch (err) {
      return Promise.reject(err);
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const promise = new Promise<RecordMetadata>(capture);
    const resolve = capturedResolve!;
    const reject = capturedReject!;
    // Fast path: nothing waits ahead of this send, the partition is known and there is room.
    if (this.#intakeHead === this.#intake.length && (this.#sender.buffered === 0 || this.#sender.buffered + p.fixed + RECORD_FIXED_OVERHEAD <= this.#config.maxBufferedBytes)) {
      const topic = this.#sender.topicQueues(p.topic);
      let count: number | undefined;
      if (p.partition === undefined) {
        const known = this.#partitionCounts.get(p.topic, sendClock());
        if (typeof known === 'number') count = known;
      }
      if (p.partition !== undefined || count !== undefined) {
        this.#sender.append(topic, count, p.partition, p.key, p.value, p.headers, p.timestamp, p.fixed, resolve);
        return promise;
      }
    }
    const send: PendingSend = {
      topic: p.topic,
      partition: p.partition,
      key: p.key,
      value: p.value,
      headers: p.headers,
      timestamp: p.timestamp,
      fixed: p.fixed,
      resolve,
      reject,
      state: 'queued',
      batch: undefined,
      detach: undefined,
    };
    if (signal !== undefined) {
      const onAbort = (): void => {
        if (send.state === 'queued') this.#settleQueued(send, abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      send.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#intake.push(send);
    void this.#pump();
    return promise;
  }

  /** Sends all, in order; rejects with the first failure (the others may still be written). */
  sendMany(messages: readonly ProducerMessage[]): Promise<RecordMetadata[]> {
    return Promise.all(messages.map((m) => this.send(m)));
  }

  /** Sends everything batched now, without lingering, and waits until every earlier send settled. */
  async flush(): Promise<void> {
    const sends = this.#intake.slice(this.#intakeHead);
    const batches = this.#sender.pendingBatches();
    if (sends.length === 0 && batches.length === 0) return;
    this.#sender.flushes++;
    try {
      this.#sender.sendLingering();
      const settled = (send: PendingSend): boolean => send.state === 'settled' || send.batch?.done === true;
      for (let i = 0; i < sends.length; ) {
        if (settled(sends[i]!)) i++;
        else await this.#waitProgress();
      }
      for (let i = 0; i < batches.length; ) {
        if (batches[i]!.done) i++;
        else await this.#waitProgress();
      }
    } finally {
      this.#sender.flushes--;
    }
  }

  /**
   * Refuses further sends and transactions, lets a running transaction end (commit or abort, by
   * its own course), then flushes. Does not close the connection, which it does not own.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#txnTail;
    await this.flush();
    this.#sender.stopTimers();
  }
  /** Moves sends from the intake queue into batches, in call order. One pump runs at a time. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#intakeHead < this.#intake.length) {
        const send = this.#intake[this.#intakeHead]!;
        if (send.state !== 'queued') {
          this.#shiftIntake();
          continue;
        }
        let count: number | undefined;
        if (send.partition === undefined) {
          const known = this.#partitionCounts.get(send.topic, sendClock());
          if (typeof known !== 'number') {
            // Re-check from the top afterwards: the send may have been aborted meanwhile.
            await known.catch((err: unknown) => this.#rejectTopic(send.topic, err));
            continue;
          }
          count = known;
        }
        if (this.#sender.buffered > 0 && this.#sender.buffered + send.fixed + RECORD_FIXED_OVERHEAD > this.#config.maxBufferedBytes) {
          await this.#waitProgress();
          continue;
        }
        this.#shiftIntake();
        send.detach?.();
        send.detach = undefined;
        send.state = 'batched';
        send.batch = this.#sender.append(this.#sender.topicQueues(send.topic), count, send.partition, send.key, send.value, send.headers, send.timestamp, send.fixed, send.resolve);
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** The topic's partition count could not be had: every queued send that needs it gets the same answer. */
  #rejectTopic(topic: string, err: unknown): void {
    for (let i = this.#intakeHead; i < this.#intake.length; i++) {
      const send = this.#intake[i]!;
      if (send.topic === topic && send.partition === undefined) this.#settleQueued(send, err);
    }
  }

  #shiftIntake(): void {
    this.#intakeHead++;
    if (this.#intakeHead === this.#intake.length) {
      this.#intake.length = 0;
      this.#intakeHead = 0;
    } else if (this.#intakeHead > 1_024 && this.#intakeHead * 2 > this.#intake.length) {
      this.#intake = this.#intake.slice(this.#intakeHead);
      this.#intakeHead = 0;
    }
  }

  /** Settles a send that never reached a batch. */
  #settleQueued(send: PendingSend, error: unknown): void {
    if (send.state !== 'queued') return;
    send.state = 'settled';
    send.detach?.();
    send.detach = undefined;
    send.reject(error);
    this.#notifyProgress();
  }

  /** PRODUCER_FENCED: a newer instance took over. The producer closes; everything not yet written fails with `error`. */
  #fence(error: SluiceError): void {
    if (!this.#identities.fence(error)) return;
    this.#closed = true;
    this.#failWaiting(error);
  }

  /** Fails every send not on the wire: queued ones and every batch but those in flight. */
  #failWaiting(error: SluiceError): void {
    for (let i = this.#intakeHead; i < this.#intake.length; i++) this.#settleQueued(this.#intake[i]!, error);
    this.#sender.failUnsent(error);
  }

  #waitProgress(): Promise<void> {
    this.#progress ??= deferred();
    return this.#progress.promise;
  }

  /** Wakes the intake pump and flushes: bytes were freed or a send settled. */
  #notifyProgress(): void {
    const progress = this.#progress;
    this.#progress = undefined;
    progress?.resolve();
  }
}

function noop(): void {}

function abortError(signal: AbortSignal): SluiceError {
  return new SluiceError('ABORTED', 'send aborted before the message was batched', { cause: signal.reason });
}
