import type { Connection, RequestOptions } from './connection.js';
import { deferred, type Deferred } from './internal/deferred.js';
import { PartitionCounts, StickyPartitioner, partitionForKey, retryDelay } from './partitioner.js';
import { SluiceError, isSluiceError } from './protocol/errors.js';
import { MAX_TOPIC_LENGTH } from './protocol/messages/common.js';
import { fromErrorBody } from './protocol/messages/error.js';
import type { ProduceResult } from './protocol/messages/produce.js';
import { BATCH_HEADER_SIZE, encodeRecordBatch, type RecordInput } from './protocol/record-batch.js';
import { toRecordInput, type MessageHeaders } from './value-codec.js';

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
}

export type ProducerConfig = Readonly<Required<Omit<ProducerOptions, 'requestTimeoutMs'>> & { requestTimeoutMs: number | undefined }>;

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

const DEFAULTS = { lingerMs: 5, maxBatchBytes: 512 * KIB, maxInFlight: 5, retries: 5, metadataMaxAgeMs: 30_000, maxBufferedBytes: 32 * 1024 * KIB };

/** Parses producer options once: unknown keys and bad values are INVALID_CONFIG naming the option. */
export function parseProducerOptions(options: ProducerOptions = {}): ProducerConfig {
  if (typeof options !== 'object' || options === null) throw new SluiceError('INVALID_CONFIG', 'producer options must be an object');
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(key in DEFAULTS) && key !== 'requestTimeoutMs') throw new SluiceError('INVALID_CONFIG', `unknown producer option ${JSON.stringify(key)}`, { details: { option: key } });
  }
  const maxBatchBytes = intOption(o, 'maxBatchBytes', KIB, BROKER_MAX_BATCH_BYTES);
  return Object.freeze({
    lingerMs: intOption(o, 'lingerMs', 0, 60_000),
    maxBatchBytes,
    maxInFlight: intOption(o, 'maxInFlight', 1, 1_024),
    retries: intOption(o, 'retries', 0, 1_000),
    requestTimeoutMs: o['requestTimeoutMs'] === undefined ? undefined : intOption(o, 'requestTimeoutMs', 1, 3_600_000),
    metadataMaxAgeMs: intOption(o, 'metadataMaxAgeMs', 0, 86_400_000),
    maxBufferedBytes: intOption(o, 'maxBufferedBytes', maxBatchBytes, 2 ** 31),
  });
}

function intOption(o: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = o[key] ?? DEFAULTS[key as keyof typeof DEFAULTS];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new SluiceError('INVALID_CONFIG', `producer option ${key} must be an integer in [${min}, ${max}], got ${String(v)}`, { details: { option: key } });
  }
  return v;
}

interface PendingSend {
  readonly topic: string;
  readonly partition: number | undefined;
  readonly key: Buffer | null;
  readonly record: RecordInput;
  readonly timestamp: number;
  /** An upper bound of the record's encoded size, for batch sealing and the buffer cap. */
  readonly size: number;
  readonly result: Deferred<RecordMetadata>;
  /** Waiting for metadata or buffer room (abortable), then in a batch, then settled. */
  state: 'queued' | 'batched' | 'settled';
  detach: (() => void) | undefined;
}

interface Batch {
  readonly queue: PartitionQueue;
  readonly sends: PendingSend[];
  bytes: number;
  deadline: number;
  encoded: Buffer | undefined;
  attempts: number;
}

/** One topic-partition: the batch being filled, sealed batches in order, and whether one is on the wire. */
interface PartitionQueue {
  readonly topic: string;
  readonly partition: number;
  open: Batch | undefined;
  readonly sealed: Batch[];
  busy: boolean;
  retryAt: number;
}

/**
 * Batches messages per topic-partition and sends them in Produce requests.
 *
 * Pipeline: `send()` -> intake queue (FIFO: waits for partition counts and buffer room, so calls
 * keep their order) -> per-partition open batch (sealed when full or after lingerMs) -> sealed
 * queue -> Produce requests (several partitions each, at most maxInFlight at once).
 *
 * Ordering rule: a partition never has more than one request in flight. A failed batch that is
 * retried goes back to the head of its partition's queue, so retries cannot reorder a
 * partition. (Kafka's max.in.flight=1 per partition, applied per partition rather than per
 * connection so that other partitions keep flowing.)
 *
 * Delivery is at-least-once: without idempotence (producer ids and sequence numbers, a later
 * issue) a batch that was written but whose reply was lost, e.g. to a broker crash, is written
 * again when it is retried. Consumers see a duplicate, never a gap.
 */
export class Producer {
  readonly #connection: Connection;
  readonly #config: ProducerConfig;
  readonly #requestOptions: RequestOptions;
  readonly #sticky = new StickyPartitioner();
  readonly #partitionCounts: PartitionCounts;
  readonly #queues = new Map<string, PartitionQueue>();
  readonly #unsettled = new Set<PendingSend>();
  /** Queues whose open batch is lingering. */
  readonly #lingering = new Set<PartitionQueue>();
  /** Queues with a sealed batch and no request in flight. */
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

  constructor(connection: Connection, options: ProducerOptions = {}) {
    this.#connection = connection;
    this.#config = parseProducerOptions(options);
    this.#requestOptions = this.#config.requestTimeoutMs === undefined ? {} : { timeoutMs: this.#config.requestTimeoutMs };
    this.#partitionCounts = new PartitionCounts(connection, { maxAgeMs: this.#config.metadataMaxAgeMs, retries: this.#config.retries, request: this.#requestOptions });
  }

  get config(): ProducerConfig {
    return this.#config;
  }

  /**
   * Resolves once the broker has acknowledged the message (durably, under its fsync mode). The
   * signal cancels a send still waiting for metadata or buffer room: it is then never written.
   * Once the message is in a batch the signal is ignored and the promise reports the outcome.
   */
  send(message: ProducerMessage, options: { signal?: AbortSignal } = {}): Promise<RecordMetadata> {
    let send: PendingSend;
    try {
      if (this.#closed) throw new SluiceError('CLIENT_CLOSED', 'producer is closed');
      send = this.#prepare(message);
    } catch (err) {
      return Promise.reject(err);
    }
    const { signal } = options;
    if (signal !== undefined) {
      if (signal.aborted) return Promise.reject(abortError(signal));
      const onAbort = (): void => {
        if (send.state === 'queued') this.#settle(send, abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      send.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#unsettled.add(send);
    this.#intake.push(send);
    void this.#pump();
    return send.result.promise;
  }

  /** Sends all, in order; rejects with the first failure (the others may still be written). */
  sendMany(messages: readonly ProducerMessage[]): Promise<RecordMetadata[]> {
    return Promise.all(messages.map((m) => this.send(m)));
  }

  /** Sends everything batched now, without lingering, and waits until every earlier send settled. */
  async flush(): Promise<void> {
    const snapshot = [...this.#unsettled];
    if (snapshot.length === 0) return;
    this.#flushes++;
    try {
      for (const queue of this.#lingering) this.#seal(queue);
      this.#dispatch();
      for (let i = 0; i < snapshot.length; ) {
        if (snapshot[i]!.state === 'settled') i++;
        else await this.#waitProgress();
      }
    } finally {
      this.#flushes--;
    }
  }

  /** Refuses further sends, then flushes. Does not close the connection, which it does not own. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    this.#lingerTimer?.();
    this.#lingerTimer = undefined;
    clearTimeout(this.#retryTimer);
  }

  #prepare(m: ProducerMessage): PendingSend {
    if (typeof m !== 'object' || m === null) throw new SluiceError('INVALID_RECORD', 'a message must be an object');
    const { topic, partition, key, headers } = m;
    if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) {
      throw new SluiceError('INVALID_TOPIC', `topic must be a string of 1 to ${MAX_TOPIC_LENGTH} characters, got ${typeof topic === 'string' ? `${topic.length} characters` : typeof topic}`);
    }
    if (partition !== undefined && (!Number.isInteger(partition) || partition < 0 || partition > 0x7fffffff)) {
      throw new SluiceError('PARTITION_NOT_FOUND', `partition must be a non-negative integer, got ${String(partition)}`, { details: { topic, partition } });
    }
    if (key !== undefined && key !== null && typeof key !== 'string' && !(key instanceof Uint8Array)) throw new SluiceError('INVALID_RECORD', 'key must be a string, a Buffer or null');
    if (headers !== undefined && (typeof headers !== 'object' || headers === null)) throw new SluiceError('INVALID_RECORD', 'headers must be an object');
    for (const [k, v] of Object.entries(headers ?? {})) {
      if (typeof v !== 'string' && !(v instanceof Uint8Array)) throw new SluiceError('INVALID_RECORD', `header ${JSON.stringify(k)} must be a string or a Buffer`);
    }
    const timestamp = m.timestamp ?? Date.now();
    if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new SluiceError('INVALID_RECORD', `timestamp must be a non-negative integer (ms), got ${String(timestamp)}`);
    let record: RecordInput;
    try {
      record = toRecordInput(key instanceof Uint8Array && !Buffer.isBuffer(key) ? Buffer.from(key) : key, m.value, headers, timestamp);
    } catch (err) {
      throw new SluiceError('INVALID_RECORD', `value could not be encoded: ${(err as Error).message}`, { cause: err });
    }
    const keyBytes = record.key ?? null;
    // An upper bound, so a sealed batch never exceeds maxBatchBytes: per record six varints at
    // 5 bytes, a varlong at 10 and the attributes byte; per header two varints.
    let size = 36 + (keyBytes?.length ?? 0) + (record.value?.length ?? 0);
    for (const h of record.headers ?? []) size += 10 + Buffer.byteLength(h.key) + h.value.length;
    if (size + BATCH_HEADER_SIZE > this.#maxBatchBytes()) {
      throw new SluiceError('RECORD_TOO_LARGE', `message of about ${size} bytes does not fit a batch of maxBatchBytes ${this.#maxBatchBytes()}`, { details: { size } });
    }
    return { topic, partition, key: keyBytes, record, timestamp, size, result: deferred(), state: 'queued', detach: undefined };
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
          const known = this.#partitionCounts.get(send.topic);
          if (typeof known !== 'number') {
            // Re-check from the top afterwards: the send may have been aborted meanwhile.
            await known.catch((err: unknown) => this.#rejectTopic(send.topic, err));
            continue;
          }
          count = known;
        }
        if (this.#buffered > 0 && this.#buffered + send.size > this.#config.maxBufferedBytes) {
          await this.#waitProgress();
          continue;
        }
        this.#shiftIntake();
        try {
          this.#append(send, count);
        } catch (err) {
          this.#settle(send, err);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** The topic's partition count could not be had: every queued send that needs it gets the same answer. */
  #rejectTopic(topic: string, err: unknown): void {
    for (let i = this.#intakeHead; i < this.#intake.length; i++) {
      const send = this.#intake[i]!;
      if (send.topic === topic && send.partition === undefined) this.#settle(send, err);
    }
  }

  #shiftIntake(): void {
    this.#intakeHead++;
    if (this.#intakeHead > 1_024 && this.#intakeHead * 2 > this.#intake.length) {
      this.#intake = this.#intake.slice(this.#intakeHead);
      this.#intakeHead = 0;
    }
  }

  #append(send: PendingSend, count: number | undefined): void {
    send.detach?.();
    send.state = 'batched';
    const limit = this.#maxBatchBytes();
    let queue = this.#queueFor(send.topic, this.#choosePartition(send, count));
    if (queue.open !== undefined && queue.open.bytes + send.size > limit) {
      this.#seal(queue);
      this.#scheduleDispatch();
      // Sealing moved the sticky partition on: a keyless message follows it.
      if (send.partition === undefined && send.key === null) queue = this.#queueFor(send.topic, this.#choosePartition(send, count));
    }
    let batch = queue.open;
    if (batch === undefined) {
      const deadline = Date.now() + (this.#flushes > 0 ? 0 : this.#config.lingerMs);
      batch = { queue, sends: [], bytes: BATCH_HEADER_SIZE, deadline, encoded: undefined, attempts: 0 };
      queue.open = batch;
      this.#lingering.add(queue);
      this.#armLinger(deadline);
    }
    batch.sends.push(send);
    batch.bytes += send.size;
    this.#buffered += send.size;
  }

  #choosePartition(send: PendingSend, count: number | undefined): number {
    if (send.partition !== undefined || count === undefined) return send.partition ?? 0;
    return send.key === null ? this.#sticky.partition(send.topic, count) : partitionForKey(send.key, count);
  }

  #queueFor(topic: string, partition: number): PartitionQueue {
    const id = `${partition}:${topic}`;
    let queue = this.#queues.get(id);
    if (queue === undefined) {
      queue = { topic, partition, open: undefined, sealed: [], busy: false, retryAt: 0 };
      this.#queues.set(id, queue);
    }
    return queue;
  }

  /** Closes the open batch of `queue` and encodes it once; retries resend the same bytes. */
  #seal(queue: PartitionQueue): void {
    const batch = queue.open;
    if (batch === undefined) return;
    queue.open = undefined;
    this.#lingering.delete(queue);
    const count = this.#partitionCounts.known(queue.topic);
    if (count !== undefined) this.#sticky.batchSealed(queue.topic, queue.partition, count);
    try {
      batch.encoded = encodeRecordBatch(batch.sends.map((s) => s.record));
    } catch (err) {
      this.#finish(batch, err);
      return;
    }
    queue.sealed.push(batch);
    if (!queue.busy) this.#ready.add(queue);
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
      const deadline = queue.open?.deadline ?? 0;
      if (this.#flushes > 0 || deadline <= due) this.#seal(queue);
      else next = Math.min(next, deadline);
    }
    this.#dispatch();
    if (next !== Infinity) this.#armLinger(next);
  }

  #scheduleDispatch(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    // Coalesces batches sealed in the same turn into one request.
    setImmediate(() => {
      this.#dispatchScheduled = false;
      this.#dispatch();
    });
  }

  /** Starts requests while fewer than maxInFlight are out, one batch per ready partition each. */
  #dispatch(): void {
    const maxRequestBytes = (this.#connection.server?.limits.maxFrameBytes ?? 8 * 1024 * KIB) - REQUEST_OVERHEAD;
    while (this.#inFlight < this.#config.maxInFlight && this.#ready.size > 0) {
      const now = Date.now();
      const picked: Batch[] = [];
      let bytes = 0;
      let nextRetry = Infinity;
      for (const queue of this.#ready) {
        if (queue.retryAt > now) {
          nextRetry = Math.min(nextRetry, queue.retryAt);
          continue;
        }
        const batch = queue.sealed[0]!;
        const size = batch.encoded!.length + ENTRY_OVERHEAD;
        if (picked.length > 0 && (bytes + size > maxRequestBytes || picked.length >= MAX_ENTRIES)) break;
        picked.push(batch);
        bytes += size;
      }
      if (picked.length === 0) {
        this.#armRetry(nextRetry - now);
        return;
      }
      for (const batch of picked) {
        this.#ready.delete(batch.queue);
        batch.queue.sealed.shift();
        batch.queue.busy = true;
      }
      this.#inFlight++;
      void this.#produce(picked);
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
      const body = { batches: batches.map((b) => ({ topic: b.queue.topic, partition: b.queue.partition, batch: b.encoded! })) };
      results = (await this.#connection.request('Produce', body, this.#requestOptions)).results;
    } catch (err) {
      failure = err;
    }
    batches.forEach((batch, i) => {
      const r = results?.[i];
      batch.queue.busy = false;
      if (results === undefined) this.#failed(batch, failure);
      else if (r === undefined || r.topic !== batch.queue.topic || r.partition !== batch.queue.partition) {
        this.#failed(batch, new SluiceError('UNKNOWN', `Produce result ${i} does not answer ${batch.queue.topic}/${batch.queue.partition}`));
      } else if (r.error !== undefined) this.#failed(batch, fromErrorBody(r.error));
      else this.#finish(batch, undefined, r.baseOffset);
      if (batch.queue.sealed.length > 0) this.#ready.add(batch.queue);
    });
    this.#inFlight--;
    this.#dispatch();
  }

  #failed(batch: Batch, err: unknown): void {
    const error = isSluiceError(err) ? err : new SluiceError('UNKNOWN', String(err), { cause: err });
    if (error.retriable && batch.attempts < this.#config.retries && this.#connection.state !== 'closed') {
      // Back to the head of its partition: order holds because nothing else of it is in flight.
      batch.queue.sealed.unshift(batch);
      batch.queue.retryAt = Date.now() + retryDelay(batch.attempts);
      batch.attempts++;
      return;
    }
    if (error.code === 'TOPIC_NOT_FOUND' || error.code === 'PARTITION_NOT_FOUND') this.#partitionCounts.forget(batch.queue.topic);
    this.#finish(batch, error);
  }

  /** Settles every send of a batch: offsets on success, `error` otherwise; frees its bytes. */
  #finish(batch: Batch, error: unknown, baseOffset = -1): void {
    batch.queue.retryAt = 0;
    batch.sends.forEach((send, i) => {
      this.#buffered -= send.size;
      if (error !== undefined) this.#settle(send, error);
      else this.#settle(send, undefined, { topic: batch.queue.topic, partition: batch.queue.partition, offset: baseOffset + i, timestamp: send.timestamp });
    });
  }

  #settle(send: PendingSend, error: unknown, metadata?: RecordMetadata): void {
    if (send.state === 'settled') return;
    send.state = 'settled';
    send.detach?.();
    this.#unsettled.delete(send);
    if (metadata !== undefined) send.result.resolve(metadata);
    else send.result.reject(error);
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

function abortError(signal: AbortSignal): SluiceError {
  return new SluiceError('ABORTED', 'send aborted before the message was batched', { cause: signal.reason });
}
