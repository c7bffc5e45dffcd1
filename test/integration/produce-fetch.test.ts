import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { ATTR_CONTROL, decodeBatches, encodeRecordBatch } from '../../client/protocol/record-batch.js';
import { Producer } from '../../client/producer.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import type { BrokerOptions } from '../../broker/config.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: BrokerOptions = {}): Promise<{ b: RunningBroker; conn: Connection }> {
  const dir = tempDir();
  const b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger(), ...options });
  const conn = await Connection.connect({ broker: b.address });
  cleanups.push(dir.remove, () => b.close(), () => conn.destroy());
  return { b, conn };
}

const batchOf = (...values: string[]): Buffer => encodeRecordBatch(values.map((v) => ({ value: Buffer.from(v) })));

async function readAll(conn: Connection, topic: string, partition: number): Promise<string[]> {
  const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 64 << 20, partitions: [{ topic, partition, offset: 0 }] });
  return decodeBatches(res.partitions[0]?.records ?? Buffer.alloc(0)).map((r) => r.value?.toString() ?? '');
}

describe('produce', () => {
  it('appends batches for several partitions in one request, each answered on its own', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'multi', partitions: 2 });
    const res = await conn.request('Produce', {
      batches: [
        { topic: 'multi', partition: 0, batch: batchOf('a', 'b') },
        { topic: 'multi', partition: 0, batch: batchOf('c') },
        { topic: 'multi', partition: 1, batch: batchOf('x') },
        { topic: 'missing', partition: 0, batch: batchOf('lost') },
        { topic: 'multi', partition: 7, batch: batchOf('nowhere') },
      ],
    });
    expect(res.results.map((r) => [r.baseOffset, r.lastOffset, r.error?.name])).toEqual([
      [0, 1, undefined],
      [2, 2, undefined],
      [0, 0, undefined],
      [-1, -1, 'TOPIC_NOT_FOUND'],
      [-1, -1, 'PARTITION_NOT_FOUND'],
    ]);
    expect(await readAll(conn, 'multi', 0)).toEqual(['a', 'b', 'c']);
  });

  it('refuses corrupt, oversized and control batches without touching the log', async () => {
    const { conn } = await setup({ maxBatchBytes: 2048 });
    await conn.request('CreateTopic', { topic: 'guard' });
    const corrupt = batchOf('hello', 'world');
    const at = corrupt.length - 2;
    corrupt.writeUInt8(corrupt.readUInt8(at) ^ 0x40, at);
    const big = batchOf('x'.repeat(4096));
    const control = encodeRecordBatch([{ value: Buffer.from('m') }], { attributes: ATTR_CONTROL });
    const res = await conn.request('Produce', {
      batches: [
        { topic: 'guard', partition: 0, batch: corrupt },
        { topic: 'guard', partition: 0, batch: big },
        { topic: 'guard', partition: 0, batch: control },
        { topic: 'guard', partition: 0, batch: Buffer.concat([batchOf('one'), batchOf('two')]) },
      ],
    });
    expect(res.results.map((r) => r.error?.name)).toEqual(['CORRUPT_RECORD', 'RECORD_TOO_LARGE', 'INVALID_RECORD', 'INVALID_RECORD']);
    expect(res.results[0]?.error?.message).toMatch(/crc/i);
    const ok = await conn.request('Produce', { batches: [{ topic: 'guard', partition: 0, batch: batchOf('fine') }] });
    expect(ok.results[0]?.baseOffset).toBe(0);
  });

  it('names an impossible topic INVALID_TOPIC rather than TOPIC_NOT_FOUND', async () => {
    const { conn } = await setup();
    const res = await conn.request('Produce', { batches: [{ topic: 'a/b', partition: 0, batch: batchOf('x') }] });
    expect(res.results[0]?.error?.name).toBe('INVALID_TOPIC');
  });

  it('auto-creates unknown topics when switched on, for keyed producer sends too', async () => {
    const { conn } = await setup({ autoCreateTopics: true, defaultPartitions: 3 });
    const producer = new Producer(conn, { lingerMs: 0 });
    const meta = await producer.send({ topic: 'fresh', key: 'k', value: 'v' });
    await producer.close();
    expect(meta.offset).toBe(0);
    expect((await conn.request('DescribeTopic', { topic: 'fresh' })).partitions).toHaveLength(3);
  });
});

describe('list offsets', () => {
  it('finds earliest, latest and by timestamp', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'ts' });
    const t0 = Date.now();
    for (const [i, ts] of [t0 - 3000, t0 - 2000, t0 - 1000].entries()) {
      await conn.request('Produce', { batches: [{ topic: 'ts', partition: 0, batch: encodeRecordBatch([{ value: Buffer.from(String(i)), timestamp: ts }]) }] });
    }
    const at = async (spec: 'earliest' | 'latest' | number): Promise<number | undefined> =>
      (await conn.request('ListOffsets', { partitions: [{ topic: 'ts', partition: 0, at: spec }] })).partitions[0]?.offset;
    expect(await at('earliest')).toBe(0);
    expect(await at('latest')).toBe(3);
    expect(await at(t0 - 2500)).toBe(1);
    expect(await at(t0)).toBe(3);
    const missing = await conn.request('ListOffsets', { partitions: [{ topic: 'nope', partition: 0, at: 'latest' }] });
    expect(missing.partitions[0]?.error?.name).toBe('TOPIC_NOT_FOUND');
  });
});

describe('durability', () => {
  it('every produce acknowledged under fsync=always survives kill -9', async () => {
    const dir = tempDir();
    const bp = await BrokerProcess.start({ dataDir: dir.path, args: ['--fsync', 'always'] });
    cleanups.push(dir.remove, async () => void (await bp.kill()));
    const conn = await Connection.connect({ broker: bp.address, reconnect: false });
    cleanups.push(() => conn.destroy());
    await conn.request('CreateTopic', { topic: 'durable', partitions: 2 });
    const acked: Array<{ partition: number; offset: number; value: string }> = [];
    let n = 0;
    const writer = async (): Promise<void> => {
      for (;;) {
        const value = `m${n++}`;
        const partition = n % 2;
        let res;
        try {
          res = await conn.request('Produce', { batches: [{ topic: 'durable', partition, batch: batchOf(value) }] });
        } catch {
          return; // the broker died: this one was never acknowledged
        }
        const r = res.results[0];
        if (r !== undefined && r.error === undefined) acked.push({ partition, offset: r.baseOffset, value });
      }
    };
    const writers = Promise.all([writer(), writer(), writer(), writer()]);
    await new Promise((r) => setTimeout(r, 400));
    await bp.kill();
    await writers;
    expect(acked.length).toBeGreaterThan(10);
    await bp.restart();
    const after = await Connection.connect({ broker: bp.address });
    cleanups.push(() => after.destroy());
    const logs = [await readAll(after, 'durable', 0), await readAll(after, 'durable', 1)];
    for (const a of acked) expect(logs[a.partition]?.[a.offset]).toBe(a.value);
  });
});

describe('fetch limits', () => {
  it('returns at least one whole batch even when it exceeds maxBytes, and shares the budget', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'big', partitions: 2 });
    await conn.request('Produce', { batches: [{ topic: 'big', partition: 0, batch: batchOf('y'.repeat(5000)) }, { topic: 'big', partition: 1, batch: batchOf('z') }] });
    const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 1, maxBytes: 100, partitions: [{ topic: 'big', partition: 0, offset: 0 }, { topic: 'big', partition: 1, offset: 0 }] });
    expect(decodeBatches(res.partitions[0]?.records ?? Buffer.alloc(0))).toHaveLength(1);
    expect(res.partitions[1]?.records.length).toBe(0);
    const err = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 1, maxBytes: 100, partitions: [{ topic: 'big', partition: 5, offset: 0 }] });
    expect(err.partitions[0]?.error?.name).toBe('PARTITION_NOT_FOUND');
  });
});
