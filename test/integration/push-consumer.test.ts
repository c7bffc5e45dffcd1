import { connect as tcpConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { connect as connectClient } from '../../client/client.js';
import { Connection } from '../../client/connection.js';
import { hasCode } from '../../client/protocol/errors.js';
import type { SubscriptionConfigInput } from '../../client/protocol/messages/push.js';
import { decodeBatches } from '../../client/protocol/record-batch.js';
import { PushConsumer } from '../../client/push-consumer.js';
import { toMessage, type Message } from '../../client/value-codec.js';
import { MemoryLogger } from '../helpers/logger.js';
import { produceRaw, type TestMessage } from '../helpers/produce.js';
import { tempDir } from '../helpers/temp-dir.js';
import { sluiceRejection as rejection } from '../helpers/async.js';
import { take } from '../helpers/push.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function broker(): Promise<RunningBroker> {
  const dir = tempDir();
  const b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
  cleanups.push(dir.remove, () => b.close());
  return b;
}

async function connect(address: string): Promise<Connection> {
  const c = await Connection.connect({ broker: address, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  cleanups.push(() => c.destroy());
  return c;
}

function consumer(conn: Connection, topic: string, subscription: string, extra: { prefetch?: number; create?: SubscriptionConfigInput } = {}): PushConsumer {
  const c = new PushConsumer(conn, { topic, subscription, ...extra, create: { start: 'earliest', ...extra.create } });
  cleanups.push(() => c.close({ timeoutMs: 100 }));
  return c;
}


/** Nothing arrives within `ms`. */
async function quiet(c: PushConsumer, ms: number): Promise<void> {
  const m = await c.receive({ timeoutMs: ms });
  expect(m === undefined ? undefined : { offset: m.offset, attempt: m.attempt }).toBeUndefined();
}

/** Everything in partition 0 of `topic`, decoded. */
async function readAll(conn: Connection, topic: string): Promise<Message[]> {
  const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 1, maxBytes: 1 << 20, partitions: [{ topic, partition: 0, offset: 0 }] });
  return decodeBatches(res.partitions[0]?.records ?? Buffer.alloc(0)).map((r) => toMessage(topic, 0, r));
}

function headerText(m: Message | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(m?.headers ?? {}).map(([k, v]) => [k, v.toString('utf8')]));
}

/** Records the requests a connection sends, by api name. */
function spy(conn: Connection): Array<{ api: string; body: unknown }> {
  const calls: Array<{ api: string; body: unknown }> = [];
  const original = conn.request.bind(conn);
  conn.request = ((api: string, body: unknown, options?: unknown) => {
    calls.push({ api, body });
    return (original as (a: string, b: unknown, o?: unknown) => Promise<unknown>)(api, body, options);
  }) as typeof conn.request;
  return calls;
}

/** Polls `read` until `done` holds (every 20 ms, up to 5 s); returns the last value. */
async function until<T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const v = await read();
    if (done(v) || Date.now() > deadline) return v;
    await sleep(20);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function setup(topic: string, messages: readonly TestMessage[], partitions = 1): Promise<{ b: RunningBroker; conn: Connection }> {
  const b = await broker();
  const conn = await connect(b.address);
  await conn.request('CreateTopic', { topic, partitions });
  if (messages.length > 0) await produceRaw(conn, topic, 0, messages);
  return { b, conn };
}

describe('PushConsumer', () => {
  it('round-trips: produce, push-consume, ack; describe shows nothing pending', async () => {
    const { conn } = await setup('rt', [{ key: 'k', value: { n: 1 }, headers: { trace: 'x' } }, { value: 'two' }, { value: Buffer.from([1, 2]) }]);
    const c = consumer(conn, 'rt', 'rt-sub');
    const got = await take(c, 3);
    expect(got.map((m) => [m.offset, m.attempt, m.redelivered])).toEqual([[0, 1, false], [1, 1, false], [2, 1, false]]);
    expect(got[0]?.value).toEqual({ n: 1 });
    expect(got[0]?.key?.toString()).toBe('k');
    expect(got[0]?.headers['trace']?.toString()).toBe('x');
    expect(got[1]?.value).toBe('two');
    await Promise.all(got.map((m) => m.ack()));
    const d = await conn.request('DescribeSubscription', { subscription: 'rt-sub' });
    expect(d).toMatchObject({ subscription: 'rt-sub', topic: 'rt', pending: 0, inFlight: 0, deadLettered: 0 });
    expect(d.consumers).toHaveLength(1);
    await c.close();
    expect((await conn.request('DescribeSubscription', { subscription: 'rt-sub' })).consumers).toHaveLength(0);
  });
});

describe('PushConsumer decoding', () => {
  it('delivers slices of large batches exactly: keys, values, headers and offsets, also for redeliveries in between', async () => {
    const { conn } = await setup('slices', []);
    const batches = [60, 1, 45];
    let base = 0;
    const expected: Array<{ offset: number; key: string | undefined; value: unknown; header: string }> = [];
    for (const n of batches) {
      const messages = Array.from({ length: n }, (_, i) => ({
        ...(i % 3 === 0 ? {} : { key: `k${(base + i) % 5}` }),
        value: i % 2 === 0 ? { n: base + i } : `v${base + i}`,
        headers: { seq: String(base + i) },
      }));
      expect(await produceRaw(conn, 'slices', 0, messages)).toBe(base);
      messages.forEach((m, i) => expected.push({ offset: base + i, key: m.key, value: m.value, header: String(base + i) }));
      base += n;
    }
    const c = consumer(conn, 'slices', 'slices-sub', { prefetch: 7, create: { ackWaitMs: 30_000 } });
    const seen = new Map<number, { key: string | undefined; value: unknown; header: string }>();
    let nacked = 0;
    while (seen.size < expected.length) {
      const [m] = await take(c, 1);
      if (m === undefined) break;
      // Every 10th first attempt is nacked, so redeliveries share Deliver frames with new offsets.
      if (m.attempt === 1 && m.offset % 10 === 0) {
        nacked++;
        await m.nack();
        continue;
      }
      expect(seen.has(m.offset)).toBe(false);
      seen.set(m.offset, { key: m.key?.toString('utf8'), value: m.value, header: headerText(m).seq ?? '' });
      await m.ack();
    }
    expect(nacked).toBe(11);
    expect([...seen].sort((a, b) => a[0] - b[0]).map(([offset, m]) => ({ offset, ...m }))).toEqual(expected);
    expect(await conn.request('DescribeSubscription', { subscription: 'slices-sub' })).toMatchObject({ pending: 0, inFlight: 0 });
  });
});

describe('PushConsumer settlement', () => {
  it('sends the settlements of one tick in one Settle request, each promise with its own result', async () => {
    const { conn } = await setup('batch', Array.from({ length: 5 }, (_, i) => ({ value: `m${i}` })));
    const calls = spy(conn);
    const c = consumer(conn, 'batch', 'batch-sub');
    const got = await take(c, 5);
    const results = await Promise.allSettled([got[0]?.ack(), got[1]?.ack({ receipt: true }), got[2]?.nack({ delayMs: 60_000 }), got[3]?.ack(), got[3]?.ack()]);
    const settles = calls.filter((x) => x.api === 'Settle');
    expect(settles).toHaveLength(1);
    expect(settles[0]?.body).toMatchObject({ receipt: true, items: [[0, 0, 1, 0], [0, 1, 1, 0], [0, 2, 1, 1, 60_000], [0, 3, 1, 0]] });
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    expect(hasCode((results[4] as PromiseRejectedResult).reason, 'UNKNOWN_DELIVERY')).toBe(true); // settled twice: refused locally
    await got[4]?.ack();
    const d = await conn.request('DescribeSubscription', { subscription: 'batch-sub' });
    expect(d.pending).toBe(1); // the nacked one waits for its delay
  });

  it('reject() dead-letters at once with reason rejected', async () => {
    const { conn } = await setup('rej', [{ key: 'k', value: 'bad', headers: { h: '1' } }, { value: 'good' }]);
    const c = consumer(conn, 'rej', 'rej-sub', { create: { maxDeliveries: 5 } });
    const [bad, good] = await take(c, 2);
    const rejected = Date.now();
    await bad?.reject();
    await good?.ack();
    // Without a receipt the Settle answer does not wait for the dead letter's append.
    const letters = await until(() => readAll(conn, 'rej.dlq'), (l) => l.length > 0);
    expect(Date.now() - rejected).toBeLessThan(1_000);
    expect(letters).toHaveLength(1);
    expect(letters[0]?.value).toBe('bad');
    expect(letters[0]?.key?.toString()).toBe('k');
    expect(headerText(letters[0])).toMatchObject({ h: '1', 'sluice-dlq-subscription': 'rej-sub', 'sluice-dlq-topic': 'rej', 'sluice-dlq-partition': '0', 'sluice-dlq-offset': '0', 'sluice-dlq-attempts': '1', 'sluice-dlq-reason': 'rejected' });
    expect(await conn.request('DescribeSubscription', { subscription: 'rej-sub' })).toMatchObject({ pending: 0, inFlight: 0, deadLettered: 1 });
  });

  it('delivers a poison message exactly maxDeliveries times, then dead-letters it once', async () => {
    const { conn } = await setup('poison', [{ value: 'poison' }, { value: 'fine' }]);
    const c = consumer(conn, 'poison', 'poison-sub', { create: { maxDeliveries: 3, ackWaitMs: 5_000 } });
    const attempts: number[] = [];
    for (;;) {
      const m = await c.receive({ timeoutMs: 700 });
      if (m === undefined) break;
      if (m.value === 'fine') await m.ack();
      else {
        attempts.push(m.attempt);
        await m.nack();
      }
    }
    expect(attempts).toEqual([1, 2, 3]);
    const letters = await readAll(conn, 'poison.dlq');
    expect(letters).toHaveLength(1);
    expect(letters[0]?.value).toBe('poison');
    expect(headerText(letters[0])).toMatchObject({ 'sluice-dlq-subscription': 'poison-sub', 'sluice-dlq-topic': 'poison', 'sluice-dlq-partition': '0', 'sluice-dlq-offset': '0', 'sluice-dlq-attempts': '3', 'sluice-dlq-reason': 'max-deliveries' });
    expect(await conn.request('DescribeSubscription', { subscription: 'poison-sub' })).toMatchObject({ pending: 0, inFlight: 0, deadLettered: 1 });
  });

  it("redelivers a stalled consumer's message after the ack wait; its late ack is STALE_ACK and does not settle the new attempt", async () => {
    const { b, conn } = await setup('stall', [{ value: 'slow' }]);
    const stalled = consumer(conn, 'stall', 'stall-sub', { prefetch: 1, create: { ackWaitMs: 300 } });
    const [first] = await take(stalled, 1);
    const other = consumer(await connect(b.address), 'stall', 'stall-sub');
    const started = Date.now();
    const [again] = await take(other, 1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    // The broker's round robin picks which consumer a redelivery goes to: the stalled one, whose
    // window the expiry freed, may be handed attempt 2 first and let it expire too.
    expect([again?.offset, again?.redelivered]).toEqual([0, true]);
    expect(again?.attempt).toBeGreaterThanOrEqual(2);
    const late = await rejection(first?.ack() as Promise<void>);
    expect(late.code).toBe('STALE_ACK');
    await again?.ack();
    // Whatever earlier attempt the stalled consumer still holds is stale as well.
    for (let m = await stalled.receive({ timeoutMs: 600 }); m !== undefined; m = await stalled.receive({ timeoutMs: 600 })) {
      expect([m.offset, m.attempt < (again?.attempt ?? 0)]).toEqual([0, true]);
      expect((await rejection(m.ack())).code).toBe('STALE_ACK');
    }
    await quiet(other, 600);
    expect(await conn.request('DescribeSubscription', { subscription: 'stall-sub' })).toMatchObject({ pending: 0, inFlight: 0 });
  });

  it('nack({ delayMs }) and the backoff list hold redelivery back', async () => {
    const { conn } = await setup('delay', [{ value: 'x' }]);
    const c = consumer(conn, 'delay', 'delay-sub', { create: { backoffMs: [250, 500], ackWaitMs: 10_000 } });
    const [m1] = await take(c, 1);
    let t = Date.now();
    await m1?.nack({ delayMs: 400 });
    const [m2] = await take(c, 1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(390);
    expect(m2?.attempt).toBe(2);
    t = Date.now();
    await m2?.nack(); // backoff after attempt 2: 500 ms
    const [m3] = await take(c, 1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(490);
    expect(m3?.attempt).toBe(3);
    t = Date.now();
    await m3?.nack(); // the last backoff repeats
    const [m4] = await take(c, 1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(490);
    await m4?.ack();
  });

  it('inProgress() keeps a message past the ack wait without redelivery', async () => {
    const { b, conn } = await setup('busy', [{ value: 'long job' }]);
    const c = consumer(conn, 'busy', 'busy-sub', { create: { ackWaitMs: 300 } });
    const [m] = await take(c, 1);
    const other = consumer(await connect(b.address), 'busy', 'busy-sub');
    await other.start();
    const until = Date.now() + 1_000;
    const watcher = quiet(other, 1_100);
    while (Date.now() < until) {
      await m?.inProgress();
      await sleep(120);
    }
    await m?.ack(); // still the current attempt: accepted
    await watcher;
    await quiet(c, 400);
    expect(await conn.request('DescribeSubscription', { subscription: 'busy-sub' })).toMatchObject({ pending: 0, redelivered: 0 });
  });
});

describe('PushConsumer flow control and lifecycle', () => {
  it('iterates with for await, stops on its AbortSignal, and closes with the SluiceClient that made it', async () => {
    const { b, conn } = await setup('iter', Array.from({ length: 6 }, (_, i) => ({ value: i })));
    const client = await connectClient({ broker: b.address });
    cleanups.push(() => client.close());
    const stop = new AbortController();
    const c = client.pushConsumer({ topic: 'iter', subscription: 'iter-sub', prefetch: 2, create: { start: 'earliest' }, signal: stop.signal });
    const values: unknown[] = [];
    for await (const m of c) {
      values.push(m.value);
      await m.ack();
      if (values.length === 4) stop.abort();
    }
    expect(values).toEqual([0, 1, 2, 3]);
    const d = await conn.request('DescribeSubscription', { subscription: 'iter-sub' });
    expect(d).toMatchObject({ pending: 2, inFlight: 0, consumers: [] });
    const again = client.pushConsumer({ topic: 'iter', subscription: 'iter-sub' });
    const rest = await take(again, 2);
    expect(rest.map((m) => m.value)).toEqual([4, 5]);
    const acking = rest.map((m) => m.ack());
    await client.close(); // waits for the acks above, then unsubscribes and closes the connection
    await Promise.all(acking);
    expect(await conn.request('DescribeSubscription', { subscription: 'iter-sub' })).toMatchObject({ pending: 0, consumers: [] });
  });

  it('grants credit at the refill threshold and never holds more than prefetch', async () => {
    const { conn } = await setup('flow', Array.from({ length: 40 }, (_, i) => ({ value: i })));
    const calls = spy(conn);
    const c = consumer(conn, 'flow', 'flow-sub', { prefetch: 8 });
    const seen: number[] = [];
    while (seen.length < 40) {
      const [m] = await take(c, 1);
      if (m === undefined) break;
      seen.push(m.offset);
      const d = await conn.request('DescribeSubscription', { subscription: 'flow-sub' });
      const me = d.consumers[0];
      expect((me?.inFlight ?? 0) + (me?.credit ?? 0)).toBeLessThanOrEqual(8);
      await m.ack();
    }
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => i));
    const credits = calls.filter((x) => x.api === 'Credit').map((x) => (x.body as { credit: number }).credit);
    expect(credits.length).toBeGreaterThan(0);
    expect(credits.every((n) => n >= 4)).toBe(true); // threshold 0.5 of 8: never one at a time
    expect(credits.length).toBeLessThanOrEqual(40 / 4);
  });

  it('close() waits for yielded messages, then gives back the unyielded ones at once', async () => {
    const { b, conn } = await setup('close', Array.from({ length: 5 }, (_, i) => ({ value: i })));
    const c = consumer(conn, 'close', 'close-sub', { prefetch: 5, create: { ackWaitMs: 30_000 } });
    const [m0, m1] = await take(c, 2);
    await m0?.ack();
    let closed = false;
    const closing = c.close({ timeoutMs: 5_000 }).then(() => (closed = true));
    expect(await c.receive()).toBeUndefined(); // iteration ends at once
    await sleep(100);
    expect(closed).toBe(false); // m1 is still being worked on
    await m1?.ack();
    await closing;
    expect(hasCode(await rejection(m1?.ack() as Promise<void>), 'UNKNOWN_DELIVERY')).toBe(true);
    const other = consumer(await connect(b.address), 'close', 'close-sub');
    const started = Date.now();
    const rest = await take(other, 3);
    expect(Date.now() - started).toBeLessThan(1_000); // released, not left to the 30 s ack wait
    expect(rest.map((m) => m.offset)).toEqual([2, 3, 4]);
  });

  it('a late settle after close() times out is refused with CLIENT_CLOSED and the message is redelivered', async () => {
    const { b, conn } = await setup('late', [{ value: 'x' }]);
    const c = consumer(conn, 'late', 'late-sub', { create: { ackWaitMs: 30_000 } });
    const [m] = await take(c, 1);
    await c.close({ timeoutMs: 50 });
    expect(hasCode(await rejection(m?.ack() as Promise<void>), 'CLIENT_CLOSED')).toBe(true);
    const [again] = await take(consumer(await connect(b.address), 'late', 'late-sub'), 1);
    expect([again?.offset, again?.attempt]).toEqual([0, 2]);
  });

  it('a consumer whose connection is destroyed with unacked prefetch loses nothing', async () => {
    const { b, conn } = await setup('kill', Array.from({ length: 8 }, (_, i) => ({ value: i })));
    const victimConn = await connect(b.address);
    const victim = consumer(victimConn, 'kill', 'kill-sub', { prefetch: 5, create: { ackWaitMs: 30_000 } });
    const held = await take(victim, 3);
    expect(held.map((m) => m.offset)).toEqual([0, 1, 2]);
    victimConn.destroy();
    expect(hasCode(await rejection(victim.receive()), 'CONNECTION_CLOSED')).toBe(true);
    expect(hasCode(await rejection(held[0]?.ack() as Promise<void>), 'UNKNOWN_CONSUMER')).toBe(true);
    const survivor = consumer(conn, 'kill', 'kill-sub');
    const got = await take(survivor, 8);
    expect(got.map((m) => m.offset).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(got.filter((m) => m.redelivered).map((m) => m.offset).sort()).toEqual([0, 1, 2, 3, 4]); // the whole prefetch went out
    await Promise.all(got.map((m) => m.ack()));
    expect(await conn.request('DescribeSubscription', { subscription: 'kill-sub' })).toMatchObject({ pending: 0 });
  });

  it('deleting the topic of a subscription with unsaved state leaves the broker serving', async () => {
    const { b, conn } = await setup('gone', Array.from({ length: 20 }, (_, i) => ({ value: i })));
    const c = consumer(conn, 'gone', 'gone-sub', { prefetch: 20 });
    const got = await take(c, 20);
    await Promise.all(got.map((m) => m.ack())); // saved within the flush interval, not at once
    await c.close();
    await conn.request('DeleteTopic', { topic: 'gone' });
    await sleep(250); // past two flush intervals: the subscription's rows went with the topic
    expect((await conn.request('ListTopics', {})).topics.map((t) => t.topic)).not.toContain('gone');
    expect(b.address).toBeTruthy();
    await conn.request('CreateTopic', { topic: 'gone', partitions: 1 });
    expect((await conn.request('ListSubscriptions', {})).subscriptions.map((x) => x.subscription)).not.toContain('gone-sub');
  });

  it('subscribes again after a reconnect; settles of the old consumer fail with UNKNOWN_CONSUMER', async () => {
    const b = await broker();
    const sockets: Socket[] = [];
    const conn = await Connection.connect({
      broker: b.address,
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
      transport: ({ host, port }) => {
        const s = tcpConnect({ host, port });
        sockets.push(s);
        return s;
      },
    });
    cleanups.push(() => conn.destroy());
    await conn.request('CreateTopic', { topic: 'rc', partitions: 1 });
    await produceRaw(conn, 'rc', 0, Array.from({ length: 4 }, (_, i) => ({ value: i })));
    const c = consumer(conn, 'rc', 'rc-sub', { prefetch: 4, create: { ackWaitMs: 30_000 } });
    const [m0] = await take(c, 1);
    const before = c.consumerId;
    sockets.at(-1)?.destroy();
    while (c.consumerId === before || c.consumerId === undefined) await sleep(10);
    const again = await take(c, 4);
    expect(c.consumerId).not.toBe(before);
    expect(again.map((m) => [m.offset, m.attempt])).toEqual([[0, 2], [1, 2], [2, 2], [3, 2]]);
    expect(hasCode(await rejection(m0?.ack() as Promise<void>), 'UNKNOWN_CONSUMER')).toBe(true);
    await Promise.all(again.map((m) => m.ack()));
    expect(await conn.request('DescribeSubscription', { subscription: 'rc-sub' })).toMatchObject({ pending: 0, consumers: [{ consumerId: c.consumerId }] });
  });

  it('a first Subscribe whose reply is lost with the connection is retried after the reconnect', async () => {
    const b = await broker();
    const proxy = await TcpProxy.start(b.port);
    cleanups.push(() => proxy.close());
    const conn = await connect(proxy.address);
    await conn.request('CreateTopic', { topic: 'fs', partitions: 1 });
    await produceRaw(conn, 'fs', 0, [{ value: 'a' }]);
    const cut = proxy.cutOnNextReply();
    const c = consumer(conn, 'fs', 'fs-sub');
    const started = c.start();
    await cut;
    await started; // before the fix: rejected with CONNECTION_CLOSED, and the consumer was dead
    const [m] = await take(c, 1);
    expect(m?.offset).toBe(0);
    await m?.ack();
  });
});
