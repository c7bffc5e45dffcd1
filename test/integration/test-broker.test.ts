import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PushConsumer, type SluiceClient } from '../../client/index.js';
import { startTestBroker, type TestBroker } from '../../testing/test-broker.js';
import { sluiceRejection } from '../helpers/async.js';
import { take } from '../helpers/push.js';

/** sluice/testing's in-process broker: each fault knob does what it says, seen through the SDK. */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: Parameters<typeof startTestBroker>[0] = {}): Promise<{ tb: TestBroker; client: SluiceClient }> {
  const tb = await startTestBroker({ logLevel: 'silent', ...options });
  cleanups.push(() => tb.close());
  const client = await connect({ broker: tb.address, reconnect: { initialDelayMs: 10, maxDelayMs: 100 } });
  cleanups.push(() => client.close());
  return { tb, client };
}

async function produce(client: SluiceClient, topic: string, values: string[]): Promise<number[]> {
  const producer = client.producer();
  try {
    const sent = await Promise.all(values.map((value) => producer.send({ topic, value, partition: 0 })));
    return sent.map((r) => r.offset);
  } finally {
    await producer.close();
  }
}

function pushConsumer(client: SluiceClient, topic: string, ackWaitMs = 30_000): PushConsumer {
  const c = client.pushConsumer({ topic, subscription: 'sub', prefetch: 10, create: { start: 'earliest', ackWaitMs } });
  cleanups.push(() => c.close({ timeoutMs: 100 }));
  return c;
}

const text = (m: { value: unknown }): string => (Buffer.isBuffer(m.value) ? m.value.toString() : String(m.value));

describe('TestBroker fault knobs', () => {
  it('duplicateDeliveries: the message comes again as attempt 2 while the first copy is held, whose ack is then stale', async () => {
    const { tb, client } = await setup();
    await client.admin().createTopic('t');
    await produce(client, 't', ['a', 'b', 'c']);
    tb.duplicateDeliveries(1);
    const c = pushConsumer(client, 't');
    const got = await take(c, 4);
    const a = got.filter((m) => text(m) === 'a');
    expect(a.map((m) => m.attempt)).toEqual([1, 2]);
    expect(got.filter((m) => text(m) !== 'a').map((m) => [text(m), m.attempt])).toEqual([['b', 1], ['c', 1]]);
    expect(tb.counts.duplicatedDeliveries).toBe(1);
    expect((await sluiceRejection(a[0]!.ack())).code).toBe('STALE_ACK');
    for (const m of got.slice(1)) await m.ack();
    expect(await c.receive({ timeoutMs: 200 })).toBeUndefined();
  });

  it('dropAcks: the client is told the ack settled, the broker redelivers when the lease runs out', async () => {
    const { tb, client } = await setup();
    await client.admin().createTopic('t');
    await produce(client, 't', ['a', 'b']);
    const c = pushConsumer(client, 't', 300);
    const [a, b] = await take(c, 2);
    tb.dropAcks(1);
    await a!.ack();
    await b!.ack();
    expect(tb.counts.droppedAcks).toBe(1);
    const again = await take(c, 1, 3_000);
    expect([text(again[0]!), again[0]!.attempt]).toEqual(['a', 2]);
    await again[0]!.ack();
    expect(await c.receive({ timeoutMs: 500 })).toBeUndefined();
  });

  it('expireLeases: every held delivery is redelivered at once', async () => {
    const { tb, client } = await setup();
    await client.admin().createTopic('t');
    await produce(client, 't', ['a', 'b']);
    const c = pushConsumer(client, 't');
    await take(c, 2);
    expect(tb.expireLeases('sub')).toBe(2);
    const again = await take(c, 2);
    expect(again.map((m) => [text(m), m.attempt])).toEqual([['a', 2], ['b', 2]]);
    expect(() => tb.expireLeases('nope')).toThrow(/nope/);
  });

  it('crash under fsync=always keeps every acknowledged message; the client reconnects to the same port', async () => {
    const { tb, client } = await setup();
    await client.admin().createTopic('t');
    const offsets = await produce(client, 't', ['a', 'b', 'c']);
    const port = tb.port;
    await tb.crash({ tornTails: true });
    expect(tb.port).toBe(port);
    const more = await produce(client, 't', ['d']);
    expect(more).toEqual([offsets[2]! + 1]);
    const c = pushConsumer(client, 't');
    expect((await take(c, 4)).map(text)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('crash under fsync=interval loses what was acknowledged since the last sync: the power cut is real', async () => {
    const { tb, client } = await setup({ fsync: 'interval', fsyncIntervalMs: 3_600_000 });
    await client.admin().createTopic('t');
    await produce(client, 't', ['a', 'b', 'c']);
    await tb.crash();
    // The new messages take the lost offsets: the log is the synced prefix (here: nothing) plus what follows.
    expect(await produce(client, 't', ['d'])).toEqual([0]);
    const c = pushConsumer(client, 't');
    expect((await take(c, 1)).map(text)).toEqual(['d']);
    expect(await c.receive({ timeoutMs: 200 })).toBeUndefined();
  });
});
