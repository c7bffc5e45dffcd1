import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_PRODUCER_EPOCH } from '../../../../broker/meta/producer-store.js';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';
import { ProducerIds } from '../../../../broker/txn/producer-ids.js';
import { tempDir } from '../../../helpers/temp-dir.js';

const dirs: { remove(): void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

function dbFile(): string {
  const d = tempDir();
  dirs.push(d);
  return join(d.path, 'sluice.db');
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe('ProducerStore (SQLite, migration 3)', () => {
  it('hands out producer ids once each, durably', () => {
    const file = dbFile();
    const store = openMetaStore(file);
    expect(store.producers.nextProducerId()).toBe(0);
    expect([store.producers.allocateProducerId(), store.producers.allocateProducerId()]).toEqual([0, 1]);
    store.close();
    const reopened = openMetaStore(file);
    expect(reopened.producers.nextProducerId()).toBe(2);
    expect(reopened.producers.allocateProducerId()).toBe(2);
    reopened.close();
  });

  it('binds a transactional id to one producer id and bumps its epoch, then a new id after 32767', () => {
    const store = openMetaStore(':memory:');
    const p = store.producers;
    const first = p.initTransactionalId('tx', 1_000, 1);
    expect(first).toEqual({ record: { transactionalId: 'tx', producerId: 0, producerEpoch: 0, timeoutMs: 1_000, state: 'Empty', updatedAt: 1 }, previous: undefined });
    expect(p.initTransactionalId('tx', 2_000, 2).record).toMatchObject({ producerId: 0, producerEpoch: 1, timeoutMs: 2_000 });
    expect(p.initTransactionalId('other', 1_000, 3).record).toMatchObject({ producerId: 1, producerEpoch: 0 });
    expect(p.setTransactionState('tx', 0, 0, 'Ongoing', 4)).toBe(false); // fenced by epoch 1
    expect(p.setTransactionState('tx', 0, 1, 'Ongoing', 4)).toBe(true);
    expect(p.getTransactionalId('tx')).toMatchObject({ state: 'Ongoing', updatedAt: 4 });
    store.close();
  });

  it('the schema refuses rows the code would never write', () => {
    const file = dbFile();
    openMetaStore(file).close();
    const db = new Database(file);
    try {
      expect(() => db.prepare(`INSERT INTO producer_ids VALUES (1, 0)`).run()).toThrow(/CHECK|UNIQUE/);
      expect(() => db.prepare(`INSERT INTO transactional_ids VALUES ('a', 0, 32768, 1, 'Empty', 0)`).run()).toThrow(/CHECK/);
      expect(() => db.prepare(`INSERT INTO transactional_ids VALUES ('', 0, 0, 1, 'Empty', 0)`).run()).toThrow(/CHECK/);
      db.prepare(`INSERT INTO transactional_ids VALUES ('a', 5, 0, 1, 'Empty', 0)`).run();
      expect(() => db.prepare(`INSERT INTO transactional_ids VALUES ('b', 5, 0, 1, 'Empty', 0)`).run()).toThrow(/UNIQUE/);
    } finally {
      db.close();
    }
  });
});

describe('ProducerIds', () => {
  it('InitProducer without a transactional id: a fresh id at epoch 0 each time', () => {
    const ids = new ProducerIds(openMetaStore(':memory:').producers);
    expect(ids.init({})).toEqual({ producerId: 0, producerEpoch: 0 });
    expect(ids.init({})).toEqual({ producerId: 1, producerEpoch: 0 });
    expect(() => ids.validate(1, 0)).not.toThrow();
    expect(codeOf(() => ids.validate(2, 0))).toBe('UNKNOWN_PRODUCER');
    expect(codeOf(() => ids.validate(1, 1))).toBe('UNKNOWN_PRODUCER');
  });

  it('InitProducer with a transactional id fences the older epochs, across restarts', () => {
    const file = dbFile();
    let store = openMetaStore(file);
    let ids = new ProducerIds(store.producers, () => 42);
    expect(ids.init({ transactionalId: 'app', transactionTimeoutMs: 5_000 })).toEqual({ producerId: 0, producerEpoch: 0 });
    expect(ids.init({ transactionalId: 'app' })).toEqual({ producerId: 0, producerEpoch: 1 });
    expect(codeOf(() => ids.validate(0, 0))).toBe('PRODUCER_FENCED');
    expect(() => ids.validate(0, 1)).not.toThrow();
    expect(ids.transactionalId('app')).toMatchObject({ producerId: 0, producerEpoch: 1, timeoutMs: 60_000, updatedAt: 42 });
    store.close();

    store = openMetaStore(file);
    ids = new ProducerIds(store.producers);
    expect(codeOf(() => ids.validate(0, 0))).toBe('PRODUCER_FENCED');
    expect(ids.init({ transactionalId: 'app' })).toEqual({ producerId: 0, producerEpoch: 2 });
    expect(ids.init({})).toEqual({ producerId: 1, producerEpoch: 0 });
    expect(codeOf(() => ids.validate(0, 1))).toBe('PRODUCER_FENCED');
    store.close();
  });

  it('after epoch 32767 a transactional id moves to a fresh producer id; the old one is fenced', () => {
    const file = dbFile();
    openMetaStore(file).close();
    const db = new Database(file);
    db.prepare(`UPDATE producer_ids SET next_id = 8`).run();
    db.prepare(`INSERT INTO transactional_ids VALUES ('old', 7, ?, 60000, 'Empty', 0)`).run(MAX_PRODUCER_EPOCH);
    db.close();
    const store = openMetaStore(file);
    const ids = new ProducerIds(store.producers);
    expect(() => ids.validate(7, MAX_PRODUCER_EPOCH)).not.toThrow();
    expect(ids.init({ transactionalId: 'old' })).toEqual({ producerId: 8, producerEpoch: 0 });
    expect(codeOf(() => ids.validate(7, MAX_PRODUCER_EPOCH))).toBe('PRODUCER_FENCED');
    expect(() => ids.validate(8, 0)).not.toThrow();
    store.close();
  });

  it('refuses an empty transactional id', () => {
    const ids = new ProducerIds(openMetaStore(':memory:').producers);
    expect(codeOf(() => ids.init({ transactionalId: '' }))).toBe('INVALID_REQUEST');
  });
});
