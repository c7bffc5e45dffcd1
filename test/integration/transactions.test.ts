import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { Connection } from '../../client/connection.js';
import type { SluiceError } from '../../client/protocol/errors.js';
import type { FetchedPartition, IsolationLevel } from '../../client/protocol/messages/fetch.js';
import { fromErrorBody } from '../../client/protocol/messages/error.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_OVERHEAD, decodeBatches, encodeRecordBatch, readBatchHeader } from '../../client/protocol/record-batch.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';
import { sluiceRejection as rejection } from '../helpers/async.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(): Promise<{ b: RunningBroker; conn: Connection }> {
  const dir = tempDir();
  cleanups.push(dir.remove);
  const b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
  cleanups.push(() => b.close());
  return { b, conn: await connect(b) };
}

async function connect(b: RunningBroker): Promise<Connection> {
  const conn = await Connection.connect({ broker: b.address, reconnect: false });
  cleanups.push(() => conn.destroy());
  return conn;
}


/**
 * A transactional producer speaking the raw protocol, as the SDK will: per-partition sequences,
 * reset at every new epoch.
 */
class TxnProducer {
  producerId = -1;
  producerEpoch = -1;
  readonly #seq = new Map<string, number>();

  constructor(
    readonly conn: Connection,
    readonly transactionalId: string,
  ) {}

  async init(transactionTimeoutMs = 30_000): Promise<this> {
    const r = await this.conn.request('InitProducer', { transactionalId: this.transactionalId, transactionTimeoutMs });
    this.#adopt(r);
    return this;
  }

  get identity(): { transactionalId: string; producerId: number; producerEpoch: number } {
    return { transactionalId: this.transactionalId, producerId: this.producerId, producerEpoch: this.producerEpoch };
  }

  batch(topic: string, partition: number, values: readonly string[]): Buffer {
    const key = `${topic}/${partition}`;
    const baseSequence = this.#seq.get(key) ?? 0;
    this.#seq.set(key, baseSequence + values.length);
    return encodeRecordBatch(values.map((v) => ({ value: Buffer.from(v) })), {
      producerId: this.producerId,
      producerEpoch: this.producerEpoch,
      baseSequence,
      attributes: ATTR_TRANSACTIONAL,
    });
  }

  async send(topic: string, partition: number, values: readonly string[]): Promise<void> {
    const res = await this.conn.request('Produce', { batches: [{ topic, partition, batch: this.batch(topic, partition, values) }] });
    const error = res.results[0]?.error;
    if (error !== undefined) throw fromErrorBody(error);
  }

  async end(commit: boolean): Promise<void> {
    try {
      this.#adopt(await this.conn.request('EndTxn', { ...this.identity, commit }));
    } catch (err) {
      const details = (err as SluiceError).details as { producerId?: number; producerEpoch?: number } | undefined;
      if ((err as SluiceError).code === 'TRANSACTION_ABORTED' && details?.producerEpoch !== undefined) this.#adopt(details as { producerId: number; producerEpoch: number });
      throw err;
    }
  }

  #adopt(r: { producerId: number; producerEpoch: number }): void {
    this.producerId = r.producerId;
    this.producerEpoch = r.producerEpoch;
    this.#seq.clear();
  }
}

async function fetch(conn: Connection, topic: string, partition: number, offset: number, isolation: IsolationLevel, wait: { maxWaitMs?: number; minBytes?: number; maxBytes?: number } = {}): Promise<FetchedPartition> {
  const res = await conn.request('Fetch', {
    maxWaitMs: wait.maxWaitMs ?? 0,
    minBytes: wait.minBytes ?? 0,
    maxBytes: wait.maxBytes ?? 1 << 20,
    ...(isolation === 'read_committed' ? { isolation } : {}),
    partitions: [{ topic, partition, offset }],
  });
  return res.partitions[0]!;
}

/** Everything a consumer at `isolation` reads from the partition, following nextOffset. */
async function readAll(conn: Connection, topic: string, partition: number, isolation: IsolationLevel): Promise<string[]> {
  const out: string[] = [];
  for (let offset = 0; ; ) {
    const p = await fetch(conn, topic, partition, offset, isolation, { maxBytes: 200 });
    if (p.error !== undefined) throw new Error(p.error.message);
    for (const r of decodeBatches(p.records)) if (r.offset >= offset) out.push(r.value!.toString());
    if (p.nextOffset === offset) return out;
    offset = p.nextOffset;
  }
}

/** Attributes of every batch in a Fetch response: no control batch may ever be returned. */
function attributesOf(records: Buffer): number[] {
  const out: number[] = [];
  for (let pos = 0; pos < records.length; ) {
    const h = readBatchHeader(records, pos);
    out.push(h.attributes);
    pos += h.batchLength + BATCH_OVERHEAD;
  }
  return out;
}

describe('transactions over TCP', () => {
  it('commits output on two partitions and group offsets atomically; read_committed sees nothing before, all after', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'out', partitions: 2 });
    await conn.request('CreateTopic', { topic: 'in' });
    const p = await new TxnProducer(conn, 'copier').init();
    expect(p.identity).toMatchObject({ producerId: 0, producerEpoch: 0 });
    await p.send('out', 0, ['a0', 'a1']);
    await p.send('out', 1, ['b0']);
    await conn.request('TxnCommitOffsets', { ...p.identity, groupId: 'g', memberEpoch: -1, offsets: [{ topic: 'in', partition: 0, offset: 42 }] });

    const before = await fetch(conn, 'out', 0, 0, 'read_committed');
    expect(before).toMatchObject({ highWatermark: 2, lastStableOffset: 0, nextOffset: 0 });
    expect(before.records.length).toBe(0);
    expect(await readAll(conn, 'out', 0, 'read_uncommitted')).toEqual(['a0', 'a1']);
    expect((await rejection(conn.request('FetchOffsets', { groupId: 'g' }))).code).toBe('UNSTABLE_OFFSETS');
    expect((await conn.request('ListOffsets', { isolation: 'read_committed', partitions: [{ topic: 'out', partition: 0, at: 'latest' }] })).partitions[0]?.offset).toBe(0);

    await p.end(true);
    expect(p.identity).toMatchObject({ producerEpoch: 1 });
    expect(await readAll(conn, 'out', 0, 'read_committed')).toEqual(['a0', 'a1']);
    expect(await readAll(conn, 'out', 1, 'read_committed')).toEqual(['b0']);
    expect((await conn.request('FetchOffsets', { groupId: 'g' })).offsets).toMatchObject([{ topic: 'in', partition: 0, offset: 42 }]);
    const after = await fetch(conn, 'out', 0, 0, 'read_committed');
    // The COMMIT marker holds offset 2; it is never returned, and nextOffset moves past it.
    expect(after).toMatchObject({ highWatermark: 3, lastStableOffset: 3, nextOffset: 3 });
    expect(attributesOf(after.records).every((a) => (a & ATTR_CONTROL) === 0)).toBe(true);
    const atMarker = await fetch(conn, 'out', 0, 2, 'read_uncommitted');
    expect(atMarker).toMatchObject({ nextOffset: 3 });
    expect(atMarker.records.length).toBe(0);
  });

  it('an aborted transaction leaves nothing for read_committed and its offsets uncommitted; read_uncommitted sees its data, never markers', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'out' });
    await conn.request('CreateTopic', { topic: 'in' });
    const p = await new TxnProducer(conn, 'tx').init();
    await p.send('out', 0, ['c1']);
    await p.end(true);
    for (let i = 0; i < 5; i++) await p.send('out', 0, [`x${i}`]);
    await conn.request('TxnCommitOffsets', { ...p.identity, groupId: 'g', memberEpoch: -1, offsets: [{ topic: 'in', partition: 0, offset: 9 }] });
    await p.end(false);
    await p.send('out', 0, ['c2']);
    await p.end(true);

    expect(await readAll(conn, 'out', 0, 'read_committed')).toEqual(['c1', 'c2']);
    expect(await readAll(conn, 'out', 0, 'read_uncommitted')).toEqual(['c1', 'x0', 'x1', 'x2', 'x3', 'x4', 'c2']);
    const all = await fetch(conn, 'out', 0, 0, 'read_uncommitted');
    expect(attributesOf(all.records).some((a) => (a & ATTR_CONTROL) !== 0)).toBe(false);
    expect((await conn.request('FetchOffsets', { groupId: 'g' })).offsets).toEqual([]);
    // From inside the aborted range, read_committed skips to the next committed data in one answer.
    const skipped = await fetch(conn, 'out', 0, 2, 'read_committed');
    expect(decodeBatches(skipped.records).map((r) => r.value!.toString())).toEqual(['c2']);
  });

  it('an open transaction holds the last stable offset; a parked read_committed fetch wakes on its commit', async () => {
    const { b, conn } = await setup();
    await conn.request('CreateTopic', { topic: 't' });
    const p = await new TxnProducer(conn, 'tx').init();
    await p.send('t', 0, ['txn-1']);
    // A plain producer's message behind the open transaction is held back with it.
    await conn.request('Produce', { batches: [{ topic: 't', partition: 0, batch: encodeRecordBatch([{ value: Buffer.from('plain') }]) }] });
    expect(await readAll(conn, 't', 0, 'read_uncommitted')).toEqual(['txn-1', 'plain']);
    expect(await readAll(conn, 't', 0, 'read_committed')).toEqual([]);

    const reader = await connect(b);
    const started = Date.now();
    const parked = fetch(reader, 't', 0, 0, 'read_committed', { maxWaitMs: 10_000, minBytes: 1 });
    await new Promise((r) => setTimeout(r, 100));
    await p.send('t', 0, ['txn-2']);
    await p.end(true);
    const woken = await parked;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(decodeBatches(woken.records).map((r) => r.value!.toString())).toEqual(['txn-1', 'plain', 'txn-2']);
    expect(woken.lastStableOffset).toBe(woken.highWatermark);
  });

  it('FetchOffsets answers UNSTABLE_OFFSETS while a transaction holds offsets of the group', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'in', partitions: 1 });
    const p = await new TxnProducer(conn, 'stable-tx').init();
    await conn.request('TxnCommitOffsets', { ...p.identity, groupId: 'g-stable', memberEpoch: -1, offsets: [{ topic: 'in', partition: 0, offset: 7 }] });
    const err = await rejection(conn.request('FetchOffsets', { groupId: 'g-stable' }));
    expect(err.code).toBe('UNSTABLE_OFFSETS');
    expect(err.retriable).toBe(true);
    expect((await conn.request('FetchOffsets', { groupId: 'other' })).offsets).toEqual([]);
    await p.end(true);
    expect((await conn.request('FetchOffsets', { groupId: 'g-stable' })).offsets.map((o) => o.offset)).toEqual([7]);
  });

  it('fences a zombie: InitProducer aborts what it left open, and its batches and EndTxn are refused', async () => {
    const { b, conn } = await setup();
    await conn.request('CreateTopic', { topic: 't' });
    const zombie = await new TxnProducer(conn, 'app').init();
    await zombie.send('t', 0, ['zombie']);
    const other = await connect(b);
    const fresh = await new TxnProducer(other, 'app').init();
    expect(fresh.identity).toMatchObject({ producerId: zombie.producerId, producerEpoch: zombie.producerEpoch + 1 });
    expect(await rejection(zombie.send('t', 0, ['late']))).toMatchObject({ code: 'PRODUCER_FENCED' });
    expect(await rejection(zombie.end(true))).toMatchObject({ code: 'PRODUCER_FENCED' });
    await fresh.send('t', 0, ['fresh']);
    await fresh.end(true);
    expect(await readAll(conn, 't', 0, 'read_committed')).toEqual(['fresh']);
    // A transactional batch without a transactional id, and a control batch, are refused.
    const plain = await conn.request('InitProducer', {});
    const tx = encodeRecordBatch([{ value: Buffer.from('x') }], { producerId: plain.producerId, producerEpoch: 0, baseSequence: 0, attributes: ATTR_TRANSACTIONAL });
    expect((await conn.request('Produce', { batches: [{ topic: 't', partition: 0, batch: tx }] })).results[0]?.error?.name).toBe('INVALID_TXN_STATE');
    const control = encodeRecordBatch([{ value: Buffer.from('x') }], { attributes: ATTR_CONTROL | ATTR_TRANSACTIONAL });
    expect((await conn.request('Produce', { batches: [{ topic: 't', partition: 0, batch: control }] })).results[0]?.error?.name).toBe('INVALID_RECORD');
  });
});

interface Delivery {
  readonly partition: number;
  readonly offsets: readonly number[];
  readonly attempts: readonly number[];
  readonly values: readonly string[];
}

/** A push consumer on the raw protocol: Subscribe, Credit, and the Deliver pushes it gets. */
async function subscribe(conn: Connection, topic: string, subscription: string, ackWaitMs = 30_000): Promise<{ consumerId: string; deliveries: Delivery[] }> {
  const deliveries: Delivery[] = [];
  cleanups.push(
    conn.onPush(Opcode.Deliver, (body) => {
      const d = body as { partition: number; offsets: number[]; attempts: number[]; records: Buffer };
      const byOffset = new Map(decodeBatches(d.records).map((r) => [r.offset, r.value!.toString()]));
      deliveries.push({ partition: d.partition, offsets: d.offsets, attempts: d.attempts, values: d.offsets.map((o) => byOffset.get(o) ?? '?') });
    }),
  );
  const { consumerId } = await conn.request('Subscribe', { subscription, topic, prefetch: 100, create: { start: 'earliest', ackWaitMs } });
  return { consumerId, deliveries };
}

async function until(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('transactions and push subscriptions over TCP', () => {
  it('a subscription delivers committed data only, never aborted or open transactions', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 't' });
    const { deliveries } = await subscribe(conn, 't', 's');
    const p = await new TxnProducer(conn, 'tx').init();
    await p.send('t', 0, ['aborted']);
    await p.end(false);
    await p.send('t', 0, ['committed']);
    await p.end(true);
    await p.send('t', 0, ['open']);
    await until(() => deliveries.length > 0);
    await new Promise((r) => setTimeout(r, 100));
    expect(deliveries.flatMap((d) => d.values)).toEqual(['committed']);
    await p.end(true);
    await until(() => deliveries.flatMap((d) => d.values).length === 2);
    expect(deliveries.flatMap((d) => d.values)).toEqual(['committed', 'open']);
    const described = await conn.request('DescribeSubscription', { subscription: 's' });
    expect(described.inFlight).toBe(2);
  });

  it('staged acks are applied on commit; on abort they are dropped and the messages redelivered', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'in' });
    await conn.request('CreateTopic', { topic: 'out' });
    for (const v of ['m0', 'm1']) await conn.request('Produce', { batches: [{ topic: 'in', partition: 0, batch: encodeRecordBatch([{ value: Buffer.from(v) }]) }] });
    const { consumerId, deliveries } = await subscribe(conn, 'in', 's', 500);
    await until(() => deliveries.flatMap((d) => d.offsets).length === 2);
    const p = await new TxnProducer(conn, 'tx').init();

    // m0: transformed and committed with its ack.
    await p.send('out', 0, ['M0']);
    await conn.request('TxnSettle', { ...p.identity, consumerId, items: [[0, 0, 1]] });
    await p.end(true);
    // m1: transformed, acked in the transaction, and aborted: redelivered after its ack wait.
    await p.send('out', 0, ['M1']);
    await conn.request('TxnSettle', { ...p.identity, consumerId, items: [[0, 1, 1]] });
    await p.end(false);

    await until(() => deliveries.length >= 2, 5_000);
    const again = deliveries.slice(1).flatMap((d) => d.offsets.map((o, i) => [o, d.attempts[i]]));
    expect(again).toEqual([[1, 2]]);
    expect(await readAll(conn, 'out', 0, 'read_committed')).toEqual(['M0']);
    const described = await conn.request('DescribeSubscription', { subscription: 's' });
    expect(described.partitions[0]).toMatchObject({ ackFloor: 1 });
  });

  it('a commit whose staged ack went stale is aborted: TRANSACTION_ABORTED, no output, the message redelivered', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'in' });
    await conn.request('CreateTopic', { topic: 'out' });
    await conn.request('Produce', { batches: [{ topic: 'in', partition: 0, batch: encodeRecordBatch([{ value: Buffer.from('m') }]) }] });
    const { consumerId, deliveries } = await subscribe(conn, 'in', 's', 300);
    await until(() => deliveries.length === 1);
    const p = await new TxnProducer(conn, 'tx').init();
    await p.send('out', 0, ['M']);
    await conn.request('TxnSettle', { ...p.identity, consumerId, items: [[0, 0, 1]] });
    // The ack deadline passes (staging moved it by one ack wait) and the message goes out again.
    await until(() => deliveries.length === 2, 5_000);
    const err = await rejection(p.end(true));
    expect(err).toMatchObject({ code: 'TRANSACTION_ABORTED' });
    expect(p.identity.producerEpoch).toBe(1);
    expect(await readAll(conn, 'out', 0, 'read_uncommitted')).toEqual(['M']);
    expect(await readAll(conn, 'out', 0, 'read_committed')).toEqual([]);
    // Staging the stale attempt again is refused up front.
    expect(await rejection(conn.request('TxnSettle', { ...p.identity, consumerId, items: [[0, 0, 1]] }))).toMatchObject({ code: 'STALE_ACK' });
  });
});
