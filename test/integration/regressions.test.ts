import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { hasCode } from '../../client/protocol/errors.js';
import { encodeRecordBatch } from '../../client/protocol/record-batch.js';
import { SettleOp, parseDeliverPush } from '../../client/protocol/messages/push.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import { PollConsumer } from '../../client/poll-consumer.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import type { BrokerOptions } from '../../broker/config.js';
import { MemoryLogger } from '../helpers/logger.js';
import { produceRaw } from '../helpers/produce.js';
import { tempDir } from '../helpers/temp-dir.js';
import { rejection, until } from '../helpers/async.js';

/** Each test here is named after a bug that was found and fixed; it keeps the bug fixed. */
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: BrokerOptions = {}, dir = tempDir()): Promise<{ b: RunningBroker; conn: Connection; dir: { path: string; remove(): void } }> {
  const b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger(), ...options });
  const conn = await Connection.connect({ broker: b.address, reconnect: false });
  cleanups.push(dir.remove, () => b.close(), () => conn.destroy());
  return { b, conn, dir };
}

describe('regressions', () => {
  it('a refused topic never stays in SQLite to block the next start', async () => {
    const dir = tempDir();
    const { b, conn } = await setup({}, dir);
    expect(hasCode(await rejection(conn.request('CreateTopic', { topic: '.orders' })), 'INVALID_TOPIC')).toBe(true);
    expect(hasCode(await rejection(conn.request('CreateTopic', { topic: 'huge', segmentBytes: 1_500_000_000 })), 'INVALID_CONFIG')).toBe(true);
    conn.destroy();
    await b.close();
    const again = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
    cleanups.push(() => again.close());
    const c2 = await Connection.connect({ broker: again.address });
    cleanups.push(() => c2.destroy());
    expect((await c2.request('ListTopics', {})).topics).toEqual([]);
  });

  it('a broker stopped by a storage failure stops listening', async () => {
    const { b, conn } = await setup();
    b.broker.fail(new Error('disk on fire'), 'test');
    await b.broker.whenClosed();
    await new Promise((r) => setTimeout(r, 50));
    expect(conn.state).toBe('closed');
    expect(hasCode(await rejection(Connection.connect({ broker: b.address, connectTimeoutMs: 300 })), 'CONNECTION_CLOSED')).toBe(true);
  });

  it('a stale lock holding our own pid does not block a restart, a live one does', async () => {
    const dir = tempDir();
    writeFileSync(join(dir.path, '.lock'), `${process.pid}\n`);
    const { b } = await setup({}, dir);
    expect(hasCode(await rejection(startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() })), 'INVALID_CONFIG')).toBe(true);
    expect(b.port).toBeGreaterThan(0);
  });

  it('fetch() keeps its whole batch unprocessed until the next call, even with auto-commit', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'batch' });
    await produceRaw(conn, 'batch', 0, [0, 1, 2, 3, 4].map((value) => ({ value })));
    const consumer = new PollConsumer(conn, { topics: ['batch'], group: 'bg', from: 'earliest', autoCommitIntervalMs: 20, maxWaitMs: 50 });
    cleanups.push(() => consumer.close());
    expect((await consumer.fetch()).map((m) => m.value)).toEqual([0, 1, 2, 3, 4]);
    await new Promise((r) => setTimeout(r, 150)); // several auto-commit ticks while "processing"
    // At most the starting position may be committed: nothing of the batch counts as processed.
    for (const o of (await conn.request('FetchOffsets', { groupId: 'bg' })).offsets) expect(o.offset).toBe(0);
    await consumer.fetch();
    await new Promise((r) => setTimeout(r, 150));
    expect((await conn.request('FetchOffsets', { groupId: 'bg' })).offsets.map((o) => o.offset)).toEqual([5]);
  });

  it('a throw inside the loop body redelivers that message to the next iteration', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'throw' });
    await produceRaw(conn, 'throw', 0, ['a', 'b', 'c'].map((value) => ({ value })));
    const consumer = new PollConsumer(conn, { topics: ['throw'], group: 'tg', from: 'earliest', maxWaitMs: 50 });
    cleanups.push(() => consumer.close());
    const seen: unknown[] = [];
    await expect(
      (async () => {
        for await (const m of consumer) {
          seen.push(m.value);
          if (m.value === 'b') throw new Error('handler failed');
        }
      })(),
    ).rejects.toThrow('handler failed');
    for await (const m of consumer) {
      seen.push(m.value);
      if (m.value === 'c') break;
    }
    expect(seen).toEqual(['a', 'b', 'b', 'c']);
  });

  it('a seek while a long poll is out discards what that poll returns', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'seek' });
    await produceRaw(conn, 'seek', 0, ['x', 'y'].map((value) => ({ value })));
    const consumer = new PollConsumer(conn, { topics: ['seek'], from: 'latest', maxWaitMs: 2_000 });
    cleanups.push(() => consumer.close());
    await consumer.start();
    const parked = consumer.fetch();
    await new Promise((r) => setTimeout(r, 50));
    consumer.seek('seek', 0, 0);
    await produceRaw(conn, 'seek', 0, [{ value: 'z' }]);
    expect(await parked).toEqual([]);
    expect((await consumer.fetch()).map((m) => m.value)).toEqual(['x', 'y', 'z']);
  });

  it('a consumer unsubscribed without release can still settle what it holds', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'keep' });
    await produceRaw(conn, 'keep', 0, [{ value: 'm' }]);
    const delivered: unknown[] = [];
    conn.onPush(Opcode.Deliver, (body) => delivered.push(parseDeliverPush(body)));
    const sub = await conn.request('Subscribe', { subscription: 'keep-s', topic: 'keep', prefetch: 5, create: { start: 'earliest' } });
    const deadline = Date.now() + 2_000;
    while (delivered.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await conn.request('Unsubscribe', { consumerId: sub.consumerId, release: false });
    const settled = await conn.request('Settle', { consumerId: sub.consumerId, items: [[0, 0, 1, SettleOp.Ack]], receipt: true });
    expect(settled.errors).toEqual([]);
    const d = await conn.request('DescribeSubscription', { subscription: 'keep-s' });
    expect([d.pending, d.inFlight]).toEqual([0, 0]);
  });

  it('push delivery counts survive a restart, so maxDeliveries holds across it', async () => {
    const dir = tempDir();
    const first = await setup({}, dir);
    await first.conn.request('CreateTopic', { topic: 'count' });
    await produceRaw(first.conn, 'count', 0, [{ value: 'poison' }]);
    const seen: number[] = [];
    first.conn.onPush(Opcode.Deliver, (body) => seen.push(...parseDeliverPush(body).attempts));
    await first.conn.request('Subscribe', { subscription: 'count-s', topic: 'count', prefetch: 1, create: { start: 'earliest', maxDeliveries: 3 } });
    await until(() => seen.length === 1);
    first.conn.destroy(); // released: that delivery counted
    await new Promise((r) => setTimeout(r, 50));
    await first.b.close();
    const again = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
    cleanups.push(() => again.close());
    const conn = await Connection.connect({ broker: again.address });
    cleanups.push(() => conn.destroy());
    const attempts: number[] = [];
    conn.onPush(Opcode.Deliver, (body) => attempts.push(...parseDeliverPush(body).attempts));
    await conn.request('Subscribe', { subscription: 'count-s', topic: 'count', prefetch: 1 });
    await until(() => attempts.length === 1);
    expect(attempts).toEqual([2]);
  });

  it('a topic another subscription dead-letters into cannot be deleted', async () => {
    const { conn } = await setup();
    await conn.request('CreateTopic', { topic: 'src' });
    await conn.request('Subscribe', { subscription: 'src-s', topic: 'src', prefetch: 1 });
    const err = await rejection(conn.request('DeleteTopic', { topic: 'src.dlq' }));
    expect(hasCode(err, 'INVALID_REQUEST')).toBe(true);
    expect((err as Error).message).toMatch(/dead-letter topic of subscription src-s/);
  });

  it('messages retention deleted before they were settled stop counting as pending', async () => {
    const { conn } = await setup({ retentionCheckIntervalMs: 50 });
    await conn.request('CreateTopic', { topic: 'ret', segmentBytes: 1024, retentionBytes: 1024 });
    await conn.request('Subscribe', { subscription: 'ret-s', topic: 'ret', prefetch: 1, create: { start: 'earliest', ackWaitMs: 60_000 } });
    for (let i = 0; i < 40; i++) await produceRaw(conn, 'ret', 0, [{ value: 'x'.repeat(200) }]);
    const start = async (): Promise<number> => (await conn.request('DescribeTopic', { topic: 'ret' })).partitions[0]?.startOffset ?? 0;
    // Generous waits: retention runs every 50 ms, but a busy 2-core machine can delay it.
    await until(async () => (await start()) > 10, 20_000);
    await until(async () => {
      const d = await conn.request('DescribeSubscription', { subscription: 'ret-s' });
      return (d.partitions[0]?.ackFloor ?? 0) >= (await start());
    }, 20_000);
  });

  it('pipelined produces to an auto-created topic are appended in arrival order', async () => {
    const { conn } = await setup({ autoCreateTopics: true });
    const sends = [0, 1, 2, 3].map((i) => conn.request('Produce', { batches: [{ topic: 'auto', partition: 0, batch: encodeRecordBatch([{ value: Buffer.from(String(i)) }]) }] }));
    const offsets = (await Promise.all(sends)).map((r) => r.results[0]?.baseOffset);
    expect(offsets).toEqual([0, 1, 2, 3]);
  });
});
