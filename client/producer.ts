import type { Connection, RequestOptions } from './connection.js';
import { BatchBuilder, NO_HEADERS, RECORD_FIXED_OVERHEAD, advanceSequence, recordFixedSize, sendClock, type FlatHeaders, type RecordValue } from './internal/accumulator.js';
import { deferred, type Deferred } from './internal/deferred.js';
import { PartitionCounts, StickyPartitioner, partitionForKey, retryDelay } from './partitioner.js';
import { SluiceError, isSluiceError, type ErrorName } from './protocol/errors.js';
import { MAX_TOPIC_LENGTH } from './protocol/messages/common.js';
import { fromErrorBody } from './protocol/messages/error.js';
import type { ProduceBatch, ProduceResult } from './protocol/messages/produce.js';
import { MAX_TRANSACTIONAL_ID_LENGTH } from './protocol/messages/producer.js';
import { BATCH_HEADER_SIZE } from './protocol/record-batch.js';
import { Transaction, retrying, runTransaction, type ProducerIdentity, type TransactionHost } from './transaction.js';
import { CONTENT_TYPE, TEXT, encodeValue, type MessageHeaders } from './value-codec.js';

export interface ProducerOptions {
  /** How long a batch waits for more records before it is sent. 0: the next turn of the event loop. Default 5 ms. */
  lingerMs?: number;
  /** A batch is sealed before it would pass this size (estimated from above). 1 KiB to 1 MiB, the broker's batch limit. Default 512 KiB. */
  maxBatchBytes?: number;
  /** Produce requests on the wire at once. Default 5. */
  maxInFlight?: number;
  /** Resends of a batch after a retriable error, with backoff. Default 5. */
  retries?: number;
  /** Per-request timeout. Default: the connection's. */
  requestTimeoutMs?: number;
  /** How long a topic's partition count is trusted before it is looked up again. Default 30 s. */
  metadataMaxAgeMs?: number;
  /** Bytes of records batched or in flight before `send()` waits for acks. At least maxBatchBytes. Default 32 MiB. */
  maxBufferedBytes?: number;
  /**
   * Idempotent produce (docs/semantics.md, "The idempotent producer"): the producer gets a
   * producer id from the broker (InitProducer, once, before its first batch) and numbers each
   * partition's records, so a batch resent after a lost reply is recognised and answered with
   * its original offsets instead of being written twice. Default true; `false` sends plain
   * batches (at-least-once: a retry can duplicate).
   */
  idempotent?: boolean;
  /**
   * Makes the producer transactional: `transaction()` writes to several partitions, and commits
   * consumed offsets or push acks, all or nothing. The id names the producer across restarts:
   * a new instance with the same id fences the old one (PRODUCER_FENCED) and aborts what it left
   * open. Every send must then happen inside `transaction()`. Up to 249 characters.
   */
  transactionalId?: string;
  /** The broker aborts a transaction left open longer than this. 100 ms to 1 h. Default 60 s. */
  transactionTimeoutMs?: number;
}

export type ProducerConfig = Readonly<
  Required<Omit<ProducerOptions, 'requestTimeoutMs' | 'transactionalId'>> & { requestTimeoutMs: number | undefined; transactionalId: string | undefined }
>;

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

const KIB = 1024;
/** The broker's per-batch limit (broker/log/options.ts, maxBatchBytes). */
const BROKER_MAX_BATCH_BYTES = 1024 * KIB;
/** Room for a request's framing and each entry's msgpack map (topic name included). */
const REQUEST_OVERHEAD = 1024;
const ENTRY_OVERHEAD = MAX_TOPIC_LENGTH + 64;
/** The Produce codec's limit on entries per request (client/protocol/messages/produce.ts). */
const MAX_ENTRIES = 4_096;

const DEFAULTS = { lingerMs: 5, maxBatchBytes: 512 * KIB, maxInFlight: 5, retries: 5, metadataMaxAgeMs: 30_000, maxBufferedBytes: 32 * 1024 * KIB, idempotent: true, transactionTimeoutMs: 60_000 };

/**
 * Errors the broker answers for a batch it refused before writing any of it: the batch's
 * sequence numbers were not used, so the partition's next batch takes them. Any other final
 * failure of an idempotent batch leaves the broker's sequence unknown (it may have been written
 * with its reply lost, or refused for a reason that concerns the sequence itself), so the
 * producer takes a fresh producer id for its next batches.
 */
const NOT_WRITTEN: ReadonlySet<ErrorName> = new Set(['TOPIC_NOT_FOUND', 'PARTITION_NOT_FOUND', 'INVALID_RECORD', 'CORRUPT_RECORD', 'RECORD_TOO_LARGE', 'INVALID_TXN_STATE', 'INVALID_REQUEST']);

/** Parses producer options once: unknown keys and bad values are INVALID_CONFIG naming the option. */
export function parseProducerOptions(options: ProducerOptions = {}): ProducerConfig {
  if (typeof options !== 'object' || options === null) throw new SluiceError('INVALID_CONFIG', 'producer options must be an object');
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(key in DEFAULTS) && key !== 'requestTimeoutMs' && key !== 'transactionalId') throw new SluiceError('INVALID_CONFIG', `unknown producer option ${JSON.stringify(key)}`, { details: { option: key } });
  }
  const maxBatchBytes = intOption(o, 'maxBatchBytes', KIB, BROKER_MAX_BATCH_BYTES);
  const idempotent = o['idempotent'] ?? DEFAULTS.idempotent;
  if (typeof idempotent !== 'boolean') throw new SluiceError('INVALID_CONFIG', `producer option idempotent must be a boolean, got ${String(idempotent)}`, { details: { option: 'idempotent' } });
  const transactionalId = o['transactionalId'];
  if (transactionalId !== undefined) {
    if (typeof transactionalId !== 'string' || transactionalId.length === 0 || transactionalId.length > MAX_TRANSACTIONAL_ID_LENGTH) {
      throw new SluiceError('INVALID_CONFIG', `producer option transactionalId must be a string of 1 to ${MAX_TRANSACTIONAL_ID_LENGTH} characters`, { details: { option: 'transactionalId' } });
    }
    if (!idempotent) throw new SluiceError('INVALID_CONFIG', 'a transactional producer is idempotent: drop `idempotent: false` or `transactionalId`', { details: { option: 'idempotent' } });
  }
  return Object.freeze({
    lingerMs: intOption(o, 'lingerMs', 0, 60_000),
    maxBatchBytes,
    maxInFlight: intOption(o, 'maxInFlight', 1, 1_024),
    retries: intOption(o, 'retries', 0, 1_000),
    requestTimeoutMs: o['requestTimeoutMs'] === undefined ? undefined : intOption(o, 'requestTimeoutMs', 1, 3_600_000),
    metadataMaxAgeMs: intOption(o, 'metadataMaxAgeMs', 0, 86_400_000),
    maxBufferedBytes: intOption(o, 'maxBufferedBytes', maxBatchBytes, 2 ** 31),
    idempotent,
    transactionalId,
    transactionTimeoutMs: intOption(o, 'transactionTimeoutMs', 100, 3_600_000),
  });
}

function intOption(o: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = o[key] ?? DEFAULTS[key as keyof typeof DEFAULTS];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new SluiceError('INVALID_CONFIG', `producer option ${key} must be an integer in [${min}, ${max}], got ${String(v)}`, { details: { option: key } });
  }
  return v;
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

/**
 * A batch of one partition. It is OPEN (records append to it) until it is full or taken for a
 * request (sealed). Its bytes are encoded when it first goes on the wire, stamped then with the
 * producer id, epoch and the partition's next sequence number; retries resend them unchanged.
 */
interface Batch {
  readonly queue: PartitionQueue;
  readonly builder: BatchBuilder;
  /** Each record's timestamp, for its RecordMetadata. */
  readonly timestamps: number[];
  /** Each record's resolve (a failure resolves them with a thenable that rejects). */
  readonly settlers: Resolve[];
  /** Record bytes, as counted against maxBufferedBytes. */
  bytes: number;
  /** When an open batch is due to be sent (0: at once); flush() sets it to 0. */
  deadline: number;
  encoded: Buffer | undefined;
  /** The producer generation (see Producer.#generation) it was stamped in, and its base sequence; -1 if not stamped. */
  generation: number;
  baseSequence: number;
  attempts: number;
  done: boolean;
}

/**
 * One topic-partition: the open batch, full or retried batches waiting in order ahead of it, and
 * the batch on the wire (at most one, so a partition's batches are written in order).
 */
interface PartitionQueue {
  readonly topic: string;
  readonly partition: number;
  open: Batch | undefined;
  readonly sealed: Batch[];
  inFlight: Batch | undefined;
  retryAt: number;
  /** About the size of recent batches: the next open batch starts with room for that much. */
  sizeHint: number;
  /** The sequence number the next stamped batch starts at, valid while `generation` is the producer's. */
  sequence: number;
  generation: number;
}

interface TopicQueues {
  readonly topic: string;
  readonly partitions: Map<number, PartitionQueue>;
  last: PartitionQueue | undefined;
}

/** Parts of a message once checked and encoded (#prepare fills these, send() reads them at once). */
interface Prepared {
  topic: string;
  partition: number | undefined;
  key: Buffer | null;
  value: RecordValue;
  headers: FlatHeaders;
  timestamp: number;
  fixed: number;
}

// new Promise() with one shared executor: no closure per send.
type Resolve = (value: RecordMetadata | PromiseLike<RecordMetadata>) => void;
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
  readonly #connection: Connection;
  readonly #config: ProducerConfig;
  readonly #requestOptions: RequestOptions;
  readonly #sticky = new StickyPartitioner();
  readonly #partitionCounts: PartitionCounts;
  readonly #topics = new Map<string, TopicQueues>();
  #lastTopic: TopicQueues | undefined;
  /** Queues whose open batch is not due yet. */
  readonly #lingering = new Set<PartitionQueue>();
  /** Queues with no request in flight and a batch to send (a waiting one or a due open one). */
  readonly #ready = new Set<PartitionQueue>();
  #intake: PendingSend[] = [];
  #intakeHead = 0;
  #pumping = false;
  #buffered = 0;
  #inFlight = 0;
  #flushes = 0;
  #closed = false;
  #progress: Deferred<void> | undefined;
  /** Cancels the linger timer, which fires at #lingerAt. */
  #lingerTimer: (() => void) | undefined;
  #lingerAt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #dispatchScheduled = false;
  readonly #runDispatch = (): void => {
    this.#dispatchScheduled = false;
    this.#dispatch();
  };
  readonly #prepared: Prepared = { topic: '', partition: undefined, key: null, value: null, headers: NO_HEADERS, timestamp: 0, fixed: 0 };
  /** The producer id and epoch batches are stamped with; undefined before InitProducer answered, and after a reset. */
  #identity: ProducerIdentity | undefined;
  /** The InitProducer on its way, if any. */
  #initializing: Promise<ProducerIdentity> | undefined;
  /** #dispatch is waiting for an identity (and dispatches again once it has one). */
  #awaitingIdentity = false;
  /** Counts identity changes: each partition's sequence starts at 0 again in a new generation. */
  #generation = 0;
  /** Set once the broker fenced this producer (PRODUCER_FENCED): everything fails with it. */
  #fatal: SluiceError | undefined;
  /** The transaction `transaction()` runs now; a transactional producer's sends belong to it. */
  #txn: Transaction | undefined;
  /** The end of the chain of transactions (and initTransactions calls): one runs at a time. */
  #txnTail: Promise<void> = Promise.resolve();
  readonly #host: TransactionHost;

  constructor(connection: Connection, options: ProducerOptions = {}) {
    this.#connection = connection;
    this.#config = parseProducerOptions(options);
    this.#requestOptions = this.#config.requestTimeoutMs === undefined ? {} : { timeoutMs: this.#config.requestTimeoutMs };
    this.#partitionCounts = new PartitionCounts(connection, { maxAgeMs: this.#config.metadataMaxAgeMs, retries: this.#config.retries, request: this.#requestOptions });
    this.#host = {
      connection,
      transactionalId: this.#config.transactionalId ?? '',
      requestOptions: this.#requestOptions,
      retryBudgetMs: this.#retryBudgetMs(),
      identity: () => this.#ensureIdentity(),
      adopt: (identity) => this.#adopt(identity),
      forget: () => this.#forget(),
      fence: (error) => this.#fence(error),
      fatal: () => this.#fatal,
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
    return this.#identity;
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
      if (this.#fatal !== undefined) throw this.#fatal;
      if (this.#closed) throw new SluiceError('CLIENT_CLOSED', 'producer is closed');
      this.#forget();
      return this.#ensureIdentity();
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
      return Promise.reject(this.#fatal ?? new SluiceError('INVALID_TXN_STATE', 'a transactional producer sends only inside producer.transaction()'));
    }
    return txn.send(message, options);
  }

  #send(message: ProducerMessage, options?: { signal?: AbortSignal }): Promise<RecordMetadata> {
    const p = this.#prepared;
    try {
      if (this.#fatal !== undefined) throw this.#fatal;
      // A running transaction may still send after close(): close() waits for it to end.
      if (this.#closed && this.#txn === undefined) throw new SluiceError('CLIENT_CLOSED', 'producer is closed');
      this.#prepare(message, p);
    } catch (err) {
      return Promise.reject(err);
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const promise = new Promise<RecordMetadata>(capture);
    const resolve = capturedResolve!;
    const reject = capturedReject!;
    // Fast path: nothing waits ahead of this send, the partition is known and there is room.
    if (this.#intakeHead === this.#intake.length && (this.#buffered === 0 || this.#buffered + p.fixed + RECORD_FIXED_OVERHEAD <= this.#config.maxBufferedBytes)) {
      const topic = this.#topicQueues(p.topic);
      let count: number | undefined;
      if (p.partition === undefined) {
        const known = this.#partitionCounts.get(p.topic, sendClock());
        if (typeof known === 'number') count = known;
      }
      if (p.partition !== undefined || count !== undefined) {
        this.#append(topic, count, p.partition, p.key, p.value, p.headers, p.timestamp, p.fixed, resolve);
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
    const batches: Batch[] = [];
    for (const topic of this.#topics.values()) {
      for (const queue of topic.partitions.values()) {
        if (queue.inFlight !== undefined) batches.push(queue.inFlight);
        batches.push(...queue.sealed);
        if (queue.open !== undefined) batches.push(queue.open);
      }
    }
    if (sends.length === 0 && batches.length === 0) return;
    this.#flushes++;
    try {
      for (const queue of this.#lingering) {
        if (queue.open === undefined) continue;
        queue.open.deadline = 0;
        if (queue.inFlight === undefined) this.#ready.add(queue);
      }
      this.#lingering.clear();
      this.#dispatch();
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
      this.#flushes--;
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
    this.#lingerTimer?.();
    this.#lingerTimer = undefined;
    clearTimeout(this.#retryTimer);
  }

  /** Checks a message and encodes its parts into `out`; throws what send() rejects with. */
  #prepare(m: ProducerMessage, out: Prepared): void {
    if (typeof m !== 'object' || m === null) throw new SluiceError('INVALID_RECORD', 'a message must be an object');
    const { topic, partition, key, headers } = m;
    if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) {
      throw new SluiceError('INVALID_TOPIC', `topic must be a string of 1 to ${MAX_TOPIC_LENGTH} characters, got ${typeof topic === 'string' ? `${topic.length} characters` : typeof topic}`);
    }
    if (partition !== undefined && (!Number.isInteger(partition) || partition < 0 || partition > 0x7fffffff)) {
      throw new SluiceError('PARTITION_NOT_FOUND', `partition must be a non-negative integer, got ${String(partition)}`, { details: { topic, partition } });
    }
    let keyBytes: Buffer | null;
    if (key === undefined || key === null) keyBytes = null;
    else if (Buffer.isBuffer(key)) keyBytes = key;
    else if (typeof key === 'string') keyBytes = Buffer.from(key, 'utf8');
    else if ((key as unknown) instanceof Uint8Array) keyBytes = Buffer.from(key as Uint8Array);
    else throw new SluiceError('INVALID_RECORD', 'key must be a string, a Buffer or null');
    let timestamp = m.timestamp;
    if (timestamp === undefined) timestamp = sendClock();
    else if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new SluiceError('INVALID_RECORD', `timestamp must be a non-negative integer (ms), got ${String(timestamp)}`);

    let value: RecordValue;
    let contentType: string | undefined;
    const v = m.value;
    if (Buffer.isBuffer(v)) value = v;
    else if (v === null || v === undefined) value = null;
    else if (typeof v === 'string') {
      value = v;
      contentType = TEXT;
    } else {
      try {
        const encoded = encodeValue(v);
        value = encoded.value;
        contentType = encoded.contentType;
      } catch (err) {
        throw new SluiceError('INVALID_RECORD', `value could not be encoded: ${(err as Error).message}`, { cause: err });
      }
    }

    let flat: FlatHeaders = NO_HEADERS;
    if (headers !== undefined) {
      if (typeof headers !== 'object' || headers === null) throw new SluiceError('INVALID_RECORD', 'headers must be an object');
      const keys = Object.keys(headers);
      if (keys.length > 0) {
        const list: (string | Buffer)[] = [];
        for (const k of keys) {
          const hv = headers[k];
          if (typeof hv !== 'string' && !(hv instanceof Uint8Array)) throw new SluiceError('INVALID_RECORD', `header ${JSON.stringify(k)} must be a string or a Buffer`);
          list.push(k, hv); // a plain Uint8Array is written as it is, like a Buffer
        }
        flat = list;
      }
    }
    if (contentType !== undefined && (headers === undefined || !(CONTENT_TYPE in headers))) {
      flat = flat === NO_HEADERS ? [CONTENT_TYPE, contentType] : [...flat, CONTENT_TYPE, contentType];
    }

    const fixed = recordFixedSize(keyBytes, value, flat);
    // An upper bound of the record's size, so a batch never exceeds maxBatchBytes.
    if (fixed + RECORD_FIXED_OVERHEAD + BATCH_HEADER_SIZE > this.#maxBatchBytes()) {
      const size = fixed + RECORD_FIXED_OVERHEAD;
      throw new SluiceError('RECORD_TOO_LARGE', `message of about ${size} bytes does not fit a batch of maxBatchBytes ${this.#maxBatchBytes()}`, { details: { size } });
    }
    out.topic = topic;
    out.partition = partition;
    out.key = keyBytes;
    out.value = value;
    out.headers = flat;
    out.timestamp = timestamp;
    out.fixed = fixed;
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
        if (this.#buffered > 0 && this.#buffered + send.fixed + RECORD_FIXED_OVERHEAD > this.#config.maxBufferedBytes) {
          await this.#waitProgress();
          continue;
        }
        this.#shiftIntake();
        send.detach?.();
        send.detach = undefined;
        send.state = 'batched';
        send.batch = this.#append(this.#topicQueues(send.topic), count, send.partition, send.key, send.value, send.headers, send.timestamp, send.fixed, send.resolve);
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

  /** Writes a record into its partition's open batch (opening one, or sealing a full one first). */
  #append(
    topic: TopicQueues,
    count: number | undefined,
    explicit: number | undefined,
    key: Buffer | null,
    value: RecordValue,
    headers: FlatHeaders,
    timestamp: number,
    fixed: number,
    resolve: Resolve,
  ): Batch {
    let queue = this.#queueFor(topic, this.#choosePartition(topic.topic, explicit, key, count));
    let batch = queue.open;
    if (batch !== undefined) {
      const limit = this.#maxBatchBytes();
      if (batch.builder.size + batch.builder.recordSize(fixed, timestamp) > limit) {
        this.#sealFull(queue);
        // Sealing moved the sticky partition on: a keyless message follows it.
        if (explicit === undefined && key === null && count !== undefined) queue = this.#queueFor(topic, this.#choosePartition(topic.topic, explicit, key, count));
        batch = queue.open;
      }
    }
    if (batch === undefined) batch = this.#openBatch(queue);
    const size = batch.builder.append(key, value, headers, timestamp, fixed);
    batch.timestamps.push(timestamp);
    batch.settlers.push(resolve);
    batch.bytes += size;
    this.#buffered += size;
    return batch;
  }

  #choosePartition(topic: string, explicit: number | undefined, key: Buffer | null, count: number | undefined): number {
    if (explicit !== undefined || count === undefined) return explicit ?? 0;
    return key === null ? this.#sticky.partition(topic, count) : partitionForKey(key, count);
  }

  #topicQueues(topic: string): TopicQueues {
    const last = this.#lastTopic;
    if (last !== undefined && last.topic === topic) return last;
    let queues = this.#topics.get(topic);
    if (queues === undefined) {
      queues = { topic, partitions: new Map(), last: undefined };
      this.#topics.set(topic, queues);
    }
    this.#lastTopic = queues;
    return queues;
  }

  #queueFor(topic: TopicQueues, partition: number): PartitionQueue {
    const last = topic.last;
    if (last !== undefined && last.partition === partition) return last;
    let queue = topic.partitions.get(partition);
    if (queue === undefined) {
      queue = { topic: topic.topic, partition, open: undefined, sealed: [], inFlight: undefined, retryAt: 0, sizeHint: 0, sequence: 0, generation: -1 };
      topic.partitions.set(partition, queue);
    }
    topic.last = queue;
    return queue;
  }

  #openBatch(queue: PartitionQueue): Batch {
    const { lingerMs } = this.#config;
    const due = lingerMs === 0 || this.#flushes > 0;
    const limit = this.#maxBatchBytes();
    // Room for about as much as the last batch held; the builder doubles when that is short.
    const capacity = Math.min(limit, Math.max(4 * KIB, queue.sizeHint + (queue.sizeHint >> 2)));
    const batch: Batch = { queue, builder: new BatchBuilder(capacity), timestamps: [], settlers: [], bytes: 0, deadline: due ? 0 : Date.now() + lingerMs, encoded: undefined, generation: -1, baseSequence: -1, attempts: 0, done: false };
    queue.open = batch;
    if (!due) {
      this.#lingering.add(queue);
      this.#armLinger(batch.deadline);
    } else if (queue.inFlight === undefined && queue.retryAt === 0) {
      this.#ready.add(queue);
      this.#scheduleDispatch();
    }
    // Otherwise the reply to the request in flight (or the retry) sends it.
    return batch;
  }

  /** Closes the open batch of `queue` and encodes it; retries resend the same bytes. */
  #seal(queue: PartitionQueue): Batch {
    const batch = queue.open!;
    queue.open = undefined;
    this.#lingering.delete(queue);
    const count = this.#partitionCounts.known(queue.topic);
    if (count !== undefined) this.#sticky.batchSealed(queue.topic, queue.partition, count);
    // Follows growth at once and shrinks gently, so one small batch between full ones costs little.
    queue.sizeHint = Math.max(batch.builder.size, queue.sizeHint >> 1);
    return batch;
  }

  /**
   * The bytes of a batch going on the wire for the first time: stamped with the producer's id
   * and epoch and its partition's next sequence number. Called in partition order with nothing
   * of the partition in flight, so sequences follow the order batches are written in.
   */
  #encode(batch: Batch): Buffer {
    const identity = this.#identity;
    if (identity === undefined) return batch.builder.build();
    const queue = batch.queue;
    if (queue.generation !== this.#generation) {
      queue.generation = this.#generation;
      queue.sequence = 0;
    }
    const baseSequence = queue.sequence;
    queue.sequence = advanceSequence(baseSequence, batch.builder.count);
    batch.generation = this.#generation;
    batch.baseSequence = baseSequence;
    const { producerId, producerEpoch } = identity;
    return batch.builder.build({ producerId, producerEpoch, baseSequence, transactional: this.#config.transactionalId !== undefined });
  }

  /** The open batch is full: it waits behind whatever the partition has waiting. */
  #sealFull(queue: PartitionQueue): void {
    queue.sealed.push(this.#seal(queue));
    if (queue.inFlight === undefined) {
      this.#ready.add(queue);
      this.#scheduleDispatch();
    }
  }

  /** One timer for all lingering batches, set for the earliest deadline (a flush brings it forward). */
  #armLinger(deadline: number): void {
    if (this.#lingerTimer !== undefined && this.#lingerAt <= deadline) return;
    this.#lingerTimer?.();
    this.#lingerAt = deadline;
    const delay = deadline - Date.now();
    if (delay <= 0) {
      const immediate = setImmediate(() => this.#onLinger());
      this.#lingerTimer = () => clearImmediate(immediate);
    } else {
      const timer = setTimeout(() => this.#onLinger(), delay);
      this.#lingerTimer = () => clearTimeout(timer);
    }
  }

  #onLinger(): void {
    this.#lingerTimer = undefined;
    // Timers may fire a millisecond early by Date.now(); a batch that close is due.
    const due = Date.now() + 1;
    let next = Infinity;
    for (const queue of this.#lingering) {
      const open = queue.open;
      if (open === undefined) this.#lingering.delete(queue);
      else if (this.#flushes > 0 || open.deadline <= due) {
        open.deadline = 0;
        this.#lingering.delete(queue);
        // Busy: the reply to the request in flight sends it.
        if (queue.inFlight === undefined) this.#ready.add(queue);
      } else next = Math.min(next, open.deadline);
    }
    this.#dispatch();
    if (next !== Infinity) this.#armLinger(next);
  }

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    // Coalesces batches that become ready in the same turn into one request.
    setImmediate(this.#runDispatch);
  }

  /** Starts requests while fewer than maxInFlight are out, one batch per ready partition each. */
  #dispatch(): void {
    if (this.#ready.size === 0) return;
    if (this.#config.idempotent && this.#identity === undefined) {
      this.#waitForIdentity();
      return;
    }
    const maxRequestBytes = (this.#connection.server?.limits.maxFrameBytes ?? 8 * 1024 * KIB) - REQUEST_OVERHEAD;
    let now = 0;
    while (this.#inFlight < this.#config.maxInFlight && this.#ready.size > 0) {
      const picked: PartitionQueue[] = [];
      let bytes = 0;
      let nextRetry = Infinity;
      for (const queue of this.#ready) {
        if (queue.retryAt !== 0) {
          if (now === 0) now = Date.now();
          if (queue.retryAt > now) {
            nextRetry = Math.min(nextRetry, queue.retryAt);
            continue;
          }
        }
        const head = queue.sealed[0];
        const size = head !== undefined ? (head.encoded?.length ?? head.builder.size) : queue.open !== undefined && queue.open.deadline === 0 ? queue.open.builder.size : -1;
        if (size < 0) {
          // Nothing to send after all (e.g. its open batch was taken and it has not filled again).
          this.#ready.delete(queue);
          continue;
        }
        if (picked.length > 0 && (bytes + size + ENTRY_OVERHEAD > maxRequestBytes || picked.length >= MAX_ENTRIES)) break;
        picked.push(queue);
        bytes += size + ENTRY_OVERHEAD;
      }
      if (picked.length === 0) {
        if (nextRetry !== Infinity) this.#armRetry(nextRetry - now);
        return;
      }
      const batches: Batch[] = [];
      for (const queue of picked) {
        this.#ready.delete(queue);
        const batch = queue.sealed.length > 0 ? queue.sealed.shift()! : this.#seal(queue);
        batch.encoded ??= this.#encode(batch);
        queue.inFlight = batch;
        batches.push(batch);
      }
      this.#inFlight++;
      void this.#produce(batches);
    }
  }

  #armRetry(delay: number): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#dispatch(), Math.max(0, delay));
  }

  async #produce(batches: Batch[]): Promise<void> {
    let results: readonly ProduceResult[] | undefined;
    let failure: unknown;
    try {
      const entries = new Array<ProduceBatch>(batches.length);
      for (let i = 0; i < batches.length; i++) {
        const b = batches[i]!;
        entries[i] = { topic: b.queue.topic, partition: b.queue.partition, batch: b.encoded! };
      }
      results = (await this.#connection.request('Produce', { batches: entries }, this.#requestOptions)).results;
    } catch (err) {
      failure = err;
    }
    for (let i = 0; i < batches.length; i++) {
      const batch = batches[i]!;
      const queue = batch.queue;
      const r = results?.[i];
      queue.inFlight = undefined;
      if (results === undefined) this.#failed(batch, failure, false);
      else if (r === undefined || r.topic !== queue.topic || r.partition !== queue.partition) {
        this.#failed(batch, new SluiceError('UNKNOWN', `Produce result ${i} does not answer ${queue.topic}/${queue.partition}`), false);
      } else if (r.error !== undefined) this.#failed(batch, fromErrorBody(r.error), true);
      else this.#finish(batch, undefined, r.baseOffset);
      // The open batch filled while this request was out goes now if it is due.
      if (queue.sealed.length > 0 || (queue.open !== undefined && queue.open.deadline === 0)) this.#ready.add(queue);
    }
    this.#inFlight--;
    this.#dispatch();
  }

  /** A batch failed: `answered` when the broker refused it itself (a per-batch error), false when the request got no answer. */
  #failed(batch: Batch, err: unknown, answered: boolean): void {
    const error = toSluiceError(err);
    if (this.#fatal === undefined && error.retriable && batch.attempts < this.#config.retries && this.#connection.state !== 'closed') {
      // Back to the head of its partition: order holds because nothing else of it is in flight.
      batch.queue.sealed.unshift(batch);
      batch.queue.retryAt = Date.now() + retryDelay(batch.attempts);
      batch.attempts++;
      return;
    }
    if (error.code === 'TOPIC_NOT_FOUND' || error.code === 'PARTITION_NOT_FOUND') this.#partitionCounts.forget(batch.queue.topic);
    const transactional = this.#config.transactionalId !== undefined;
    let fence = false;
    if (batch.generation >= 0 && batch.generation === this.#generation && this.#fatal === undefined) {
      const queue = batch.queue;
      if (error.code === 'PRODUCER_FENCED') {
        // A transaction's batch is fenced also when the broker aborted the transaction on its
        // timeout: runTransaction tells the two apart with EndTxn(abort).
        fence = !transactional;
      } else if (answered && NOT_WRITTEN.has(error.code)) {
        // Refused before any of it was written, and the last batch of its partition stamped:
        // its sequence numbers go to the next batch.
        if (queue.generation === batch.generation) queue.sequence = batch.baseSequence;
      } else if (!transactional) {
        // Written or not, nobody knows: a fresh producer id, so that no later batch of the
        // partition is refused for a gap. (A transaction aborts instead; its epoch bump resets.)
        this.#forget();
      }
    }
    this.#finish(batch, error);
    if (fence) this.#fence(error);
  }

  // ---- Identity --------------------------------------------------------------------------------

  /** How long InitProducer, EndTxn and the transaction stagings are retried on retriable errors. */
  #retryBudgetMs(): number {
    return Math.max(this.#config.requestTimeoutMs ?? 30_000, 30_000);
  }

  /** The current identity, after an InitProducer if there is none (one at a time; retried on retriable errors). */
  #ensureIdentity(): Promise<ProducerIdentity> {
    if (this.#fatal !== undefined) return Promise.reject(this.#fatal);
    if (this.#identity !== undefined) return Promise.resolve(this.#identity);
    this.#initializing ??= this.#initProducer().finally(() => {
      this.#initializing = undefined;
    });
    return this.#initializing;
  }

  async #initProducer(): Promise<ProducerIdentity> {
    const { transactionalId, transactionTimeoutMs } = this.#config;
    const body = transactionalId === undefined ? {} : { transactionalId, transactionTimeoutMs };
    const identity = await retrying(this.#connection, this.#retryBudgetMs(), () => this.#connection.request('InitProducer', body, this.#requestOptions));
    if (this.#fatal !== undefined) throw this.#fatal;
    this.#adopt(identity);
    return identity;
  }

  /** Batches are waiting and there is no identity to stamp them with: get one, then dispatch. */
  #waitForIdentity(): void {
    if (this.#awaitingIdentity || this.#fatal !== undefined) return;
    this.#awaitingIdentity = true;
    this.#ensureIdentity().then(
      () => {
        this.#awaitingIdentity = false;
        this.#dispatch();
      },
      (err: unknown) => {
        this.#awaitingIdentity = false;
        const error = toSluiceError(err);
        if (error.code === 'PRODUCER_FENCED') this.#fence(error);
        // No identity, no idempotent batch: what waits fails (later sends try InitProducer again).
        else this.#failWaiting(error);
      },
    );
  }

  /** A new producer id or epoch (InitProducer, EndTxn): every partition's sequence starts at 0 again. */
  #adopt(identity: ProducerIdentity): void {
    this.#identity = { producerId: identity.producerId, producerEpoch: identity.producerEpoch };
    this.#generation++;
  }

  /** The identity can no longer be trusted: the next batch (or transaction) gets a new one first. */
  #forget(): void {
    if (this.#identity === undefined) return;
    this.#identity = undefined;
    this.#generation++;
  }

  /** PRODUCER_FENCED: a newer instance took over. The producer closes; everything not yet written fails with `error`. */
  #fence(error: SluiceError): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    this.#closed = true;
    this.#failWaiting(error);
  }

  /** Fails every send not on the wire: queued ones and every batch but those in flight. */
  #failWaiting(error: SluiceError): void {
    for (let i = this.#intakeHead; i < this.#intake.length; i++) this.#settleQueued(this.#intake[i]!, error);
    for (const topic of this.#topics.values()) {
      for (const queue of topic.partitions.values()) {
        this.#ready.delete(queue);
        this.#lingering.delete(queue);
        for (const batch of queue.sealed.splice(0)) this.#finish(batch, error);
        const open = queue.open;
        queue.open = undefined;
        if (open !== undefined) this.#finish(open, error);
      }
    }
  }

  /** Settles every send of a batch: offsets on success, `error` otherwise; frees its bytes. */
  #finish(batch: Batch, error: unknown, baseOffset = -1): void {
    const queue = batch.queue;
    queue.retryAt = 0;
    batch.done = true;
    this.#buffered -= batch.bytes;
    const { settlers, timestamps } = batch;
    const n = timestamps.length;
    if (error === undefined) {
      const { topic, partition } = queue;
      for (let i = 0; i < n; i++) settlers[i]!({ topic, partition, offset: baseOffset + i, timestamp: timestamps[i]! });
    } else {
      // Keeping only each send's resolve halves what a pending send holds; resolving with a
      // thenable that rejects rejects the send with `error` (one microtask later).
      const rejected = rejection(error);
      for (let i = 0; i < n; i++) settlers[i]!(rejected);
    }
    this.#notifyProgress();
  }

  /** The batch limit, lowered when the broker's frame limit is smaller than the configured batch. */
  #maxBatchBytes(): number {
    const limits = this.#connection.server?.limits;
    if (limits === undefined) return this.#config.maxBatchBytes;
    return Math.min(this.#config.maxBatchBytes, limits.maxBatchBytes, limits.maxFrameBytes - REQUEST_OVERHEAD - ENTRY_OVERHEAD);
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

function toSluiceError(err: unknown): SluiceError {
  return isSluiceError(err) ? err : new SluiceError('UNKNOWN', String(err), { cause: err });
}

/** A thenable that rejects with `error`: resolving a promise with it rejects that promise. */
function rejection(error: unknown): PromiseLike<never> {
  const thenable = {
    then(_onFulfilled: unknown, onRejected?: ((reason: unknown) => unknown) | null): PromiseLike<never> {
      onRejected?.(error);
      return thenable;
    },
  };
  return thenable as PromiseLike<never>;
}

function abortError(signal: AbortSignal): SluiceError {
  return new SluiceError('ABORTED', 'send aborted before the message was batched', { cause: signal.reason });
}
