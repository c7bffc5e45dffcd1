/**
 * Exactly-once effects outside the broker (docs/semantics.md, "Exactly-once effects in your own
 * database"): the consumer's position is stored in the application's own SQLite database, in
 * the SAME transaction as the writes a message causes. Either both are committed or neither, so
 * after any crash the database says exactly which messages took effect, and a message delivered
 * again (the broker-side commit lagged or was lost, a rebalance, a restart) is recognised by
 * its offset and skipped.
 *
 *   const effects = new SqliteEffects(db, { name: 'billing' });
 *   await effects.resume(consumer);                    // start where the database says
 *   for await (const m of consumer) {
 *     effects.apply(m, (db) => insertInvoice.run(...)); // false: it had taken effect already
 *   }
 *
 * Positions live in one table (default `sluice_positions`): per name, topic and partition, the
 * offset after the last message applied. Offsets only grow within a partition, so "offset below
 * the stored next offset" is exactly "applied before". The SDK does not load better-sqlite3
 * itself: the application passes in its own open database.
 */
import type Database from 'better-sqlite3';
import type { PollConsumer } from './poll-consumer.js';
import { SluiceError } from './protocol/errors.js';

export interface SqliteEffectsOptions {
  /** Whose positions these are (a consumer group name is a good choice); 1 to 255 characters. */
  name: string;
  /** The table positions are kept in, created if missing. Default `sluice_positions`. */
  table?: string;
}

/** What apply() needs of a message: where it is in the log. Message and PushMessage both fit. */
export interface EffectMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

export interface StoredPosition {
  readonly topic: string;
  readonly partition: number;
  /** The offset after the last message applied: where reading continues. */
  readonly offset: number;
}

interface PositionRow {
  topic: string;
  partition: number;
  next_offset: number;
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export class SqliteEffects {
  readonly #db: Database.Database;
  readonly #name: string;
  readonly #select: Database.Statement<[string, string, number], { next_offset: number }>;
  readonly #selectAll: Database.Statement<[string], PositionRow>;
  readonly #selectTopic: Database.Statement<[string, string], PositionRow>;
  readonly #store: Database.Statement<[string, string, number, number]>;
  readonly #applyOne: Database.Transaction<(message: EffectMessage, effect: (db: Database.Database) => unknown) => boolean>;
  readonly #applyMany: Database.Transaction<(messages: readonly EffectMessage[], effect: (db: Database.Database, message: EffectMessage) => unknown) => number>;

  constructor(db: Database.Database, options: SqliteEffectsOptions) {
    const { name, table = 'sluice_positions' } = options ?? ({} as SqliteEffectsOptions);
    if (typeof name !== 'string' || name.length === 0 || name.length > 255) throw new SluiceError('INVALID_CONFIG', 'SqliteEffects option name must be a string of 1 to 255 characters');
    if (typeof table !== 'string' || !TABLE_NAME.test(table)) throw new SluiceError('INVALID_CONFIG', `SqliteEffects option table must be a plain SQL identifier, got ${JSON.stringify(table)}`);
    this.#db = db;
    this.#name = name;
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (
      name        TEXT    NOT NULL,
      topic       TEXT    NOT NULL,
      partition   INTEGER NOT NULL,
      next_offset INTEGER NOT NULL,
      PRIMARY KEY (name, topic, partition)
    ) WITHOUT ROWID`);
    this.#select = db.prepare(`SELECT next_offset FROM ${table} WHERE name = ? AND topic = ? AND partition = ?`);
    this.#selectAll = db.prepare(`SELECT topic, partition, next_offset FROM ${table} WHERE name = ? ORDER BY topic, partition`);
    this.#selectTopic = db.prepare(`SELECT topic, partition, next_offset FROM ${table} WHERE name = ? AND topic = ? ORDER BY partition`);
    this.#store = db.prepare(
      `INSERT INTO ${table} (name, topic, partition, next_offset) VALUES (?, ?, ?, ?)
       ON CONFLICT (name, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`,
    );
    this.#applyOne = db.transaction((message, effect) => this.#applyIn(message, effect));
    this.#applyMany = db.transaction((messages, effect) => {
      let applied = 0;
      for (const m of messages) if (this.#applyIn(m, (d) => effect(d, m))) applied++;
      return applied;
    });
  }

  /**
   * In one SQLite transaction: if `message` took effect already (its offset is below the stored
   * position of its partition), nothing, and returns false; otherwise runs `effect` (your
   * writes, synchronous, on this database) and stores offset + 1, and returns true. If `effect`
   * throws, nothing of it is kept and the error propagates.
   */
  apply(message: EffectMessage, effect: (db: Database.Database) => unknown): boolean {
    checkMessage(message);
    return this.#applyOne.immediate(message, effect);
  }

  /**
   * apply() for several messages in ONE SQLite transaction (one commit, one fsync): each is
   * skipped or applied as by apply(). Returns how many were applied.
   */
  applyAll(messages: readonly EffectMessage[], effect: (db: Database.Database, message: EffectMessage) => unknown): number {
    for (const m of messages) checkMessage(m);
    return this.#applyMany.immediate(messages, effect);
  }

  /** The stored position of a partition (the offset after the last message applied), if any. */
  position(topic: string, partition: number): number | undefined {
    return this.#select.get(this.#name, topic, partition)?.next_offset;
  }

  /** Every stored position, or those of one topic. */
  positions(topic?: string): StoredPosition[] {
    const rows = topic === undefined ? this.#selectAll.all(this.#name) : this.#selectTopic.all(this.#name, topic);
    return rows.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.next_offset }));
  }

  /**
   * Starts the consumer (joins its group) and moves each partition it was given to the stored
   * position, so nothing applied is even fetched again. Returns how many partitions it moved.
   * Correctness does not depend on it (apply() skips whatever comes again, also after a
   * rebalance hands over a partition later); it saves reading the same messages twice.
   */
  async resume(consumer: PollConsumer): Promise<number> {
    await consumer.start();
    let moved = 0;
    for (const { topic, partition } of consumer.assignment()) {
      const offset = this.position(topic, partition);
      if (offset === undefined) continue;
      consumer.seek(topic, partition, offset);
      moved++;
    }
    return moved;
  }

  #applyIn(message: EffectMessage, effect: (db: Database.Database) => unknown): boolean {
    const { topic, partition, offset } = message;
    const stored = this.#select.get(this.#name, topic, partition)?.next_offset;
    if (stored !== undefined && offset < stored) return false;
    const result = effect(this.#db);
    if (typeof (result as { then?: unknown } | null)?.then === 'function') {
      // The SQLite transaction commits when this returns: writes after an await would escape it.
      throw new SluiceError('INVALID_CONFIG', 'a SqliteEffects effect must be synchronous (better-sqlite3 calls), not return a promise');
    }
    this.#store.run(this.#name, topic, partition, offset + 1);
    return true;
  }
}

function checkMessage(m: EffectMessage): void {
  if (typeof m !== 'object' || m === null || typeof m.topic !== 'string' || !Number.isSafeInteger(m.partition) || !Number.isSafeInteger(m.offset) || m.offset < 0 || m.partition < 0) {
    throw new SluiceError('INVALID_CONFIG', 'SqliteEffects needs a message with topic, partition and offset');
  }
}
