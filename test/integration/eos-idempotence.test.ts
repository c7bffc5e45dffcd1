import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import type { SluiceClient } from '../../client/client.js';
import { Connection } from '../../client/connection.js';
import type { Producer, ProducerOptions, RecordMetadata } from '../../client/producer.js';
import { hasCode } from '../../client/protocol/errors.js';
import type { ProduceResponse } from '../../client/protocol/messages/produce.js';
import { BATCH_OVERHEAD, decodeBatches, readBatchHeader, type BatchHeader } from '../../client/protocol/record-batch.js';
import { until } from '../helpers/async.js';
import { MemoryLogger } from '../helpers/logger.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { tempDir } from '../helpers/temp-dir.js';
import { answerRecordingClient } from '../helpers/produce-answers.js';

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

async function direct(b: RunningBroker): Promise<Connection> {
  const conn = await Connection.connect({ broker: b.address, reconnect: false });
  cleanups.push(() => conn.destroy());
  return conn;
}

async function client(address: string): Promise<{ client: SluiceClient; answers: ProduceResponse[] }> {
  const recorded = await answerRecordingClient(address);
  cleanups.push(() => recorded.client.connection.destroy());
  return recorded;
}

function producer(c: SluiceClient, options: ProducerOptions = {}): Producer {
  const p = c.producer(options);
  cleanups.push(() => p.close().catch(() => undefined));
  return p;
}

/** Every batch header and record value of a partition, read_uncommitted. */
async function readLog(conn: Connection, topic: string, partition: number): Promise<{ headers: BatchHeader[]; values: string[] }> {
  const headers: BatchHeader[] = [];
  const values: string[] = [];
  for (let offset = 0; ; ) {
    const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 4 << 20, partitions: [{ topic, partition, offset }] });
    const p = res.partitions[0]!;
    for (let pos = 0; pos < p.records.length; ) {
      const h = readBatchHeader(p.records, pos);
      if (h.baseOffset >= offset) headers.push(h);
      pos += h.batchLength + BATCH_OVERHEAD;
    }
    for (const r of decodeBatches(p.records)) if (r.offset >= offset) values.push(r.value!.toString());
    if (p.nextOffset <= offset) return { headers, values };
    offset = p.nextOffset;
  }
}

async function endOffset(conn: Connection, topic: string, partition: number): Promise<number> {
  const res = await conn.request('ListOffsets', { partitions: [{ topic, partition, at: 'latest' }] });
  return res.partitions[0]!.offset;
}

describe('the idempotent producer (default)', () => {
  it('stamps every batch with its producer id, epoch 0 and per-partition sequences; idempotent: false does not', async () => {
    const b = await broker();
    const conn = await direct(b);
    await conn.request('CreateTopic', { topic: 'seq', partitions: 2 });
    const { client: c } = await client(b.address);
    const p = producer(c, { lingerMs: 0 });
    for (const [partition, n] of [[0, 3], [1, 2], [0, 4], [1, 1]] as const) {
      await Promise.all(Array.from({ length: n }, (_, i) => p.send({ topic: 'seq', partition, value: `p${partition}-${i}` })));
    }
    const p0 = await readLog(conn, 'seq', 0);
    const p1 = await readLog(conn, 'seq', 1);
    const id = p.identity!;
    expect(id.producerId).toBeGreaterThanOrEqual(0);
    expect(id.producerEpoch).toBe(0);
    expect(p0.headers.map((h) => [h.producerId, h.producerEpoch, h.baseSequence, h.recordCount, h.attributes])).toEqual([
      [id.producerId, 0, 0, 3, 0],
      [id.producerId, 0, 3, 4, 0],
    ]);
    expect(p1.headers.map((h) => [h.producerId, h.baseSequence, h.recordCount])).toEqual([
      [id.producerId, 0, 2],
      [id.producerId, 2, 1],
    ]);

    const plain = producer(c, { idempotent: false });
    await plain.send({ topic: 'seq', partition: 1, value: 'plain' });
    expect(plain.identity).toBeUndefined();
    const last = (await readLog(conn, 'seq', 1)).headers.at(-1)!;
    expect([last.producerId, last.producerEpoch, last.baseSequence]).toEqual([-1, -1, -1]);
  });

  it('a send whose reply was lost is retried and answered as a duplicate: one copy, its original offset', async () => {
    const b = await broker();
    const conn = await direct(b);
    await conn.request('CreateTopic', { topic: 'lost', partitions: 1 });
    const proxy = await TcpProxy.start(b.port);
    cleanups.push(() => proxy.close());
    const { client: c, answers } = await client(proxy.address);
    const p = producer(c, { lingerMs: 0 });
    expect((await p.send({ topic: 'lost', value: 'first' })).offset).toBe(0);

    proxy.dropReplies();
    const pending = p.send({ topic: 'lost', value: 'second' });
    // The broker wrote it; the producer heard nothing.
    await until(() => proxy.dropped > 0);
    while ((await endOffset(conn, 'lost', 0)) < 2) await new Promise((r) => setTimeout(r, 5));
    proxy.cut();
    const meta = await pending;
    expect(meta.offset).toBe(1);
    expect(answers.at(-1)?.results[0]).toMatchObject({ baseOffset: 1, duplicate: true });
    expect((await readLog(conn, 'lost', 0)).values).toEqual(['first', 'second']);
    expect((await p.send({ topic: 'lost', value: 'third' })).offset).toBe(2);
  });

  it('thousands of sends across repeated lost replies and connection cuts: every message exactly once, in order', async () => {
    const b = await broker();
    const conn = await direct(b);
    const partitions = 3;
    await conn.request('CreateTopic', { topic: 'chaos', partitions });
    const proxy = await TcpProxy.start(b.port);
    cleanups.push(() => proxy.close());
    const { client: c, answers } = await client(proxy.address);
    const p = producer(c, { lingerMs: 2, retries: 1_000, maxBatchBytes: 16 * 1024 });

    let stop = false;
    let cuts = 0;
    const chaos = (async () => {
      while (!stop) {
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
        if (stop) break;
        await proxy.loseRepliesAndCut(10 + Math.random() * 20);
        cuts++;
      }
    })();
    // At least 6,000 sends, and on until the faults did their part (4 cuts, a retry answered
    // as a duplicate): how many sends that takes depends on how fast this machine sends.
    const sends: Promise<RecordMetadata>[] = [];
    const duplicated = (): boolean => answers.some((a) => a.results.some((r) => r.duplicate === true));
    for (let i = 0; i < 6_000 || ((cuts <= 3 || !duplicated()) && i < 200_000); i++) {
      sends.push(p.send({ topic: 'chaos', partition: i % partitions, value: `m${i}` }));
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 2));
    }
    const total = sends.length;
    const acks = await Promise.all(sends);
    stop = true;
    await chaos;

    expect(cuts).toBeGreaterThan(3);
    // Some batches were written with their reply lost, and their retries were recognised.
    expect(answers.some((a) => a.results.some((r) => r.duplicate === true))).toBe(true);
    for (let partition = 0; partition < partitions; partition++) {
      const expected = Array.from({ length: total }, (_, i) => i).filter((i) => i % partitions === partition).map((i) => `m${i}`);
      const { values } = await readLog(conn, 'chaos', partition);
      expect(values).toEqual(expected);
      // Each send resolved with the offset its message has in the log.
      const offsets = acks.filter((a) => a.partition === partition).map((a) => a.offset);
      expect(offsets).toEqual(expected.map((_, i) => i));
    }
  });

  it('a final failure that leaves the sequence unknown fails those sends only; the producer carries on under a new producer id', async () => {
    const b = await broker();
    const conn = await direct(b);
    await conn.request('CreateTopic', { topic: 'reset', partitions: 1 });
    const proxy = await TcpProxy.start(b.port);
    cleanups.push(() => proxy.close());
    const { client: c } = await client(proxy.address);
    const p = producer(c, { lingerMs: 0, retries: 0 });
    await p.send({ topic: 'reset', value: 'a' });
    const before = p.identity!;
    proxy.dropReplies();
    const lost = p.send({ topic: 'reset', value: 'b' });
    while ((await endOffset(conn, 'reset', 0)) < 2) await new Promise((r) => setTimeout(r, 5));
    proxy.cut();
    // No retries left: the send fails although 'b' was written (the at-least-once caveat of a failed send).
    expect(hasCode(await lost.then(() => undefined, (e: unknown) => e), 'CONNECTION_CLOSED')).toBe(true);
    expect((await p.send({ topic: 'reset', value: 'c' })).offset).toBe(2);
    expect(p.identity!.producerId).not.toBe(before.producerId);
    const { headers, values } = await readLog(conn, 'reset', 0);
    expect(values).toEqual(['a', 'b', 'c']);
    expect(headers.at(-1)).toMatchObject({ producerId: p.identity!.producerId, baseSequence: 0 });
  });
});
