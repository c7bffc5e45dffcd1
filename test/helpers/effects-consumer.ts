/**
 * The consumer of test/integration/eos-effects.test.ts, run as its own process (compiled by
 * child-script.ts) so the test can SIGKILL it: a poll consumer whose every message appends a
 * row to a ledger table of its own SQLite database through SqliteEffects. The ledger has no
 * unique key, so a message applied twice would show as two rows.
 *
 *   SLUICE_BROKER   host:port        FX_TOPIC  topic        FX_GROUP  consumer group
 *   FX_DB           database file    FX_RESUME 1: seek to the stored positions at start (default 1)
 *   FX_COMMIT_MS    the consumer's autoCommitIntervalMs: how far the broker-side commit lags
 *   FX_DELAY_MS     a pause after each message (default 1)
 *
 * Prints `skip PARTITION OFFSET` for each redelivered message it recognised.
 */
import Database from 'better-sqlite3';
import { SqliteEffects, connect } from '../../client/index.js';

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

const db = new Database(env('FX_DB'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS ledger (partition INTEGER NOT NULL, offset INTEGER NOT NULL, value TEXT NOT NULL)');
const insert = db.prepare<[number, number, string]>('INSERT INTO ledger (partition, offset, value) VALUES (?, ?, ?)');
const group = env('FX_GROUP');
const effects = new SqliteEffects(db, { name: group });

const client = await connect({ broker: env('SLUICE_BROKER'), connectTimeoutMs: 30_000, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
const consumer = client.pollConsumer({ topics: [env('FX_TOPIC')], group, from: 'earliest', autoCommitIntervalMs: Number(env('FX_COMMIT_MS', '1000')), maxWaitMs: 200 });
if (env('FX_RESUME', '1') === '1') await effects.resume(consumer);
const delayMs = Number(env('FX_DELAY_MS', '1'));

for await (const m of consumer) {
  const applied = effects.apply(m, () => insert.run(m.partition, m.offset, String(m.value)));
  if (!applied) process.stdout.write(`skip ${m.partition} ${m.offset}\n`);
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
}
