import type { ProducerStore } from './producer-store.js';
import type { SubscriptionStore } from './subscription-store.js';
import type { TransactionStore } from './transaction-store.js';

/**
 * The metadata store: the narrow, synchronous interface the broker core uses for everything it
 * keeps outside the logs (topics and committed group offsets today). The SQLite implementation
 * lives in sqlite-meta-store.ts; test/unit/broker/meta/meta-store.test.ts is the contract every
 * implementation must pass.
 *
 * Every method either applies all of its change or none of it (one transaction), and a method
 * that returned has made its change durable (`synchronous=FULL`): a committed offset is a promise.
 */

/** Per-topic settings. `null` means "not set on the topic": the broker's default applies. */
export interface TopicConfig {
  retentionMs: number | null;
  retentionBytes: number | null;
  segmentBytes: number | null;
}

export interface TopicRecord {
  name: string;
  partitions: number;
  config: TopicConfig;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

export interface CommittedOffset {
  groupId: string;
  topic: string;
  partition: number;
  /** The next offset the group will read (Kafka's convention), not the last one it processed. */
  offset: number;
  metadata: string | null;
  committedAt: number;
}

export interface OffsetToCommit {
  topic: string;
  partition: number;
  offset: number;
  metadata?: string | null;
}

export interface MetaStore {
  /** Push subscriptions and their per-partition delivery state. */
  readonly subscriptions: SubscriptionStore;
  /** Producer ids and transactional ids (idempotent and transactional produce). */
  readonly producers: ProducerStore;
  /** The transaction coordinator's record of each transactional id's transaction. */
  readonly transactions: TransactionStore;
  /** Throws TOPIC_ALREADY_EXISTS, INVALID_TOPIC or INVALID_CONFIG. */
  createTopic(topic: TopicRecord): void;
  getTopic(name: string): TopicRecord | undefined;
  /** Sorted by name. */
  listTopics(): TopicRecord[];
  /** Deletes the topic and every offset committed on it; false if there was no such topic. */
  deleteTopic(name: string): boolean;
  /**
   * Writes (or overwrites) the offsets in one transaction. Throws TOPIC_NOT_FOUND or
   * PARTITION_NOT_FOUND (nothing is written) when an entry names a partition that does not
   * exist, INVALID_REQUEST for a malformed entry. `now` defaults to Date.now().
   */
  commitOffsets(groupId: string, offsets: readonly OffsetToCommit[], now?: number): void;
  /** Sorted by topic, then partition. */
  fetchOffsets(groupId: string, topic?: string): CommittedOffset[];
  /** Groups that have at least one committed offset, sorted. */
  listOffsetGroups(): string[];
  /** Returns how many offsets were deleted. */
  deleteGroupOffsets(groupId: string, topic?: string): number;
  /** Idempotent. Every other method throws once the store is closed. */
  close(): void;
}
