import Database from 'better-sqlite3';
import { sqliteProducerStore, type ProducerStore } from './producer-store.js';
import { sqliteSubscriptionStore, type SubscriptionStore } from './subscription-store.js';
import { sqliteTransactionStore, type TransactionStore } from './transaction-store.js';
import { SluiceError } from '../../client/protocol/errors.js';
import type { CommittedOffset, MetaStore, OffsetToCommit, TopicRecord } from './meta-store.js';
import { migrate } from './migrations.js';
import { validatePartitionCount, validateTopicConfig, validateTopicName } from './topic-name.js';

/** How long a statement waits for another connection's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5_000;
/** Kafka's offset.metadata.max.bytes default; metadata is a client's note, not a payload. */
export const MAX_OFFSET_METADATA_LENGTH = 4_096;

interface TopicRow {
  name: string;
  partitions: number;
  retention_ms: number | null;
  retention_bytes: number | null;
  segment_bytes: number | null;
  created_at: number;
}

interface OffsetRow {
  group_id: string;
  topic: string;
  partition: number;
  offset: number;
  metadata: string | null;
  committed_at: number;
}

/**
 * Opens (creating if needed) the metadata database at `path`, a file or ':memory:'.
 *
 * Connection settings, and why:
 * - journal_mode=WAL: readers never block the writer, and a commit is one sequential append.
 *   (':memory:' databases cannot use WAL and stay in 'memory' mode.)
 * - synchronous=FULL: in WAL mode, NORMAL may lose the last commits on power loss; a committed
 *   offset is a promise to the consumer, so every commit is fsynced before it returns.
 * - foreign_keys=ON: deleting a topic cascades to its committed offsets (SQLite's default is OFF).
 * - busy_timeout (the `timeout` option): a second process (e.g. a CLI reading the file) waits
 *   for the write lock instead of failing at once with SQLITE_BUSY.
 *
 * The schema is migrated at open (see migrations.ts) and every statement is prepared once here.
 */
export function openMetaStore(path: string): SqliteMetaStore {
  const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db);
    return new SqliteStore(db);
  } catch (err) {
    db.close();
    throw err;
  }
}

/** What the connection actually runs with, read back from SQLite (for tests and diagnostics). */
export interface ConnectionSettings {
  journalMode: string;
  /** 2 is FULL. */
  synchronous: number;
  foreignKeys: boolean;
  busyTimeoutMs: number;
  schemaVersion: number;
}

export interface SqliteMetaStore extends MetaStore {
  connectionSettings(): ConnectionSettings;
}

class SqliteStore implements SqliteMetaStore {
  readonly #db: Database.Database;
  readonly #insertTopic: Database.Statement<[string, number, number | null, number | null, number | null, number]>;
  readonly #selectTopic: Database.Statement<[string], TopicRow>;
  readonly #selectTopics: Database.Statement<[], TopicRow>;
  readonly #deleteTopic: Database.Statement<[string]>;
  readonly #upsertOffset: Database.Statement<[string, string, number, number, string | null, number]>;
  readonly #selectGroupOffsets: Database.Statement<[string], OffsetRow>;
  readonly #selectGroupTopicOffsets: Database.Statement<[string, string], OffsetRow>;
  readonly #selectOffsetGroups: Database.Statement<[], { group_id: string }>;
  readonly #deleteGroupOffsets: Database.Statement<[string]>;
  readonly #deleteGroupTopicOffsets: Database.Statement<[string, string]>;
  readonly #commitTx: (groupId: string, offsets: readonly OffsetToCommit[], now: number) => void;

  readonly subscriptions: SubscriptionStore;
  readonly producers: ProducerStore;
  readonly transactions: TransactionStore;

  constructor(db: Database.Database) {
    this.#db = db;
    this.subscriptions = sqliteSubscriptionStore(db);
    this.producers = sqliteProducerStore(db);
    this.transactions = sqliteTransactionStore(db);
    this.#insertTopic = db.prepare(
      `INSERT INTO topics (name, partitions, retention_ms, retention_bytes, segment_bytes, created_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
    );
    this.#selectTopic = db.prepare(`SELECT * FROM topics WHERE name = ?`);
    this.#selectTopics = db.prepare(`SELECT * FROM topics ORDER BY name`);
    this.#deleteTopic = db.prepare(`DELETE FROM topics WHERE name = ?`);
    this.#upsertOffset = db.prepare(
      `INSERT INTO group_offsets (group_id, topic, "partition", "offset", metadata, committed_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (group_id, topic, "partition")
       DO UPDATE SET "offset" = excluded."offset", metadata = excluded.metadata, committed_at = excluded.committed_at`,
    );
    const offsetColumns = `group_id, topic, "partition" AS "partition", "offset" AS "offset", metadata, committed_at`;
    this.#selectGroupOffsets = db.prepare(
      `SELECT ${offsetColumns} FROM group_offsets WHERE group_id = ? ORDER BY topic, "partition"`,
    );
    this.#selectGroupTopicOffsets = db.prepare(
      `SELECT ${offsetColumns} FROM group_offsets WHERE group_id = ? AND topic = ? ORDER BY "partition"`,
    );
    this.#selectOffsetGroups = db.prepare(`SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id`);
    this.#deleteGroupOffsets = db.prepare(`DELETE FROM group_offsets WHERE group_id = ?`);
    this.#deleteGroupTopicOffsets = db.prepare(`DELETE FROM group_offsets WHERE group_id = ? AND topic = ?`);

    // All entries or none: a consumer that committed several partitions must never find only
    // some of them after a crash. A throw inside rolls the whole transaction back.
    this.#commitTx = db.transaction((groupId: string, offsets: readonly OffsetToCommit[], now: number) => {
      const partitionCounts = new Map<string, number>();
      for (const entry of offsets) {
        let count = partitionCounts.get(entry.topic);
        if (count === undefined) {
          const row = this.#selectTopic.get(entry.topic);
          if (row === undefined) {
            throw new SluiceError('TOPIC_NOT_FOUND', `cannot commit an offset on topic ${JSON.stringify(entry.topic)}: no such topic`, {
              details: { topic: entry.topic },
            });
          }
          count = row.partitions;
          partitionCounts.set(entry.topic, count);
        }
        if (entry.partition >= count) {
          throw new SluiceError(
            'PARTITION_NOT_FOUND',
            `cannot commit an offset on ${entry.topic}/${entry.partition}: the topic has ${count} partitions`,
            { details: { topic: entry.topic, partition: entry.partition } },
          );
        }
        this.#upsertOffset.run(groupId, entry.topic, entry.partition, entry.offset, entry.metadata ?? null, now);
      }
    });
  }

  createTopic(topic: TopicRecord): void {
    const name = validateTopicName(topic.name);
    const partitions = validatePartitionCount(topic.partitions);
    const config = validateTopicConfig(topic.config);
    if (!Number.isSafeInteger(topic.createdAt)) {
      throw new SluiceError('INVALID_CONFIG', `createdAt must be an integer timestamp, got ${String(topic.createdAt)}`);
    }
    const result = this.#insertTopic.run(
      name,
      partitions,
      config.retentionMs,
      config.retentionBytes,
      config.segmentBytes,
      topic.createdAt,
    );
    if (result.changes === 0) {
      throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic ${JSON.stringify(name)} already exists`, { details: { topic: name } });
    }
  }

  getTopic(name: string): TopicRecord | undefined {
    const row = this.#selectTopic.get(name);
    return row === undefined ? undefined : toTopicRecord(row);
  }

  listTopics(): TopicRecord[] {
    return this.#selectTopics.all().map(toTopicRecord);
  }

  deleteTopic(name: string): boolean {
    // ON DELETE CASCADE removes the topic's committed offsets in the same statement.
    return this.#deleteTopic.run(name).changes > 0;
  }

  commitOffsets(groupId: string, offsets: readonly OffsetToCommit[], now: number = Date.now()): void {
    validateGroupId(groupId);
    for (const entry of offsets) validateOffsetEntry(entry);
    if (!Number.isSafeInteger(now)) throw invalidRequest(`commit time must be an integer timestamp, got ${String(now)}`);
    if (offsets.length === 0) return;
    this.#commitTx(groupId, offsets, now);
  }

  fetchOffsets(groupId: string, topic?: string): CommittedOffset[] {
    const rows = topic === undefined ? this.#selectGroupOffsets.all(groupId) : this.#selectGroupTopicOffsets.all(groupId, topic);
    return rows.map((row) => ({
      groupId: row.group_id,
      topic: row.topic,
      partition: row.partition,
      offset: row.offset,
      metadata: row.metadata,
      committedAt: row.committed_at,
    }));
  }

  listOffsetGroups(): string[] {
    return this.#selectOffsetGroups.all().map((row) => row.group_id);
  }

  deleteGroupOffsets(groupId: string, topic?: string): number {
    const result = topic === undefined ? this.#deleteGroupOffsets.run(groupId) : this.#deleteGroupTopicOffsets.run(groupId, topic);
    return result.changes;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  connectionSettings(): ConnectionSettings {
    const read = (name: string): unknown => this.#db.pragma(name, { simple: true });
    return {
      journalMode: String(read('journal_mode')),
      synchronous: Number(read('synchronous')),
      foreignKeys: read('foreign_keys') === 1,
      busyTimeoutMs: Number(read('busy_timeout')),
      schemaVersion: Number(read('user_version')),
    };
  }
}

function toTopicRecord(row: TopicRow): TopicRecord {
  return {
    name: row.name,
    partitions: row.partitions,
    config: { retentionMs: row.retention_ms, retentionBytes: row.retention_bytes, segmentBytes: row.segment_bytes },
    createdAt: row.created_at,
  };
}

function validateGroupId(groupId: unknown): void {
  if (typeof groupId !== 'string' || groupId.length === 0) throw invalidRequest('groupId must be a non-empty string');
}

function validateOffsetEntry(entry: OffsetToCommit): void {
  if (typeof entry !== 'object' || entry === null) throw invalidRequest('each offset to commit must be an object');
  if (typeof entry.topic !== 'string' || entry.topic.length === 0) throw invalidRequest('offset topic must be a non-empty string');
  if (!Number.isInteger(entry.partition) || entry.partition < 0) {
    throw invalidRequest(`partition must be a non-negative integer, got ${String(entry.partition)}`);
  }
  if (!Number.isSafeInteger(entry.offset) || entry.offset < 0) {
    throw invalidRequest(`offset must be a non-negative safe integer, got ${String(entry.offset)}`);
  }
  const metadata = entry.metadata;
  if (metadata !== undefined && metadata !== null) {
    if (typeof metadata !== 'string') throw invalidRequest('offset metadata must be a string or null');
    if (metadata.length > MAX_OFFSET_METADATA_LENGTH) {
      throw invalidRequest(`offset metadata is ${metadata.length} characters; the limit is ${MAX_OFFSET_METADATA_LENGTH}`);
    }
  }
}

function invalidRequest(message: string): SluiceError {
  return new SluiceError('INVALID_REQUEST', message);
}
