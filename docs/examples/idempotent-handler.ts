/**
 * Checking your own consumer with sluice/testing (docs/testing.md): a push consumer sends one
 * welcome email per order, and must send each exactly once although at-least-once delivery
 * brings some orders twice. The handler is made idempotent by remembering which orders it has
 * emailed (in a real service: a unique key in its database, in the same transaction as the
 * effect).
 *
 * A TestBroker injects the faults on cue while the consumer runs: duplicate deliveries, lost
 * acks, expired leases and a crash with restart. Everything the producer and the consumer did
 * is recorded into a History, and the checker then shows that nothing acknowledged was lost and
 * nothing was read that was not sent; the example's own check: redeliveries happened, and every
 * order was emailed exactly once.
 *
 * Standalone: `npm run build`, then `npx tsx docs/examples/idempotent-handler.ts` (exits 0 once
 * its checks passed). The test suite runs it (test/integration/examples.test.ts).
 */
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import { connect, type PushMessage } from 'sluice';
import { History, checkHistory, formatCheck, recordAck, recordDelivery, recordSend, startTestBroker, valueText } from 'sluice/testing';

const ORDERS = 200;

/** The service's handler: one email per order, whatever comes again. */
class WelcomeEmails {
  /** Emails sent per order (what the check counts), and the handler's calls per order. */
  readonly sent = new Map<string, number>();
  readonly calls = new Map<string, number>();
  readonly #done = new Set<string>();

  handle(orderId: string): void {
    this.calls.set(orderId, (this.calls.get(orderId) ?? 0) + 1);
    if (this.#done.has(orderId)) return; // already emailed: a redelivery, not a new order
    this.#done.add(orderId);
    this.sent.set(orderId, (this.sent.get(orderId) ?? 0) + 1);
  }
}

export async function main(): Promise<void> {
  const tb = await startTestBroker({ logLevel: 'silent' });
  const client = await connect({ broker: tb.address, reconnect: { initialDelayMs: 10, maxDelayMs: 100 } });
  const history = new History();
  const emails = new WelcomeEmails();
  try {
    await client.admin().createTopic('orders', { partitions: 2 });
    // Lost acks come back when their lease runs out: 500 ms here instead of the default 30 s.
    const consumer = client.pushConsumer({ topic: 'orders', subscription: 'welcome-emails', prefetch: 20, create: { start: 'earliest', ackWaitMs: 500 } });
    await consumer.start(); // the subscription exists (durably) from here on
    const handle = async (m: PushMessage): Promise<void> => {
      recordDelivery(history, 'emailer', m);
      emails.handle(valueText(m.value));
      await recordAck(history, 'emailer', m);
    };
    const consuming = (async () => {
      for await (const m of consumer) void handle(m);
    })();

    const producer = client.producer();
    const send = (n: number) => recordSend(history, 'orders', producer, { topic: 'orders', key: `order-${n}`, value: `order-${n}` });
    tb.duplicateDeliveries(10);
    tb.dropAcks(10);
    await Promise.all(Array.from({ length: ORDERS / 2 }, (_, n) => send(n)));
    await tb.crash();
    tb.expireLeases('welcome-emails');
    await Promise.all(Array.from({ length: ORDERS / 2 }, (_, n) => send(ORDERS / 2 + n)));

    // Wait for every order to be emailed, then for the redeliveries in flight to settle.
    for (let waited = 0; emails.sent.size < ORDERS && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1_000));
    await consumer.close();
    await consuming;

    const result = checkHistory(history.events());
    assert.ok(result.valid, formatCheck(result));
    assert.equal(result.stats.sends.acked, ORDERS);
    assert.ok(result.stats.redeliveries > 0, 'the faults should have brought some orders again');
    assert.equal(emails.sent.size, ORDERS);
    assert.ok([...emails.sent.values()].every((n) => n === 1));
    // The handler did see orders more than once: the idempotence was needed.
    assert.ok([...emails.calls.values()].some((n) => n > 1), 'some order should have reached the handler twice');
    console.log(`${result.stats.reads.delivered} deliveries of ${ORDERS} orders (${result.stats.redeliveries} redeliveries, faults: ${JSON.stringify(tb.counts)}); every order emailed exactly once`);
  } finally {
    await client.close();
    await tb.close();
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
