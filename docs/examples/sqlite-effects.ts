/**
 * Exactly-once effects in your own database (docs/semantics.md, "Exactly-once effects in your
 * own database"): payments move account balances in an application's SQLite database, and
 * SqliteEffects stores the consumer's position in the SAME SQLite transaction as each balance
 * update. A message that comes again is recognised by its offset and skipped.
 *
 * The first consumer applies 300 payments and stops without committing anything to the broker
 * (as after a crash, or a commit that was lost). The second one is handed all 500 payments
 * again: it skips the 300 that took effect and applies the other 200. The check at the end:
 * every balance is exactly the sum of its payments.
 *
 * Standalone: `npm run build`, then `npx tsx docs/examples/sqlite-effects.ts` (an embedded
 * broker and a database in a temp directory; exits 0 once its check passed). The test suite
 * runs it (test/integration/examples.test.ts).
 */
import Database from 'better-sqlite3';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SqliteEffects, connect, type SluiceClient } from 'sluice';
import { startBroker } from 'sluice/broker';

interface Payment {
  account: string;
  cents: number;
}

const PAYMENTS = 500;

/** Consumes payments into the balances table; stops after `limit` messages. Returns [applied, skipped]. */
async function consume(client: SluiceClient, db: Database.Database, limit: number): Promise<[number, number]> {
  const effects = new SqliteEffects(db, { name: 'balances' });
  const credit = db.prepare<[string, number]>(
    'INSERT INTO balances (account, cents) VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET cents = cents + excluded.cents',
  );
  // autoCommit off: nothing reaches the broker, so the next consumer is handed everything again.
  const consumer = client.pollConsumer({ topics: ['payments'], group: 'balances', from: 'earliest', autoCommit: false, maxWaitMs: 200 });
  let applied = 0;
  let skipped = 0;
  for (let quiet = 0; quiet < 3 && applied + skipped < limit; ) {
    const batch = await consumer.fetch({ maxMessages: limit - applied - skipped });
    if (batch.length === 0) quiet++;
    for (const m of batch) {
      const { account, cents } = m.value as Payment;
      // The balance update and the position: one SQLite transaction.
      if (effects.apply(m, () => credit.run(account, cents))) applied++;
      else skipped++;
    }
  }
  await consumer.close();
  return [applied, skipped];
}

export async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-example-'));
  const broker = await startBroker({ port: 0, dataDir: join(dir, 'broker'), logLevel: 'warn' });
  const client = await connect({ broker: broker.address });
  const db = new Database(join(dir, 'app.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL'); // an applied payment survives a power cut too
  db.exec('CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL)');
  try {
    await client.admin().createTopic('payments', { partitions: 2 });
    const producer = client.producer();
    const expected = new Map<string, number>();
    for (let i = 0; i < PAYMENTS; i++) {
      const payment: Payment = { account: `acct-${i % 9}`, cents: 100 + i };
      expected.set(payment.account, (expected.get(payment.account) ?? 0) + payment.cents);
      void producer.send({ topic: 'payments', key: payment.account, value: payment });
    }
    await producer.flush();

    const [first] = await consume(client, db, 300);
    const [applied, skipped] = await consume(client, db, PAYMENTS);
    assert.equal(first, 300);
    assert.equal(skipped, 300, 'the payments applied before were handed out again, and skipped');
    assert.equal(first + applied, PAYMENTS);

    const balances = new Map(db.prepare<[], { account: string; cents: number }>('SELECT account, cents FROM balances').all().map((r) => [r.account, r.cents]));
    assert.deepEqual(balances, expected, 'every balance is the sum of its payments, each counted once');
    console.log(`${PAYMENTS} payments: ${first} applied, then ${skipped} redelivered and skipped, ${applied} applied; every payment took effect exactly once`);
  } finally {
    db.close();
    await client.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
