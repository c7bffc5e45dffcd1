import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PushConsumer, type SluiceClient } from '../../client/index.js';
import { startTestBroker, type TestBroker } from '../../testing/test-broker.js';
import { sluiceRejection } from '../helpers/async.js';
import { take } from '../helpers/push.js';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startBroker } from '../../broker/index.js';
import { tempDir } from '../helpers/temp-dir.js';

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

  it('close() during a crash waits for it and leaves no broker behind', async () => {
    const tb = await startTestBroker({ logLevel: 'silent' });
    const address = tb.address;
    const crashing = tb.crash();
    await tb.close();
    await crashing;
    await expect(connect({ broker: address, reconnect: false, connectTimeoutMs: 500 })).rejects.toBeDefined();
    expect(existsSync(tb.dataDir)).toBe(false);
  });
});

describe('Broker.halt', () => {
  it('writes nothing on the way out: no clean-shutdown marker, no final snapshot; the next open recovers', async () => {
    const dir = tempDir('sluice-halt-');
    cleanups.push(dir.remove);
    const running = await startBroker({ port: 0, dataDir: dir.path, logLevel: 'silent' });
    const client = await connect({ broker: running.address, reconnect: false });
    await client.admin().createTopic('t');
    await produce(client, 't', ['a', 'b']);
    await client.close();
    await running.broker.halt();
    const partition = join(dir.path, 'topics', 't', '0');
    expect(readdirSync(partition).filter((f) => f === '.clean-shutdown' || f === 'producer-state.snapshot')).toEqual([]);
    // What kill -9 would keep (the page cache) is still there.
    const again = await startBroker({ port: 0, dataDir: dir.path, logLevel: 'silent' });
    cleanups.push(() => again.close());
    const c2 = await connect({ broker: again.address, reconnect: false });
    cleanups.push(() => c2.close());
    expect((await c2.admin().listOffsets('t', 'latest')).map((p) => p.offset)).toEqual([2]);
  });
});

