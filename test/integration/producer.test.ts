import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../client/admin.js';
import { connect } from '../../client/client.js';
import { Connection } from '../../client/connection.js';
import { deferred } from '../../client/internal/deferred.js';
import { partitionForKey } from '../../client/partitioner.js';
import { Producer, type ProducerOptions, type RecordMetadata } from '../../client/producer.js';
import { SluiceError, hasCode } from '../../client/protocol/errors.js';
import { fromErrorBody } from '../../client/protocol/messages/error.js';
import type { ProduceRequest } from '../../client/protocol/messages/produce.js';
import { decodeBatches, decodeRecords, readBatchHeader } from '../../client/protocol/record-batch.js';
import { toMessage, type Message } from '../../client/value-codec.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';
import { rejection, until } from '../helpers/async.js';

let dir: ReturnType<typeof tempDir>;
let broker: RunningBroker;
let admin: Admin;
let adminConn: Connection;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  dir = tempDir();
  broker = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
  adminConn = await Connection.connect({ broker: broker.address });
  admin = new Admin(adminConn);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await adminConn?.close();
  await broker?.close();
  dir?.remove();
});

/** A producer on its own connection, with every Produce request recorded (and optionally held). */
async function producerOn(address: string, options: ProducerOptions = {}, gate?: () => Promise<void>): Promise<{ producer: Producer; conn: Connection; requests: ProduceRequest[]; failures: unknown[] }> {
  const conn = await Connection.connect({ broker: address });
  const requests: ProduceRequest[] = [];
  const failures: unknown[] = [];
  const request = conn.request.bind(conn);
  conn.request = (async (api, body, opts) => {
    if (api !== 'Produce') return request(api, body, opts);
    requests.push(body as ProduceRequest);
    await gate?.();
    return request(api, body, opts).catch((err: unknown) => {
      failures.push(err);
      throw err;
    });
  }) as typeof conn.request;
  const producer = new Producer(conn, options);
  cleanups.push(async () => {
    await producer.close();
    await conn.close();
  });
  return { producer, conn, requests, failures };
}

async function readPartition(conn: Connection, topic: string, partition: number): Promise<Message[]> {
  const out: Message[] = [];
  for (let offset = 0; ; ) {
    const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic, partition, offset }] });
    const p = res.partitions[0]!;
    if (p.error !== undefined) throw fromErrorBody(p.error);
    const records = decodeBatches(p.records).filter((r) => r.offset >= offset);
    for (const r of records) out.push(toMessage(topic, partition, r));
    offset = (records.at(-1)?.offset ?? offset - 1) + 1;
    if (records.length === 0 || offset >= p.highWatermark) return out;
  }
}


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Producer', () => {
  it('round-trips keys, headers and msgpack, string and Buffer values', async () => {
    await admin.createTopic('rt', { partitions: 3 });
    const { producer } = await producerOn(broker.address);
    const sent = [
      { topic: 'rt', key: 'user-1', value: { id: 1, tags: ['a', 'b'], nested: { ok: true } }, headers: { trace: 'abc', bin: Buffer.from([0, 255]) } },
      { topic: 'rt', key: Buffer.from([1, 2, 3]), value: 'héllo wörld' },
      { topic: 'rt', key: null, value: Buffer.from('raw bytes'), timestamp: 1_600_000_000_000 },
      { topic: 'rt', partition: 2, value: [1, 'two', 3.5, null] },
      { topic: 'rt', value: null },
    ];
    const acks = await producer.sendMany(sent);
    for (const [i, m] of sent.entries()) {
      const ack = acks[i]!;
      if (m.partition !== undefined) expect(ack.partition).toBe(2);
      if (typeof m.key === 'string') expect(ack.partition).toBe(partitionForKey(Buffer.from(m.key), 3));
      const log = await readPartition(adminConn, 'rt', ack.partition);
      const got = log.find((r) => r.offset === ack.offset);
      expect(got?.value).toEqual(m.value);
      expect(got?.timestamp).toBe(m.timestamp ?? ack.timestamp);
      expect(got?.key).toEqual(m.key === undefined || m.key === null ? null : Buffer.from(m.key));
      for (const [k, v] of Object.entries(m.headers ?? {})) expect(got?.headers[k]).toEqual(Buffer.from(v));
    }
  });

  it('keeps per-partition order under many concurrent sends, and a key on one partition', async () => {
    await admin.createTopic('order', { partitions: 4 });
    const { producer } = await producerOn(broker.address, { lingerMs: 1, maxBatchBytes: 4 * 1024, maxInFlight: 5 });
    const n = 3_000;
    const acks = await Promise.all(Array.from({ length: n }, (_, seq) => producer.send({ topic: 'order', key: `k${seq % 13}`, value: { key: `k${seq % 13}`, seq } })));
    const byKey = new Map<string, RecordMetadata[]>();
    acks.forEach((a, seq) => {
      const list = byKey.get(`k${seq % 13}`) ?? [];
      list.push(a);
      byKey.set(`k${seq % 13}`, list);
    });
    for (const [key, list] of byKey) {
      expect(new Set(list.map((a) => a.partition))).toEqual(new Set([partitionForKey(Buffer.from(key), 4)]));
      // Acked offsets rise in send order within the key's partition.
      for (let i = 1; i < list.length; i++) expect(list[i]!.offset).toBeGreaterThan(list[i - 1]!.offset);
    }
    let total = 0;
    for (let p = 0; p < 4; p++) {
      const last = new Map<string, number>();
      for (const m of await readPartition(adminConn, 'order', p)) {
        const { key, seq } = m.value as { key: string; seq: number };
        expect(seq).toBeGreaterThan(last.get(key) ?? -1);
        last.set(key, seq);
        total++;
      }
    }
    expect(total).toBe(n);
  });

  it('spreads keyless messages over partitions, sticking to one per batch', async () => {
    await admin.createTopic('keyless', { partitions: 4 });
    const { producer, requests } = await producerOn(broker.address, { lingerMs: 1, maxBatchBytes: 1024 });
    const acks = await Promise.all(Array.from({ length: 400 }, (_, i) => producer.send({ topic: 'keyless', value: Buffer.alloc(100, i) })));
    const perPartition = [0, 1, 2, 3].map((p) => acks.filter((a) => a.partition === p).length);
    for (const count of perPartition) expect(count).toBeGreaterThan(40);
    // Sticky: the partition changes only when a batch closes, so consecutive sends form runs.
    const switches = acks.filter((a, i) => i > 0 && a.partition !== acks[i - 1]!.partition).length;
    const batches = requests.reduce((n, r) => n + r.batches.length, 0);
    expect(switches).toBeLessThan(batches);
    expect(switches).toBeLessThan(400 / 4);
  });

  it('batches sends that arrive within lingerMs into few requests', async () => {
    await admin.createTopic('linger', { partitions: 2 });
    const { producer, requests } = await producerOn(broker.address, { lingerMs: 20 });
    const acks = await Promise.all(Array.from({ length: 1_000 }, (_, i) => producer.send({ topic: 'linger', key: `k${i}`, value: i })));
    expect(requests.length).toBe(1);
    expect(requests[0]!.batches.map((b) => b.partition).sort()).toEqual([0, 1]);
    const counts = requests[0]!.batches.map((b) => decodeRecords(b.batch).length);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(1_000);
    expect(new Set(acks.map((a) => `${a.partition}:${a.offset}`)).size).toBe(1_000);

    // lingerMs 0 still batches what arrives in the same tick.
    const { producer: eager, requests: eagerRequests } = await producerOn(broker.address, { lingerMs: 0 });
    await Promise.all(Array.from({ length: 200 }, (_, i) => eager.send({ topic: 'linger', partition: i % 2, value: i })));
    expect(eagerRequests.length).toBe(1);
  });

  it('rejects unknown topics and partitions with the broker error, sparing the rest', async () => {
    await admin.createTopic('known', { partitions: 2 });
    const { producer } = await producerOn(broker.address);
    const missingKeyed = producer.send({ topic: 'missing', key: 'k', value: 1 });
    const missingExplicit = producer.send({ topic: 'missing', partition: 0, value: 1 });
    const badPartition = producer.send({ topic: 'known', partition: 7, value: 1 });
    const fine = producer.send({ topic: 'known', partition: 1, value: 'ok' });
    expect(hasCode(await rejection(missingKeyed), 'TOPIC_NOT_FOUND')).toBe(true);
    expect(hasCode(await rejection(missingExplicit), 'TOPIC_NOT_FOUND')).toBe(true);
    const err = await rejection(badPartition);
    expect(hasCode(err, 'PARTITION_NOT_FOUND')).toBe(true);
    expect((err as Error).message).toContain('0..1');
    expect(await fine).toMatchObject({ topic: 'known', partition: 1, offset: 0 });
    expect(hasCode(await rejection(producer.send({ topic: 'known', partition: -1, value: 1 })), 'PARTITION_NOT_FOUND')).toBe(true);
  });

  it('validates options once, naming the option', () => {
    expect(() => new Producer(adminConn, { maxBatchBytes: 2 << 20 })).toThrow(/maxBatchBytes/);
    expect(() => new Producer(adminConn, { lingerMs: -1 })).toThrow(/lingerMs/);
    expect(() => new Producer(adminConn, { maxInFlght: 2 } as ProducerOptions)).toThrow(/maxInFlght/);
    try {
      new Producer(adminConn, { retries: 1.5 });
    } catch (err) {
      expect(hasCode(err, 'INVALID_CONFIG')).toBe(true);
    }
  });

  it('waits while maxInFlight requests are out and the buffer is full', async () => {
    await admin.createTopic('pressure', { partitions: 1 });
    let open = deferred<void>();
    const { producer, requests } = await producerOn(broker.address, { lingerMs: 0, maxInFlight: 1, maxBatchBytes: 1024, maxBufferedBytes: 1024 }, () => open.promise);
    const value = (tag: string): Buffer => Buffer.concat([Buffer.from(tag), Buffer.alloc(400)]);
    const settled: string[] = [];
    const track = (tag: string, p: Promise<unknown>): Promise<unknown> => p.then(() => settled.push(tag), (e: unknown) => settled.push(`${tag}:${(e as { code: string }).code}`));
    const a = track('a', producer.send({ topic: 'pressure', partition: 0, value: value('a') }));
    // Wait for a to be on the wire: a fixed sleep is not enough on a loaded machine.
    await until(() => requests.length === 1);
    const b = track('b', producer.send({ topic: 'pressure', partition: 0, value: value('b') }));
    await sleep(20);
    // a is on the wire and b waits in the partition's open batch: one request, even though b is due.
    expect(requests.length).toBe(1);
    const ac = new AbortController();
    const c = track('c', producer.send({ topic: 'pressure', partition: 0, value: value('c') }, { signal: ac.signal }));
    const d = track('d', producer.send({ topic: 'pressure', partition: 0, value: value('d') }));
    await sleep(20);
    expect(settled).toEqual([]);
    // c waits for buffer room, so aborting it takes it back before it is ever written.
    ac.abort();
    await c;
    expect(settled).toEqual(['c:ABORTED']);
    open.resolve();
    open = { promise: Promise.resolve(), resolve() {}, reject() {} };
    await Promise.all([a, b, d]);
    expect(settled).toEqual(['c:ABORTED', 'a', 'b', 'd']);
    const log = await readPartition(adminConn, 'pressure', 0);
    expect(log.map((m) => (m.value as Buffer).subarray(0, 1).toString())).toEqual(['a', 'b', 'd']);
    expect(requests.length).toBe(3);
  });

  it('flushes without waiting for linger, and refuses sends after close', async () => {
    await admin.createTopic('flush', { partitions: 1 });
    const { producer } = await producerOn(broker.address, { lingerMs: 10_000 });
    const started = Date.now();
    const pending = producer.send({ topic: 'flush', value: 'x' });
    await producer.flush();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await pending).offset).toBe(0);
    // A batch lingering on its timer, then a send that arrives while the flush runs: neither waits out lingerMs.
    const lingering = producer.send({ topic: 'flush', partition: 0, value: 'y' });
    await sleep(5);
    const flushed = producer.flush();
    const during = producer.send({ topic: 'flush', partition: 0, value: 'z' });
    await flushed;
    expect((await lingering).offset).toBe(1);
    expect((await during).offset).toBe(2);
    expect(Date.now() - started).toBeLessThan(2_000);
    await producer.close();
    expect(hasCode(await rejection(producer.send({ topic: 'flush', value: 'y' })), 'CLIENT_CLOSED')).toBe(true);
  });

  it('SluiceClient.close() flushes its producers before closing the connection', async () => {
    await admin.createTopic('client-close', { partitions: 1 });
    const client = await connect({ broker: broker.address });
    const producer = client.producer({ lingerMs: 10_000 });
    const pending = producer.send({ topic: 'client-close', value: 'last words' });
    await client.close();
    expect((await pending).offset).toBe(0);
    expect(client.connection.state).toBe('closed');
    expect(() => client.producer()).toThrow(/closed/);
  });

  it('while a request is in flight, later sends fill ONE open batch that goes out when the reply arrives', async () => {
    await admin.createTopic('open-batch', { partitions: 1 });
    const held = deferred<void>();
    let gated = 0;
    const { producer, requests } = await producerOn(broker.address, { lingerMs: 0 }, () => (gated++ === 0 ? held.promise : Promise.resolve()));
    const first = producer.send({ topic: 'open-batch', partition: 0, value: 'first' });
    await until(() => requests.length === 1);
    // 1,000 sends over several turns of the event loop, all due at once (linger 0), none sent yet.
    const sends: Promise<RecordMetadata>[] = [];
    for (let turn = 0; turn < 10; turn++) {
      for (let i = 0; i < 100; i++) sends.push(producer.send({ topic: 'open-batch', partition: 0, value: `m${turn * 100 + i}` }));
      await new Promise((r) => setImmediate(r));
    }
    await sleep(10);
    expect(requests.length).toBe(1);
    held.resolve();
    expect((await first).offset).toBe(0);
    const acks = await Promise.all(sends);
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 1_000 }, (_, i) => i + 1));
    // Exactly one more request, carrying one batch of all 1,000 in send order.
    expect(requests.length).toBe(2);
    expect(requests[1]!.batches.length).toBe(1);
    const batch = requests[1]!.batches[0]!.batch;
    expect(readBatchHeader(batch).recordCount).toBe(1_000);
    expect(decodeRecords(batch).map((r) => r.value!.toString())).toEqual(Array.from({ length: 1_000 }, (_, i) => `m${i}`));
    const log = await readPartition(adminConn, 'open-batch', 0);
    expect(log.map((m) => m.value)).toEqual(['first', ...Array.from({ length: 1_000 }, (_, i) => `m${i}`)]);
    // Each ack reports the timestamp stored with its record.
    acks.forEach((a) => expect(log[a.offset]!.timestamp).toBe(a.timestamp));
  });

  it('queues full batches behind the request in flight, in order, and still blocks at maxBufferedBytes', async () => {
    await admin.createTopic('open-full', { partitions: 1 });
    const held = deferred<void>();
    let gated = 0;
    const { producer, requests } = await producerOn(broker.address, { lingerMs: 0, maxBatchBytes: 1024, maxBufferedBytes: 4096 }, () => (gated++ === 0 ? held.promise : Promise.resolve()));
    const value = (i: number): Buffer => Buffer.concat([Buffer.from(`${i}`.padStart(3, '0')), Buffer.alloc(197)]);
    const order: number[] = [];
    const sends = Array.from({ length: 40 }, (_, i) => {
      const ac = new AbortController();
      const p = producer.send({ topic: 'open-full', partition: 0, value: value(i) }, { signal: ac.signal });
      return { ac, p: p.then((a) => (order.push(i), a), (err: unknown) => err) };
    });
    await until(() => requests.length >= 1);
    await sleep(20);
    expect(requests.length).toBe(1);
    // About 4 KiB fit (the first batch on the wire, full batches and the open one behind it);
    // the rest wait for room, so they can still be aborted: the last one is.
    sends.at(-1)!.ac.abort();
    // A send already in a batch ignores its signal.
    sends[1]!.ac.abort();
    expect(hasCode(await sends.at(-1)!.p, 'ABORTED')).toBe(true);
    held.resolve();
    const acks = (await Promise.all(sends.slice(0, -1).map((s) => s.p))) as RecordMetadata[];
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 39 }, (_, i) => i));
    expect(order).toEqual(Array.from({ length: 39 }, (_, i) => i));
    // Every request carried one batch of at most maxBatchBytes, and batches filled up: ~5 records of ~210 bytes each.
    for (const r of requests) {
      expect(r.batches.length).toBe(1);
      expect(r.batches[0]!.batch.length).toBeLessThanOrEqual(1024);
    }
    expect(requests.length).toBeLessThanOrEqual(Math.ceil(39 / 4));
    const log = await readPartition(adminConn, 'open-full', 0);
    expect(log.map((m) => Number((m.value as Buffer).subarray(0, 3).toString()))).toEqual(Array.from({ length: 39 }, (_, i) => i));
  });

  it('resends a failed batch, same bytes, before the batch that filled while it was out', async () => {
    await admin.createTopic('open-retry', { partitions: 1 });
    const held = deferred<void>();
    let gated = 0;
    const { producer, requests } = await producerOn(broker.address, { lingerMs: 0, retries: 3 }, async () => {
      if (gated++ !== 0) return;
      await held.promise;
      throw new SluiceError('REQUEST_TIMEOUT', 'injected');
    });
    const first = Array.from({ length: 3 }, (_, i) => producer.send({ topic: 'open-retry', partition: 0, value: `a${i}` }));
    await until(() => requests.length === 1);
    const later = Array.from({ length: 3 }, (_, i) => producer.send({ topic: 'open-retry', partition: 0, value: `b${i}` }));
    await sleep(10);
    held.resolve();
    const acks = await Promise.all([...first, ...later]);
    expect(acks.map((a) => a.offset)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(requests.length).toBe(3);
    expect(requests[1]!.batches[0]!.batch).toEqual(requests[0]!.batches[0]!.batch);
    const log = await readPartition(adminConn, 'open-retry', 0);
    expect(log.map((m) => m.value)).toEqual(['a0', 'a1', 'a2', 'b0', 'b1', 'b2']);
  });

  it('rejects a message that cannot fit a batch with RECORD_TOO_LARGE, sparing the others', async () => {
    await admin.createTopic('too-large', { partitions: 1 });
    const { producer } = await producerOn(broker.address, { maxBatchBytes: 1024 });
    const big = producer.send({ topic: 'too-large', partition: 0, value: Buffer.alloc(1024) });
    const fits = producer.send({ topic: 'too-large', partition: 0, value: Buffer.alloc(900) });
    const err = await rejection(big);
    expect(hasCode(err, 'RECORD_TOO_LARGE')).toBe(true);
    expect(await fits).toMatchObject({ partition: 0, offset: 0 });
    // A header counts too.
    expect(hasCode(await rejection(producer.send({ topic: 'too-large', partition: 0, value: Buffer.alloc(900), headers: { h: Buffer.alloc(200) } })), 'RECORD_TOO_LARGE')).toBe(true);
  });

  it('writes headers as given, a content-type of the caller replacing the default one', async () => {
    await admin.createTopic('headers', { partitions: 1 });
    const { producer, requests } = await producerOn(broker.address);
    await producer.sendMany([
      { topic: 'headers', partition: 0, value: '{"a":1}', headers: { 'content-type': 'application/json', trace: Buffer.from([1, 2]), u8: new Uint8Array([3]) as Buffer } },
      { topic: 'headers', partition: 0, value: { a: 1 }, headers: {} },
      { topic: 'headers', partition: 0, value: Buffer.from('raw') },
    ]);
    const records = requests.flatMap((r) => r.batches.flatMap((b) => decodeRecords(b.batch)));
    expect(records.map((r) => r.headers.map((h) => [h.key, h.value.toString('hex')]))).toEqual([
      [['content-type', Buffer.from('application/json').toString('hex')], ['trace', '0102'], ['u8', '03']],
      [['content-type', Buffer.from('application/msgpack').toString('hex')]],
      [],
    ]);
    const log = await readPartition(adminConn, 'headers', 0);
    // The caller's content-type is not one the codec knows: the value comes back as bytes.
    expect(log.map((m) => m.value)).toEqual([Buffer.from('{"a":1}'), { a: 1 }, Buffer.from('raw')]);
  });

  it('retries through a broker crash and restart: every send acked, none lost', async () => {
    const procDir = tempDir();
    const bp = await BrokerProcess.start({ dataDir: procDir.path });
    cleanups.push(procDir.remove, async () => {
      await bp.kill();
    });
    const procAdmin = await Connection.connect({ broker: bp.address });
    cleanups.push(() => procAdmin.destroy());
    await new Admin(procAdmin).createTopic('crash', { partitions: 3 });
    const { producer, failures } = await producerOn(bp.address, { lingerMs: 2, retries: 20, requestTimeoutMs: 3_000 });
    const n = 3_000;
    const sends: Promise<RecordMetadata>[] = [];
    let chaos: Promise<void> | undefined;
    for (let i = 0; i < n; i++) {
      sends.push(producer.send({ topic: 'crash', key: `k${i % 50}`, value: i }));
      if (i % 100 === 99) await sleep(3);
      if (i === n / 3) chaos = bp.kill().then(() => bp.restart());
    }
    await chaos;
    const acks = await Promise.all(sends);
    const logs = await Promise.all([0, 1, 2].map((p) => readPartition(procAdmin, 'crash', p)));
    const seen = new Set(logs.flat().map((m) => m.value as number));
    for (let i = 0; i < n; i++) expect(seen.has(i)).toBe(true);
    // Retries never reorder a partition: first copies of each key's messages are in send order.
    for (const log of logs) {
      const first = log.map((m) => m.value as number).filter((v, i, all) => all.indexOf(v) === i);
      for (let k = 0; k < 50; k++) {
        const ofKey = first.filter((v) => v % 50 === k);
        expect(ofKey).toEqual([...ofKey].sort((x, y) => x - y));
      }
    }
    // Every ack names a real offset holding its message (a retried batch's last copy).
    acks.forEach((ack, i) => expect(logs[ack.partition]![ack.offset - logs[ack.partition]![0]!.offset]?.value).toBe(i));
    expect(logs.flat().length).toBeGreaterThanOrEqual(n);
    // The crash really cut requests that were on the wire, and they were retried.
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.every((e) => (e as { retriable: boolean }).retriable)).toBe(true);
  }, 20_000);
});
