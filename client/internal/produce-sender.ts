import type { Connection, RequestOptions } from '../connection.js';
import { StickyPartitioner, partitionForKey, retryDelay, type PartitionCounts } from '../partitioner.js';
import { SluiceError } from '../protocol/errors.js';
import { fromErrorBody } from '../protocol/messages/error.js';
import type { ProduceBatch, ProduceResult } from '../protocol/messages/produce.js';
import { BatchBuilder, type FlatHeaders, type RecordValue } from './accumulator.js';
import { rejection, toSluiceError, type Batch, type PartitionQueue, type Resolve, type TopicQueues } from './produce-batch.js';
import type { ProducerIdentityKeeper } from './producer-identity.js';
import { ENTRY_OVERHEAD, KIB, MAX_ENTRIES, REQUEST_OVERHEAD, type ProducerConfig } from './producer-options.js';

/** What the sender needs of its producer. */
export interface SenderHost {
  /** PRODUCER_FENCED: closes the producer and fails everything pending. */
  fence(error: SluiceError): void;
  /** Fails every send not on the wire. */
  failWaiting(error: SluiceError): void;
  /** Bytes were freed or a send settled. */
  notifyProgress(): void;
}

/**
 * The producer's per-partition queues and what sends them (see Producer for the pipeline and
 * the ordering rule): open and sealed batches, the linger timer, Produce requests (at most
 * maxInFlight, one per partition at a time) and retries. Batches are stamped with the producer
 * id, epoch and sequence numbers (ProducerIdentityKeeper.encode) as they first go on the wire.
 */
export class ProduceSender {
  readonly #connection: Connection;
  readonly #config: ProducerConfig;
  readonly #requestOptions: RequestOptions;
  readonly #partitionCounts: PartitionCounts;
  readonly #identities: ProducerIdentityKeeper;
  readonly #host: SenderHost;
  readonly #sticky = new StickyPartitioner();
  readonly #topics = new Map<string, TopicQueues>();
  #lastTopic: TopicQueues | undefined;
  /** Queues whose open batch is not due yet. */
  readonly #lingering = new Set<PartitionQueue>();
  /** Queues with no request in flight and a batch to send (a waiting one or a due open one). */
  readonly #ready = new Set<PartitionQueue>();
  #buffered = 0;
  #inFlight = 0;
  /** Flushes under way (Producer.flush): while any runs, batches are due at once. */
  flushes = 0;
  /** Cancels the linger timer, which fires at #lingerAt. */
  #lingerTimer: (() => void) | undefined;
  #lingerAt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #dispatchScheduled = false;
  readonly #runDispatch = (): void => {
    this.#dispatchScheduled = false;
    this.#dispatch();
  };
  /** #dispatch is waiting for an identity (and dispatches again once it has one). */
  #awaitingIdentity = false;

  constructor(connection: Connection, config: ProducerConfig, requestOptions: RequestOptions, partitionCounts: PartitionCounts, identities: ProducerIdentityKeeper, host: SenderHost) {
    this.#connection = connection;
    this.#config = config;
    this.#requestOptions = requestOptions;
    this.#partitionCounts = partitionCounts;
    this.#identities = identities;
    this.#host = host;
  }

  /** Bytes of records batched or in flight, as counted against maxBufferedBytes. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Every batch not yet settled: in flight, sealed, or open. */
  pendingBatches(): Batch[] {
    const batches: Batch[] = [];
    for (const topic of this.#topics.values()) {
      for (const queue of topic.partitions.values()) {
        if (queue.inFlight !== undefined) batches.push(queue.inFlight);
        batches.push(...queue.sealed);
        if (queue.open !== undefined) batches.push(queue.open);
      }
    }
    return batches;
  }

  /** Makes every lingering batch due now and dispatches (flush). */
  sendLingering(): void {
    for (const queue of this.#lingering) {
      if (queue.open === undefined) continue;
      queue.open.deadline = 0;
      if (queue.inFlight === undefined) this.#ready.add(queue);
    }
    this.#lingering.clear();
    this.#dispatch();
  }

  /** Cancels the linger and retry timers (close). */
  stopTimers(): void {
    this.#lingerTimer?.();
    this.#lingerTimer = undefined;
    clearTimeout(this.#retryTimer);
  }

  /** Fails every batch that is not on the wire with `error`. */
  failUnsent(error: SluiceError): void {
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

  /** Writes a record into its partition's open batch (opening one, or sealing a full one first). */
  append(
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
      const limit = this.maxBatchBytes();
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

  topicQueues(topic: string): TopicQueues {
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
    const due = lingerMs === 0 || this.flushes > 0;
    const limit = this.maxBatchBytes();
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
      else if (this.flushes > 0 || open.deadline <= due) {
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
    if (this.#config.idempotent && this.#identities.current === undefined) {
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
        batch.encoded ??= this.#identities.encode(batch);
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
    if (this.#identities.fatal === undefined && error.retriable && batch.attempts < this.#config.retries && this.#connection.state !== 'closed') {
      // Back to the head of its partition: order holds because nothing else of it is in flight.
      batch.queue.sealed.unshift(batch);
      batch.queue.retryAt = Date.now() + retryDelay(batch.attempts);
      batch.attempts++;
      return;
    }
    if (error.code === 'TOPIC_NOT_FOUND' || error.code === 'PARTITION_NOT_FOUND') this.#partitionCounts.forget(batch.queue.topic);
    const fence = this.#identities.batchFailed(batch, error, answered);
    this.#finish(batch, error);
    if (fence) this.#host.fence(error);
  }

  /** Batches are waiting and there is no identity to stamp them with: get one, then dispatch. */
  #waitForIdentity(): void {
    if (this.#awaitingIdentity || this.#identities.fatal !== undefined) return;
    this.#awaitingIdentity = true;
    this.#identities.ensure().then(
      () => {
        this.#awaitingIdentity = false;
        this.#dispatch();
      },
      (err: unknown) => {
        this.#awaitingIdentity = false;
        const error = toSluiceError(err);
        if (error.code === 'PRODUCER_FENCED') this.#host.fence(error);
        // No identity, no idempotent batch: what waits fails (later sends try InitProducer again).
        else this.#host.failWaiting(error);
      },
    );
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
    this.#host.notifyProgress();
  }

  /** The batch limit, lowered when the broker's frame limit is smaller than the configured batch. */
  maxBatchBytes(): number {
    const limits = this.#connection.server?.limits;
    if (limits === undefined) return this.#config.maxBatchBytes;
    return Math.min(this.#config.maxBatchBytes, limits.maxBatchBytes, limits.maxFrameBytes - REQUEST_OVERHEAD - ENTRY_OVERHEAD);
  }
}
