import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { PushConsumer, type PushMessage } from '../../client/push-consumer.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { produceRaw } from '../helpers/produce.js';
import { tempDir } from '../helpers/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Everything the consumer gets until `quietMs` pass without a message. */
async function drain(c: PushConsumer, quietMs: number): Promise<PushMessage[]> {
  const out: PushMessage[] = [];
  for (;;) {
    const m = await c.receive({ timeoutMs: quietMs });
    if (m === undefined) return out;
    out.push(m);
  }
}

describe('push subscriptions across a broker crash', () => {
  it('never redelivers an ack made with a receipt after kill -9, and loses nothing unacked', async () => {
    const dir = tempDir();
    const bp = await BrokerProcess.start({ dataDir: dir.path });
    cleanups.push(dir.remove, () => bp.stop('SIGKILL').then(() => undefined, () => undefined));
    const conn = await Connection.connect({ broker: bp.address, reconnect: false });
    cleanups.push(() => conn.destroy());
    await conn.request('CreateTopic', { topic: 'crash', partitions: 2 });
    await produceRaw(conn, 'crash', 0, Array.from({ length: 15 }, (_, i) => ({ value: `p0-${i}` })));
    await produceRaw(conn, 'crash', 1, Array.from({ length: 15 }, (_, i) => ({ value: `p1-${i}` })));
    const before = new PushConsumer(conn, { topic: 'crash', subscription: 'crash-sub', prefetch: 30, create: { start: 'earliest', ackWaitMs: 60_000 } });
    const first = await drain(before, 500);
    expect(first).toHaveLength(30);
    const id = (m: PushMessage): string => `${m.partition}/${m.offset}`;
    // A third acked with a receipt (in two Settle requests), a third acked without, a third not at all.
    const receipted = first.filter((_, i) => i % 3 === 0);
    const plain = first.filter((_, i) => i % 3 === 1);
    const unacked = first.filter((_, i) => i % 3 === 2);
    await Promise.all(receipted.slice(0, 5).map((m) => m.ack({ receipt: true })));
    await Promise.all(plain.map((m) => m.ack()));
    await Promise.all(receipted.slice(5).map((m) => m.ack({ receipt: true })));

    await bp.kill();
    conn.destroy();
    await bp.restart();

    const conn2 = await Connection.connect({ broker: bp.address, reconnect: false });
    cleanups.push(() => conn2.destroy());
    const after = new PushConsumer(conn2, { topic: 'crash', subscription: 'crash-sub', prefetch: 30 });
    const again = await drain(after, 1_000);
    const redelivered = new Set(again.map(id));
    expect(receipted.map(id).filter((x) => redelivered.has(x))).toEqual([]);
    expect(unacked.map(id).filter((x) => !redelivered.has(x))).toEqual([]);
    // What comes back is only what was not acked with a receipt, each once, as a redelivery.
    expect(again.length).toBe(redelivered.size);
    expect(again.every((m) => m.attempt >= 2)).toBe(true);
    await Promise.all(again.map((m) => m.ack({ receipt: true })));
    expect(await conn2.request('DescribeSubscription', { subscription: 'crash-sub' })).toMatchObject({ pending: 0 });
    await after.close();
  });
});
