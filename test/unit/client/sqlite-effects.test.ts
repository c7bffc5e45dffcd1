import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { PollConsumer } from '../../../client/poll-consumer.js';
import { hasCode } from '../../../client/protocol/errors.js';
import { SqliteEffects, type EffectMessage } from '../../../client/sqlite-effects.js';

const dbs: Database.Database[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
});

function open(): Database.Database {
  const db = new Database(':memory:');
  dbs.push(db);
  db.exec('CREATE TABLE ledger (topic TEXT, partition INTEGER, offset INTEGER, note TEXT)');
  return db;
}

const msg = (offset: number, partition = 0, topic = 't'): EffectMessage => ({ topic, partition, offset });

function ledger(db: Database.Database): [string, number, number][] {
  return db.prepare<[], { topic: string; partition: number; offset: number }>('SELECT topic, partition, offset FROM ledger ORDER BY rowid').all().map((r) => [r.topic, r.partition, r.offset]);
}

describe('SqliteEffects', () => {
  it('applies a message once: its writes and its position in one transaction; anything at or below the position is skipped', () => {
    const db = open();
    const effects = new SqliteEffects(db, { name: 'app' });
    const insert = db.prepare('INSERT INTO ledger VALUES (?, ?, ?, ?)');
    const write = (m: EffectMessage) => (d: Database.Database) => {
      expect(d).toBe(db);
      insert.run(m.topic, m.partition, m.offset, 'x');
    };
    expect(effects.position('t', 0)).toBeUndefined();
    expect(effects.apply(msg(0), write(msg(0)))).toBe(true);
    expect(effects.apply(msg(1), write(msg(1)))).toBe(true);
    expect(effects.apply(msg(1), write(msg(1)))).toBe(false); // redelivered
    expect(effects.apply(msg(0), write(msg(0)))).toBe(false);
    expect(effects.apply(msg(5), write(msg(5)))).toBe(true); // gaps (markers, aborted data) are normal
    expect(effects.apply(msg(3), write(msg(3)))).toBe(false);
    expect(effects.apply(msg(0, 1), write(msg(0, 1)))).toBe(true); // partitions are independent
    expect(effects.apply(msg(0, 0, 'u'), write(msg(0, 0, 'u')))).toBe(true); // and topics
    expect(ledger(db)).toEqual([
      ['t', 0, 0],
      ['t', 0, 1],
      ['t', 0, 5],
      ['t', 1, 0],
      ['u', 0, 0],
    ]);
    expect(effects.position('t', 0)).toBe(6);
    expect(effects.positions('t')).toEqual([
      { topic: 't', partition: 0, offset: 6 },
      { topic: 't', partition: 1, offset: 1 },
    ]);
    expect(effects.positions()).toHaveLength(3);
    // Another name keeps positions of its own, in the same table.
    const other = new SqliteEffects(db, { name: 'other' });
    expect(other.position('t', 0)).toBeUndefined();
    expect(other.apply(msg(0), () => undefined)).toBe(true);
    // A second SqliteEffects on the same database and name sees the same positions (a restart).
    expect(new SqliteEffects(db, { name: 'app' }).position('t', 0)).toBe(6);
  });

  it('keeps nothing of an effect that throws, or that returns a promise', () => {
    const db = open();
    const effects = new SqliteEffects(db, { name: 'app' });
    const insert = db.prepare('INSERT INTO ledger VALUES (?, ?, ?, ?)');
    expect(() =>
      effects.apply(msg(0), () => {
        insert.run('t', 0, 0, 'half');
        throw new Error('app failure');
      }),
    ).toThrow('app failure');
    expect(ledger(db)).toEqual([]);
    expect(effects.position('t', 0)).toBeUndefined();
    let thrown: unknown;
    try {
      effects.apply(msg(0), async () => {
        insert.run('t', 0, 0, 'async');
      });
    } catch (err) {
      thrown = err;
    }
    expect(hasCode(thrown, 'INVALID_CONFIG')).toBe(true);
    expect(ledger(db)).toEqual([]);
    expect(effects.apply(msg(0), () => insert.run('t', 0, 0, 'ok'))).toBe(true);
  });

  it('applyAll: one transaction for a batch, each message skipped or applied as by apply; all or nothing', () => {
    const db = open();
    const effects = new SqliteEffects(db, { name: 'app' });
    const insert = db.prepare('INSERT INTO ledger VALUES (?, ?, ?, ?)');
    const write = (d: Database.Database, m: EffectMessage): void => {
      expect(d).toBe(db);
      insert.run(m.topic, m.partition, m.offset, 'batch');
    };
    expect(effects.applyAll([msg(0), msg(1), msg(0, 1)], write)).toBe(3);
    expect(effects.applyAll([msg(1), msg(2), msg(0, 1), msg(1, 1)], write)).toBe(2);
    expect(() =>
      effects.applyAll([msg(3), msg(4)], (d, m) => {
        write(d, m);
        if (m.offset === 4) throw new Error('second fails');
      }),
    ).toThrow('second fails');
    expect(effects.position('t', 0)).toBe(3);
    expect(ledger(db).length).toBe(5);
  });

  it('inside an application transaction, it commits and rolls back with it', () => {
    const db = open();
    const effects = new SqliteEffects(db, { name: 'app' });
    const outer = db.transaction(() => {
      effects.apply(msg(0), (d) => d.prepare('INSERT INTO ledger VALUES (?, ?, ?, ?)').run('t', 0, 0, 'nested'));
      throw new Error('outer fails');
    });
    expect(() => outer()).toThrow('outer fails');
    expect(effects.position('t', 0)).toBeUndefined();
    expect(ledger(db)).toEqual([]);
  });

  it('each message takes effect exactly once whatever the redeliveries (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(2), fc.nat(30)), { maxLength: 200 }), (deliveries) => {
        const db = new Database(':memory:');
        try {
          const effects = new SqliteEffects(db, { name: 'p' });
          const applied: string[] = [];
          const high = new Map<number, number>();
          for (const [partition, offset] of deliveries) {
            const did = effects.apply(msg(offset, partition), () => applied.push(`${partition}:${offset}`));
            // Applied exactly when it is beyond everything applied before in its partition.
            expect(did).toBe(offset >= (high.get(partition) ?? 0));
            if (did) high.set(partition, offset + 1);
          }
          expect(new Set(applied).size).toBe(applied.length);
        } finally {
          db.close();
        }
      }),
      { seed: 6, numRuns: 200 },
    );
  });

  it('resume() starts the consumer and seeks each assigned partition with a stored position', async () => {
    const db = open();
    const effects = new SqliteEffects(db, { name: 'app' });
    effects.apply(msg(41), () => undefined);
    effects.apply(msg(9, 2), () => undefined);
    const seeks: [string, number, number][] = [];
    let started = 0;
    const consumer = {
      start: async () => {
        started++;
      },
      assignment: () => [
        { topic: 't', partition: 0 },
        { topic: 't', partition: 1 },
      ],
      seek: (topic: string, partition: number, offset: number) => seeks.push([topic, partition, offset]),
    } as unknown as PollConsumer;
    expect(await effects.resume(consumer)).toBe(1);
    expect(started).toBe(1);
    expect(seeks).toEqual([['t', 0, 42]]);
  });

  it('checks its options and messages', () => {
    const db = open();
    expect(() => new SqliteEffects(db, { name: '' })).toThrow(/name/);
    expect(() => new SqliteEffects(db, { name: 'x', table: 'drop table; --' })).toThrow(/identifier/);
    const effects = new SqliteEffects(db, { name: 'x', table: 'my_positions' });
    expect(() => effects.apply({ topic: 't', partition: 0, offset: -1 }, () => undefined)).toThrow(/offset/);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'my_positions'").get()).toBeDefined();
  });
});
