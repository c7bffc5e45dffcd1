/**
 * The copier of test/scenarios/eos-copy.test.ts, run as its own process (compiled by
 * child-script.ts) so the test can SIGKILL it: a transactional copy of one topic into another
 * with runTransform, partition to partition, values and keys unchanged. The environment says
 * what to copy:
 *
 *   SLUICE_BROKER  host:port          COPY_IN, COPY_OUT  topics        COPY_GROUP  consumer group
 *   COPY_TXN_ID    transactional id   COPY_BATCH         inputs per transaction (default 750)
 *   COPY_PAUSE_MS  a pause in the middle of every transaction (half of its outputs sent), so
 *                  that the test can kill it, or the broker, inside one (default 0)
 *
 * Prints `inside` when a transaction pauses, `committed N` per committed transaction and
 * `retry CODE` per recovered failure; SIGTERM stops it after the transaction in progress, and
 * it exits 0.
 */
import { connect, runTransform, type Message } from '../../client/index.js';

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

const output = env('COPY_OUT');
const pauseMs = Number(env('COPY_PAUSE_MS', '0'));
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());

const client = await connect({ broker: env('SLUICE_BROKER'), connectTimeoutMs: 30_000, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
const consumer = client.pollConsumer({ topics: [env('COPY_IN')], group: env('COPY_GROUP'), from: 'earliest', autoCommit: false, maxWaitMs: 200 });
const producer = client.producer({ transactionalId: env('COPY_TXN_ID'), lingerMs: 1, transactionTimeoutMs: 20_000 });

const batchSize = Number(env('COPY_BATCH', '750'));
/** Inputs handled in the transaction in progress. */
let handled = 0;
const stats = await runTransform({
  consumer,
  producer,
  batchSize,
  signal: stop.signal,
  handler: async (m: Message) => {
    if (handled++ === batchSize >> 1 && pauseMs > 0) {
      await new Promise((r) => setTimeout(r, 20)); // the outputs so far go out
      process.stdout.write('inside\n');
      await new Promise((r) => setTimeout(r, pauseMs));
    }
    return { topic: output, partition: m.partition, key: m.key, value: m.value, headers: { ...m.headers } };
  },
  onCommit: ({ inputs }) => {
    handled = 0;
    process.stdout.write(`committed ${inputs}\n`);
  },
  onRetry: (err) => {
    handled = 0;
    const code = (err as { code?: string }).code ?? 'ERROR';
    process.stdout.write(`retry ${code}\n`);
    process.stderr.write(`retry ${code}: ${(err as Error).message}\n`);
  },
});
process.stdout.write(`stopped ${JSON.stringify(stats)}\n`);
await client.close();
