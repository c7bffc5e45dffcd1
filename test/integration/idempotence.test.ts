import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { decodeBatches, encodeRecordBatch } from '../../client/protocol/record-batch.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import type { ProduceResult } from '../../client/protocol/messages/produce.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { MemoryLogger } from '../helpers/logger.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { tempDir } from '../helpers/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(dataDir: string): Promise<{ b: RunningBroker; conn: Connection }> {
  const b = await startBroker({ port: 0, dataDir, logger: new MemoryLogger() });
  const conn = await Connection.connect({ broker: b.address, reconnect: false });
  cleanups.push(() => b.close(), () => conn.destroy());
  return { b, conn };
}

async function setup(): Promise<{ dir: string; b: RunningBroker; conn: Connection }> {
  const dir = tempDir();
  cleanups.push(dir.remove);
  return { dir: dir.path, ...(await start(dir.path)) };
}

/** Batch of `count` records from one producer, values `s<sequence>`. */
function idem(producerId: number, producerEpoch: number, baseSequence: number, count = 1): Buffer {
  return encodeRecordBatch(
    Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`s${baseSequence + i}`) })),
    { producerId, producerEpoch, baseSequence },
  );
}

async function produce(conn: Connection, topic: string, batch: Buffer, partition = 0): Promise<ProduceResult> {
  const res = await conn.request('Produce', { batches: [{ topic, partition, batch }] });
  return res.results[0]!;
}

async function values(conn: Connection, topic: string, partition = 0): Promise<string[]> {
  const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 64 << 20, partitions: [{ topic, partition, offset: 0 }] });
  return decodeBatches(res.partitions[0]?.records ?? Buffer.alloc(0)).map((r) => r.value?.toString() ?? '');
}

async function endOffset(conn: Connection, topic: string): Promise<number> {
  const res = await conn.request('ListOffsets', { partitions: [{ topic, partition: 0, at: 'latest' }] });
  return res.partitions[0]!.offset;
}

describe('idempotent produce over TCP', () => {
  it('a batch retried after a connection cut is answered as a duplicate with its offsets, and stored once', async () => {
    const { b, conn } = await setup();
    await conn.request('CreateTopic', { topic: 'cut' });
    const { producerId, producerEpoch } = await conn.request('InitProducer', {});
    expect(await produce(conn, 'cut', idem(producerId, producerEpoch, 0, 2))).toMatchObject({ baseOffset: 0, lastOffset: 1 });

    // Send the next batch and cut the connection before reading the reply.
    const batch = idem(producerId, producerEpoch, 2, 3);
    const peer = await RawPeer.tcp(b.port);
    peer.hello();
    peer.send(Opcode.Produce, { batches: [{ topic: 'cut', partition: 0, batch }] }, 2);
    peer.destroy();
    const deadline = Date.now() + 5_000;
    while ((await endOffset(conn, 'cut')) < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));

    // The producer does not know whether it was written: it resends the same batch.
    const conn2 = await Connection.connect({ broker: b.address, reconnect: false });
    cleanups.push(() => conn2.destroy());
    expect(await produce(conn2, 'cut', batch)).toEqual({ topic: 'cut', partition: 0, baseOffset: 2, lastOffset: 4, duplicate: true });
    expect(await produce(conn2, 'cut', idem(producerId, producerEpoch, 5))).toMatchObject({ baseOffset: 5, lastOffset: 5 });
    expect(await values(conn2, 'cut')).toEqual(['s0', 's1', 's2', 's3', 's4', 's5']);
  });

  it('a retry inside the same request, and across partitions, is answered per batch', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'two', partitions: 2 });
    const { producerId } = await conn.request('InitProducer', {});
    const a = idem(producerId, 0, 0, 2);
    const res = await conn.request('Produce', {
      batches: [
        { topic: 'two', partition: 0, batch: a },
        { topic: 'two', partition: 1, batch: idem(producerId, 0, 0) },
        { topic: 'two', partition: 0, batch: idem(producerId, 0, 0, 2) },
        { topic: 'two', partition: 0, batch: idem(producerId, 0, 2) },
      ],
    });
    expect(res.results.map((r) => [r.partition, r.baseOffset, r.lastOffset, r.duplicate ?? false, r.error?.name])).toEqual([
      [0, 0, 1, false, undefined],
      [1, 0, 0, false, undefined],
      [0, 0, 1, true, undefined],
      [0, 2, 2, false, undefined],
    ]);
  });

  it('a gap is OUT_OF_ORDER_SEQUENCE, an old sequence DUPLICATE_SEQUENCE, a made-up id UNKNOWN_PRODUCER', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'gap' });
    const { producerId } = await conn.request('InitProducer', {});
    for (let s = 0; s < 8; s++) await produce(conn, 'gap', idem(producerId, 0, s));
    const gap = await produce(conn, 'gap', idem(producerId, 0, 10));
    expect(gap.error).toMatchObject({ name: 'OUT_OF_ORDER_SEQUENCE', details: { expected: 8, got: 10 } });
    expect((await produce(conn, 'gap', idem(producerId, 0, 1))).error?.name).toBe('DUPLICATE_SEQUENCE');
    expect((await produce(conn, 'gap', idem(producerId + 100, 0, 0))).error?.name).toBe('UNKNOWN_PRODUCER');
    expect((await produce(conn, 'gap', idem(producerId, 1, 0))).error?.name).toBe('UNKNOWN_PRODUCER');
    expect(await endOffset(conn, 'gap')).toBe(8);
  });

  it('fences a zombie once a second InitProducer with its transactional id ran', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'zombie' });
    const first = await conn.request('InitProducer', { transactionalId: 'copier', transactionTimeoutMs: 10_000 });
    expect(first).toEqual({ producerId: 0, producerEpoch: 0 });
    expect((await produce(conn, 'zombie', idem(first.producerId, first.producerEpoch, 0))).error).toBeUndefined();
    const second = await conn.request('InitProducer', { transactionalId: 'copier' });
    expect(second).toEqual({ producerId: 0, producerEpoch: 1 });
    const zombie = await produce(conn, 'zombie', idem(first.producerId, first.producerEpoch, 1));
    expect(zombie.error).toMatchObject({ name: 'PRODUCER_FENCED' });
    // The new instance starts its epoch at sequence 0.
    expect(await produce(conn, 'zombie', idem(second.producerId, second.producerEpoch, 0))).toMatchObject({ baseOffset: 1 });
    expect((await produce(conn, 'zombie', idem(first.producerId, first.producerEpoch, 1))).error?.name).toBe('PRODUCER_FENCED');
    // A plain InitProducer never reuses an id.
    expect(await conn.request('InitProducer', {})).toEqual({ producerId: 1, producerEpoch: 0 });
    expect(await values(conn, 'zombie')).toEqual(['s0', 's0']);
  });

  it('keeps deduplicating across a clean restart (snapshot) and fences across it too', async () => {
    const { dir, b, conn } = await setup();
    await conn.request('CreateTopic', { topic: 'restart' });
    const { producerId } = await conn.request('InitProducer', {});
    const tx = await conn.request('InitProducer', { transactionalId: 'tx' });
    for (let s = 0; s < 6; s += 2) await produce(conn, 'restart', idem(producerId, 0, s, 2));
    await produce(conn, 'restart', idem(tx.producerId, 0, 0));
    conn.destroy();
    await b.close();
    expect(existsSync(join(dir, 'topics', 'restart', '0', 'producer-state.snapshot'))).toBe(true);

    const again = await start(dir);
    expect(await produce(again.conn, 'restart', idem(producerId, 0, 4, 2))).toMatchObject({ baseOffset: 4, lastOffset: 5, duplicate: true });
    expect(await produce(again.conn, 'restart', idem(producerId, 0, 6))).toMatchObject({ baseOffset: 7 });
    expect((await produce(again.conn, 'restart', idem(producerId, 0, 9))).error?.name).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(await again.conn.request('InitProducer', { transactionalId: 'tx' })).toEqual({ producerId: tx.producerId, producerEpoch: 1 });
    expect((await produce(again.conn, 'restart', idem(tx.producerId, 0, 1))).error?.name).toBe('PRODUCER_FENCED');
    expect(await again.conn.request('InitProducer', {})).toEqual({ producerId: 2, producerEpoch: 0 });
    expect(await values(again.conn, 'restart')).toEqual(['s0', 's1', 's2', 's3', 's4', 's5', 's0', 's6']);
  });
});
