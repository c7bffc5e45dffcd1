/**
 * Exactly-once consume-transform-produce (docs/semantics.md, "Exactly-once"): orders in, one
 * invoice per order out. Each batch of orders, its invoices and the consumer group's offsets
 * are ONE transaction, so an invoice is visible if and only if its order counts as consumed.
 *
 * The first run of the copier "crashes" half way (its handler throws): the batch it was in is
 * aborted, none of its invoices become visible, and the offsets stay before it. The second run
 * starts there. The check at the end: a read_committed reader sees every order invoiced once.
 *
 * Standalone: `npm run build`, then `npx tsx docs/examples/transactional-copy.ts` (it starts an
 * embedded broker in a temp directory and exits 0 once its check passed). The test suite runs
 * it (test/integration/examples.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect, runTransform, type Message, type SluiceClient } from 'sluice';
import { startBroker } from 'sluice/broker';

interface Order {
  id: number;
  amount: number;
}

interface Invoice {
  orderId: number;
  total: number;
}

const ORDERS = 1_000;

/** The transform: one invoice per order, keyed like the order (same customer, same partition). */
function invoice(order: Message): { topic: string; key: Buffer | null; value: Invoice } {
  const { id, amount } = order.value as Order;
  return { topic: 'invoices', key: order.key, value: { orderId: id, total: Math.round(amount * 120) / 100 } };
}

/** Orders the group has consumed (committed) so far. */
async function consumed(client: SluiceClient): Promise<number> {
  const group = await client.admin().describeGroup('invoicer').catch(() => undefined);
  return group?.offsets.reduce((n, o) => n + (o.committed ?? 0), 0) ?? 0;
}

/** Runs the copier until every order is invoiced, or until its handler throws. */
async function copier(client: SluiceClient, crashAt?: number): Promise<void> {
  const consumer = client.pollConsumer({ topics: ['orders'], group: 'invoicer', from: 'earliest', autoCommit: false });
  const producer = client.producer({ transactionalId: 'invoicer-1' });
  const stop = new AbortController();
  let done = await consumed(client);
  try {
    await runTransform({
      consumer,
      producer,
      batchSize: 200,
      signal: stop.signal,
      handler: (order) => {
        if ((order.value as Order).id === crashAt) throw new Error(`crash while invoicing order ${crashAt}`);
        return invoice(order);
      },
      onCommit: ({ inputs }) => {
        done += inputs;
        if (done >= ORDERS) stop.abort();
      },
    });
  } finally {
    await consumer.close();
    await producer.close();
  }
}

export async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-example-'));
  const broker = await startBroker({ port: 0, dataDir, logLevel: 'warn' });
  const client = await connect({ broker: broker.address });
  try {
    await client.admin().createTopic('orders', { partitions: 3 });
    await client.admin().createTopic('invoices', { partitions: 3 });
    const producer = client.producer();
    await Promise.all(Array.from({ length: ORDERS }, (_, id) => producer.send({ topic: 'orders', key: `customer-${id % 7}`, value: { id, amount: (id % 50) + 1 } })));

    await assert.rejects(copier(client, 500), /crash while invoicing order 500/);
    await copier(client);

    // A read_committed reader (the default) sees exactly one invoice per order.
    const reader = client.pollConsumer({ topics: ['invoices'], from: 'earliest', maxWaitMs: 200 });
    const invoiced = new Map<number, number>();
    for (let quiet = 0; quiet < 3; ) {
      const batch = await reader.fetch();
      if (batch.length === 0) quiet++;
      for (const m of batch) {
        const { orderId } = m.value as Invoice;
        invoiced.set(orderId, (invoiced.get(orderId) ?? 0) + 1);
      }
    }
    await reader.close();
    assert.equal(invoiced.size, ORDERS, 'every order has an invoice');
    assert.ok([...invoiced.values()].every((n) => n === 1), 'no order has two');
    console.log(`${ORDERS} orders, ${invoiced.size} invoices: every order invoiced exactly once, across a crash of the copier`);
  } finally {
    await client.close();
    await broker.close();
    rmSync(dataDir, { recursive: true, force: true });
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
