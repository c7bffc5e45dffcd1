import type Database from 'better-sqlite3';
import { SluiceError } from '../../client/protocol/errors.js';

/**
 * The schema, as an ordered list of steps: MIGRATIONS[i] takes a database from
 * `PRAGMA user_version = i` to `i + 1`. Released steps are never edited, only appended to,
 * because databases in the field are at every version in between.
 *
 * Tables are STRICT (a column rejects values of the wrong type instead of storing them) and the
 * CHECK constraints repeat the invariants the code validates, so a bug cannot persist nonsense.
 * `partition` and `offset` are SQL keywords, hence the quotes.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: topics and committed group offsets.
  `
  CREATE TABLE topics (
    name            TEXT    NOT NULL PRIMARY KEY,
    partitions      INTEGER NOT NULL CHECK (partitions > 0),
    retention_ms    INTEGER CHECK (retention_ms IS NULL OR retention_ms > 0),
    retention_bytes INTEGER CHECK (retention_bytes IS NULL OR retention_bytes > 0),
    segment_bytes   INTEGER CHECK (segment_bytes IS NULL OR segment_bytes > 0),
    created_at      INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE group_offsets (
    group_id     TEXT    NOT NULL,
    topic        TEXT    NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
    "partition"  INTEGER NOT NULL CHECK ("partition" >= 0),
    "offset"     INTEGER NOT NULL CHECK ("offset" >= 0),
    metadata     TEXT,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, "partition")
  ) STRICT, WITHOUT ROWID;

  -- The foreign key's cascade and topic-scoped deletes look offsets up by topic.
  CREATE INDEX group_offsets_by_topic ON group_offsets (topic);
  `,
  // 2: push subscriptions. Per-partition delivery state is a JSON document (ack floor, settled
  // ranges above it, delivery counts): small, bounded by the unsettled window, and always
  // written whole, so a row is never half updated. dlq_checkpoint is where recovery rescans the
  // dead-letter topic for letters written after the last saved state.
  `
  CREATE TABLE subscriptions (
    name           TEXT    NOT NULL PRIMARY KEY,
    topic          TEXT    NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
    config         TEXT    NOT NULL,
    dlq_checkpoint INTEGER NOT NULL DEFAULT 0 CHECK (dlq_checkpoint >= 0),
    created_at     INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE subscription_partitions (
    subscription TEXT    NOT NULL REFERENCES subscriptions (name) ON DELETE CASCADE,
    "partition"  INTEGER NOT NULL CHECK ("partition" >= 0),
    state        TEXT    NOT NULL,
    PRIMARY KEY (subscription, "partition")
  ) STRICT, WITHOUT ROWID;

  CREATE INDEX subscriptions_by_topic ON subscriptions (topic);
  `,
  // 3: producer ids. producer_ids holds the next id to hand out (one row): every id below it has
  // been handed out, which is how a produce tells an unknown producer id from a known one.
  // transactional_ids maps a transactional id to the producer id it keeps across restarts and
  // its current epoch; state is the transaction coordinator's (Kafka's names: Empty, Ongoing,
  // PrepareCommit, ...), left unchecked here so the coordinator can add states without a
  // table rebuild. timeout_ms is the transaction timeout the producer asked for.
  `
  CREATE TABLE producer_ids (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
    next_id INTEGER NOT NULL CHECK (next_id >= 0)
  ) STRICT;

  INSERT INTO producer_ids (id, next_id) VALUES (0, 0);

  CREATE TABLE transactional_ids (
    transactional_id TEXT    NOT NULL PRIMARY KEY CHECK (length(transactional_id) BETWEEN 1 AND 249),
    producer_id      INTEGER NOT NULL CHECK (producer_id >= 0),
    producer_epoch   INTEGER NOT NULL CHECK (producer_epoch BETWEEN 0 AND 32767),
    timeout_ms       INTEGER NOT NULL CHECK (timeout_ms > 0),
    state            TEXT    NOT NULL,
    updated_at       INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;

  -- A producer id belongs to at most one transactional id; produce looks epochs up by it.
  CREATE UNIQUE INDEX transactional_ids_by_producer ON transactional_ids (producer_id);
  `,
  // 4: the transaction coordinator's record of each transactional id's current transaction
  // (broker/txn/coordinator.ts). Its state stays in transactional_ids.state, next to the producer
  // id and epoch every change is compare-and-set against; this row holds the rest: the partitions
  // the transaction wrote to (each added here before its first batch is appended, so a crash can
  // never leave a transactional batch in a partition nobody knows to mark), the staged group
  // offsets and push acks (JSON, applied only at commit), when it began (for the timeout), and
  // the producer id and epoch of the last transaction that completed (so a retried EndTxn of it
  // is answered rather than fenced). A transactional id without a row has no transaction.
  `
  CREATE TABLE transactions (
    transactional_id    TEXT    NOT NULL PRIMARY KEY REFERENCES transactional_ids (transactional_id) ON DELETE CASCADE,
    partitions          TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(partitions) AND json_type(partitions) = 'array'),
    group_offsets       TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(group_offsets) AND json_type(group_offsets) = 'array'),
    push_acks           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(push_acks) AND json_type(push_acks) = 'array'),
    started_at          INTEGER,
    last_producer_id    INTEGER CHECK (last_producer_id IS NULL OR last_producer_id >= 0),
    last_producer_epoch INTEGER CHECK (last_producer_epoch IS NULL OR last_producer_epoch BETWEEN 0 AND 32767)
  ) STRICT, WITHOUT ROWID;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings `db` to SCHEMA_VERSION in one IMMEDIATE transaction (the write lock is taken before
 * user_version is read, so two processes opening the same file cannot both migrate). Refuses,
 * with INVALID_CONFIG, a database written by a newer Sluice: its schema may mean things this
 * code does not know, and writing to it could corrupt it.
 */
export function migrate(db: Database.Database, migrations: readonly string[] = MIGRATIONS): void {
  const target = migrations.length;
  db.transaction(() => {
    const current = db.pragma('user_version', { simple: true });
    if (typeof current !== 'number' || !Number.isInteger(current) || current < 0) {
      throw new SluiceError('INVALID_CONFIG', `metadata database has an unreadable schema version: ${String(current)}`);
    }
    if (current > target) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `metadata database ${db.name} has schema version ${current}, but this Sluice only knows versions up to ` +
          `${target}; it was written by a newer Sluice. Upgrade Sluice or point it at another data directory.`,
        { details: { schemaVersion: current, supportedVersion: target } },
      );
    }
    for (let version = current; version < target; version++) {
      db.exec(migrations[version] as string);
    }
    // user_version lives in the database header, which is written inside this transaction.
    if (current !== target) db.pragma(`user_version = ${target}`);
  }).immediate();
}
