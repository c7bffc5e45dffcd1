/**
 * Where a message goes when the caller does not name a partition, and the partition counts
 * that choice needs.
 *
 * Keyed messages hash exactly as Kafka's default partitioner does (murmur2 of the key bytes,
 * sign bit cleared, modulo the partition count), so a key lands on the same partition number in
 * Sluice as in Kafka: data can move between the two, and a later Kafka-wire listener keeps keyed
 * ordering. Keyless messages use a sticky partitioner (Kafka's KIP-480): one partition per topic
 * until the batch for it is sealed, then the next one, so keyless traffic fills a few large
 * batches instead of many small ones and still spreads over all partitions over time.
 */

import type { Connection, RequestOptions } from './connection.js';
import { backoffDelay, sleep } from './internal/backoff.js';
import { SluiceError, hasCode, isSluiceError } from './protocol/errors.js';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/**
 * Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed, returned as a signed int32.
 * Math.imul gives the int32 wrap-around multiplication Java's `int` does; `>>>` is Java's `>>>`.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (SEED ^ length) | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The tail, falling through like Kafka's switch on `length % 4`.
  const rest = length & 3;
  if (rest === 3) h ^= data[whole + 2]! << 16;
  if (rest >= 2) h ^= data[whole + 1]! << 8;
  if (rest >= 1) {
    h ^= data[whole]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's keyed partition choice: `toPositive(murmur2(key)) % partitions`. */
export function partitionForKey(key: Uint8Array, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) throw new RangeError(`partition count must be a positive integer, got ${partitions}`);
  // `& 0x7fffffff` (Kafka's toPositive), not Math.abs: abs(-2^31) stays negative in Java.
  return (murmur2(key) & 0x7fffffff) % partitions;
}

/**
 * The keyless choice. `partition()` keeps answering the same partition for a topic until
 * `batchSealed()` reports that the batch for it was sealed; then it moves on round-robin, from a
 * random start per topic so that many producers do not all begin on partition 0.
 */
export class StickyPartitioner {
  readonly #current = new Map<string, number>();
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  partition(topic: string, partitions: number): number {
    const current = this.#current.get(topic);
    // A topic may be recreated with fewer partitions; a stale choice is dropped, not clamped.
    if (current !== undefined && current < partitions) return current;
    const chosen = Math.floor(this.#random() * partitions);
    this.#current.set(topic, chosen);
    return chosen;
  }

  /** The batch for `partition` of `topic` is full or lingered long enough: stick elsewhere next. */
  batchSealed(topic: string, partition: number, partitions: number): void {
    if (this.#current.get(topic) !== partition) return;
    this.#current.set(topic, (partition + 1) % Math.max(1, partitions));
  }
}

const RETRY_BACKOFF = { initialDelayMs: 100, maxDelayMs: 2_000 };

/** Backoff before retry `attempt` (0-based): full jitter, but never a busy loop. */
export function retryDelay(attempt: number): number {
  return Math.max(10, backoffDelay(attempt, RETRY_BACKOFF));
}

export interface PartitionCountsOptions {
  /** How long a count is trusted; after that it is still served while a refresh runs. */
  readonly maxAgeMs: number;
  /** Lookups retried on retriable errors (e.g. while the connection is re-established). */
  readonly retries: number;
  readonly request: RequestOptions;
}

/**
 * Partition counts per topic, from DescribeTopic, cached. Concurrent lookups of one topic share
 * one request. A stale count keeps being served while it refreshes in the background, so a
 * refresh never stalls sends; TOPIC_NOT_FOUND drops the entry, so a deleted topic's sends fail.
 */
export class PartitionCounts {
  readonly #connection: Connection;
  readonly #options: PartitionCountsOptions;
  readonly #counts = new Map<string, { partitions: number; fetchedAt: number }>();
  readonly #lookups = new Map<string, Promise<number>>();

  constructor(connection: Connection, options: PartitionCountsOptions) {
    this.#connection = connection;
    this.#options = options;
  }

  /**
   * The count if cached (fresh or stale), else a lookup; rejects with the broker's error. `now`
   * (ms since the epoch) lets a caller that already read the clock spare another read.
   */
  get(topic: string, now?: number): number | Promise<number> {
    const known = this.#counts.get(topic);
    if (known === undefined) return this.#lookup(topic);
    if ((now ?? Date.now()) - known.fetchedAt >= this.#options.maxAgeMs) this.#lookup(topic).catch(() => undefined);
    return known.partitions;
  }

  known(topic: string): number | undefined {
    return this.#counts.get(topic)?.partitions;
  }

  /** The broker said the topic or partition is gone: look it up again next time. */
  forget(topic: string): void {
    this.#counts.delete(topic);
  }

  #lookup(topic: string): Promise<number> {
    let lookup = this.#lookups.get(topic);
    if (lookup === undefined) {
      lookup = this.#describe(topic);
      this.#lookups.set(topic, lookup);
      const done = (): void => void this.#lookups.delete(topic);
      lookup.then(done, done);
    }
    return lookup;
  }

  async #describe(topic: string): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { partitions } = await this.#connection.request('DescribeTopic', { topic }, this.#options.request);
        if (partitions.length === 0) throw new SluiceError('PARTITION_NOT_FOUND', `topic ${topic} has no partitions`);
        this.#counts.set(topic, { partitions: partitions.length, fetchedAt: Date.now() });
        return partitions.length;
      } catch (err) {
        if (hasCode(err, 'TOPIC_NOT_FOUND')) this.#counts.delete(topic);
        const retry = isSluiceError(err) && err.retriable && attempt < this.#options.retries && this.#connection.state !== 'closed';
        if (!retry) throw err;
        await sleep(retryDelay(attempt));
      }
    }
  }
}
