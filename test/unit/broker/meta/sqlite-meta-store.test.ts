import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../../client/protocol/errors.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../../../../broker/meta/migrations.js';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';

const NO_CONFIG = { retentionMs: null, retentionBytes: null, segmentBytes: null };

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-meta-'));
  file = join(dir, 'sluice.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Opens the file with a second, raw connection to look at what the store left on disk. */
function inspect<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(file);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

describe('openMetaStore connection settings', () => {
  it('runs the file database with WAL, synchronous=FULL, foreign keys and a busy timeout', () => {
    const store = openMetaStore(file);
    expect(store.connectionSettings()).toEqual({
      journalMode: 'wal',
      synchronous: 2, // FULL
      foreignKeys: true,
      busyTimeoutMs: 5000,
      schemaVersion: SCHEMA_VERSION,
    });
    store.close();
    // WAL is a property of the file: a fresh connection sees it too.
    expect(inspect((db) => db.pragma('journal_mode', { simple: true }))).toBe('wal');
  });

  it('works in memory (where WAL is not available) with the other settings', () => {
    const store = openMetaStore(':memory:');
    expect(store.connectionSettings()).toMatchObject({ journalMode: 'memory', synchronous: 2, foreignKeys: true });
    store.createTopic({ name: 't', partitions: 1, config: NO_CONFIG, createdAt: 0 });
    expect(store.listTopics()).toHaveLength(1);
    store.close();
  });
});

describe('schema and migrations', () => {
  it('brings a fresh database to the latest version', () => {
    openMetaStore(file).close();
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(inspect((db) => db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION);
    const tables = inspect((db) =>
      db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`).pluck().all(),
    );
    expect(tables).toEqual(['group_offsets', 'producer_ids', 'subscription_partitions', 'subscriptions', 'topics', 'transactional_ids', 'transactions']);
  });

  it('reopening is idempotent and keeps the data', () => {
    const first = openMetaStore(file);
    first.createTopic({ name: 'orders', partitions: 2, config: { ...NO_CONFIG, retentionMs: 1000 }, createdAt: 5 });
    first.commitOffsets('g', [{ topic: 'orders', partition: 1, offset: 42, metadata: 'm' }], 7);
    first.close();
    for (let i = 0; i < 3; i++) {
      const again = openMetaStore(file);
      expect(again.getTopic('orders')).toEqual({
        name: 'orders',
        partitions: 2,
        config: { ...NO_CONFIG, retentionMs: 1000 },
        createdAt: 5,
      });
      expect(again.fetchOffsets('g')).toEqual([
        { groupId: 'g', topic: 'orders', partition: 1, offset: 42, metadata: 'm', committedAt: 7 },
      ]);
      again.close();
    }
    expect(inspect((db) => db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION);
  });

  it('refuses a database written by a newer Sluice, without touching it', () => {
    openMetaStore(file).close();
    inspect((db) => db.pragma(`user_version = ${SCHEMA_VERSION + 1}`));
    let thrown: unknown;
    try {
      openMetaStore(file);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SluiceError);
    expect((thrown as SluiceError).code).toBe('INVALID_CONFIG');
    expect((thrown as SluiceError).message).toMatch(new RegExp(`schema version ${SCHEMA_VERSION + 1}.*newer Sluice`));
    expect(inspect((db) => db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION + 1);
  });

  it('applies only the missing steps, in order, in one transaction', () => {
    const steps = [
      'CREATE TABLE a (x INTEGER) STRICT;',
      'INSERT INTO a VALUES (1);',
      'INSERT INTO a VALUES (2);',
    ];
    const db = new Database(file);
    try {
      migrate(db, steps.slice(0, 2));
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      migrate(db, steps);
      expect(db.pragma('user_version', { simple: true })).toBe(3);
      expect(db.prepare('SELECT x FROM a ORDER BY x').pluck().all()).toEqual([1, 2]);
    } finally {
      db.close();
    }
  });

  it('rolls a failed migration back entirely', () => {
    const db = new Database(file);
    try {
      expect(() => migrate(db, ['CREATE TABLE a (x INTEGER);', 'THIS IS NOT SQL'])).toThrow();
      expect(db.pragma('user_version', { simple: true })).toBe(0);
      expect(db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name = 'a'`).pluck().get()).toBe(0);
    } finally {
      db.close();
    }
  });
});

describe('durability and integrity', () => {
  it('keeps topics and offsets across close and reopen of the file', () => {
    const store = openMetaStore(file);
    store.createTopic({ name: 'a', partitions: 3, config: NO_CONFIG, createdAt: 1 });
    store.createTopic({ name: 'b', partitions: 1, config: { ...NO_CONFIG, segmentBytes: 4096 }, createdAt: 2 });
    store.commitOffsets('g', [
      { topic: 'a', partition: 0, offset: 1 },
      { topic: 'a', partition: 2, offset: 3 },
    ]);
    store.deleteTopic('b');
    store.close();

    const reopened = openMetaStore(file);
    expect(reopened.listTopics().map((t) => t.name)).toEqual(['a']);
    expect(reopened.fetchOffsets('g').map((o) => [o.partition, o.offset])).toEqual([
      [0, 1],
      [2, 3],
    ]);
    reopened.close();
  });

  it('the schema itself refuses rows the code would never write', () => {
    openMetaStore(file).close();
    inspect((db) => {
      db.pragma('foreign_keys = ON');
      expect(() => db.prepare(`INSERT INTO topics VALUES ('t', 0, NULL, NULL, NULL, 0)`).run()).toThrow(/CHECK/);
      expect(() => db.prepare(`INSERT INTO topics VALUES ('t', 'x', NULL, NULL, NULL, 0)`).run()).toThrow();
      expect(() => db.prepare(`INSERT INTO group_offsets VALUES ('g', 'missing', 0, 0, NULL, 0)`).run()).toThrow(/FOREIGN KEY/);
    });
  });
});
