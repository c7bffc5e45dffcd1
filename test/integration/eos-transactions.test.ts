import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { connect, type SluiceClient } from '../../client/client.js';
import { runTransform } from '../../client/exactly-once.js';
import type { PollConsumerOptions } from '../../client/poll-consumer.js';
import type { Producer, ProducerOptions } from '../../client/producer.js';
import { hasCode } from '../../client/protocol/errors.js';
import { ATTR_TRANSACTIONAL, BATCH_OVERHEAD, readBatchHeader, type BatchHeader } from '../../client/protocol/record-batch.js';
import type { PushMessage } from '../../client/push-consumer.js';
import type { Message } from '../../client/value-codec.js';
import { rejection } from '../helpers/async.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(): Promise<{ b: RunningBroker; c: SluiceClient }> {
  const dir = tempDir();
  const b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
  cleanups.push(dir.remove, () => b.close());
  return { b, c: await client(b) };
}

async function client(b: RunningBroker): Promise<SluiceClient> {
  const c = await connect({ broker: b.address, reconnect: { initialDelayMs: 10, maxDelayMs: 100 } });
  cleanups.push(() => c.close().catch(() => c.connection.destroy()));
  return c;
}

function txProducer(c: SluiceClient, transactionalId: string, options: ProducerOptions = {}): Producer {
  return c.producer({ transactionalId, lingerMs: 0, ...options });
}

/** Everything a fresh group-less consumer reads from the start within `ms` of quiet. */
async function readAll(c: SluiceClient, topic: string, options: Partial<PollConsumerOptions> = {}): Promise<Message[]> {
  const consumer = c.pollConsumer({ topics: [topic], from: 'earliest', maxWaitMs: 100, ...options });
  const out: Message[] = [];
  try {
    for (let empty = 0; empty < 2; ) {
      const batch = await consumer.fetch();
      if (batch.length === 0) empty++;
      else out.push(...batch);
    }
  } finally {
    await consumer.close();
  }
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

const values = (messages: readonly Message[]): unknown[] => messages.map((m) => m.value);

async function batchHeaders(c: SluiceClient, topic: string, partition: number): Promise<BatchHeader[]> {
  const res = await c.connection.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic, partition, offset: 0 }] });
  const records = res.partitions[0]!.records;
  const out: BatchHeader[] = [];
  for (let pos = 0; pos < records.length; ) {
    const h = readBatchHeader(records, pos);
    out.push(h);
    pos += h.batchLength + BATCH_OVERHEAD;
  }
  return out;
}

async function committed(c: SluiceClient, groupId: string): Promise<Record<string, number>> {
  const res = await c.connection.request('FetchOffsets', { groupId });
  return Object.fromEntries(res.offsets.map((o) => [`${o.topic}/${o.partition}`, o.offset]));
}

describe('producer.transaction()', () => {
  it('commits sends to several partitions and staged offsets together; each transaction gets a new epoch and sequences from 0', async () => {
    const { c } = await setup();
    await c.admin().createTopic('out', { partitions: 2 });
    await c.admin().createTopic('in', { partitions: 1 });
    const p = txProducer(c, 'copier');
    const result = await p.transaction(async (tx) => {
      await Promise.all([tx.send({ topic: 'out', partition: 0, value: 'a0' }), tx.send({ topic: 'out', partition: 1, value: 'b0' }), tx.send({ topic: 'out', partition: 0, value: 'a1' })]);
      // Not visible before the commit.
      expect(await readAll(c, 'out')).toEqual([]);
      await tx.commitOffsets('g', [{ topic: 'in', partition: 0, offset: 7 }]);
      return 'done';
    });
    expect(result).toBe('done');
    expect(values(await readAll(c, 'out'))).toEqual(['a0', 'a1', 'b0']);
    expect(await committed(c, 'g')).toEqual({ 'in/0': 7 });
    const first = p.identity!;
    await p.transaction(async (tx) => {
      await tx.send({ topic: 'out', partition: 0, value: 'a2' });
    });
    expect(p.identity!.producerEpoch).toBeGreaterThan(first.producerEpoch);
    const headers = (await batchHeaders(c, 'out', 0)).filter((h) => (h.attributes & 0x20) === 0);
    expect(headers.map((h) => [h.attributes & ATTR_TRANSACTIONAL, h.baseSequence, h.recordCount])).toEqual([
      [ATTR_TRANSACTIONAL, 0, 2],
      [ATTR_TRANSACTIONAL, 0, 1],
    ]);
    expect(headers[1]!.producerEpoch).toBe(first.producerEpoch);
  });

  it('a throw aborts: the call rejects with it, read_committed sees nothing, read_uncommitted sees the data, offsets stay', async () => {
    const { c } = await setup();
    await c.admin().createTopic('out', { partitions: 1 });
    await c.admin().createTopic('in', { partitions: 1 });
    const p = txProducer(c, 'tx');
    const boom = new Error('boom');
    const err = await rejection(
      p.transaction(async (tx) => {
        await tx.send({ topic: 'out', value: 'doomed' });
        await tx.commitOffsets('g', [{ topic: 'in', partition: 0, offset: 3 }]);
        throw boom;
      }),
    );
    expect(err).toBe(boom);
    expect(await readAll(c, 'out')).toEqual([]);
    expect(values(await readAll(c, 'out', { isolation: 'read_uncommitted' }))).toEqual(['doomed']);
    expect(await committed(c, 'g')).toEqual({});
    // The producer goes on; the consumer moves past the aborted batch and its marker.
    await p.transaction((tx) => tx.send({ topic: 'out', value: 'kept' }));
    const read = await readAll(c, 'out');
    expect(values(read)).toEqual(['kept']);
    expect(read[0]!.offset).toBe(2);
  });

  it('a failed send fails the transaction even if the function ignores it', async () => {
    const { c } = await setup();
    await c.admin().createTopic('out', { partitions: 1 });
    const p = txProducer(c, 'tx');
    const err = await rejection(
      p.transaction(async (tx) => {
        await tx.send({ topic: 'out', value: 'ok' });
        void tx.send({ topic: 'out', partition: 9, value: 'no such partition' }).catch(() => undefined);
      }),
    );
    expect(hasCode(err, 'PARTITION_NOT_FOUND')).toBe(true);
    expect(await readAll(c, 'out')).toEqual([]);
  });

  it('refuses sends outside a transaction and use of an ended one; checks its options', async () => {
    const { c } = await setup();
    await c.admin().createTopic('out', { partitions: 1 });
    const p = txProducer(c, 'tx');
    expect(hasCode(await rejection(p.send({ topic: 'out', value: 'x' })), 'INVALID_TXN_STATE')).toBe(true);
    let leaked: Parameters<Parameters<Producer['transaction']>[0]>[0] | undefined;
    await p.transaction((tx) => {
      leaked = tx;
    });
    expect(hasCode(await rejection(leaked!.send({ topic: 'out', value: 'late' })), 'INVALID_TXN_STATE')).toBe(true);
    expect(hasCode(await rejection(c.producer().transaction(() => undefined)), 'INVALID_CONFIG')).toBe(true);
    expect(() => c.producer({ transactionalId: 'x', idempotent: false })).toThrow(/idempotent/);
    // Transactions run one at a time.
    const order: string[] = [];
    await Promise.all(
      ['one', 'two', 'three'].map((name) =>
        p.transaction(async (tx) => {
          order.push(`${name}:start`);
          await tx.send({ topic: 'out', value: name });
          order.push(`${name}:end`);
        }),
      ),
    );
    expect(order).toEqual(['one:start', 'one:end', 'two:start', 'two:end', 'three:start', 'three:end']);
    expect(values(await readAll(c, 'out'))).toEqual(['one', 'two', 'three']);
  });

  it('fences a zombie: a second instance with the same transactional id aborts its transaction, and it is closed', async () => {
    const { b, c } = await setup();
    await c.admin().createTopic('out', { partitions: 1 });
    const zombie = txProducer(c, 'app');
    const other = await client(b);
    const fresh = txProducer(other, 'app');
    const err = await rejection(
      zombie.transaction(async (tx) => {
        await tx.send({ topic: 'out', value: 'zombie' });
        await fresh.initTransactions(); // the new instance takes over while the old one is mid-transaction
        await tx.send({ topic: 'out', value: 'zombie, later' }).catch(() => undefined);
      }),
    );
    expect(hasCode(err, 'PRODUCER_FENCED')).toBe(true);
    expect(hasCode(await rejection(zombie.transaction((tx) => tx.send({ topic: 'out', value: 'again' }))), 'PRODUCER_FENCED')).toBe(true);
    expect(hasCode(await rejection(zombie.send({ topic: 'out', value: 'again' })), 'PRODUCER_FENCED')).toBe(true);
    await fresh.transaction((tx) => tx.send({ topic: 'out', value: 'fresh' }));
    expect(values(await readAll(c, 'out'))).toEqual(['fresh']);
    expect(values(await readAll(c, 'out', { isolation: 'read_uncommitted' }))).toEqual(['zombie', 'fresh']);
  });

  it('a transaction the broker aborted on its timeout rejects with TRANSACTION_ABORTED; the producer goes on', async () => {
    const { c } = await setup();
    await c.admin().createTopic('out', { partitions: 1 });
    const p = txProducer(c, 'slow', { transactionTimeoutMs: 200 });
    const err = await rejection(
      p.transaction(async (tx) => {
        await tx.send({ topic: 'out', value: 'too slow' });
        await new Promise((r) => setTimeout(r, 1_600)); // the broker checks timeouts every second
        await tx.send({ topic: 'out', value: 'after the timeout' });
      }),
    );
    expect(hasCode(err, 'TRANSACTION_ABORTED')).toBe(true);
    await p.transaction((tx) => tx.send({ topic: 'out', value: 'in time' }));
    expect(values(await readAll(c, 'out'))).toEqual(['in time']);
  });

  it('stages a group member\'s offsets: committed with the transaction, refused for a fenced epoch', async () => {
    const { c } = await setup();
    await c.admin().createTopic('in', { partitions: 1 });
    await c.admin().createTopic('out', { partitions: 1 });
    const plain = c.producer();
    for (let i = 0; i < 5; i++) await plain.send({ topic: 'in', value: `m${i}` });
    const consumer = c.pollConsumer({ topics: ['in'], group: 'g', from: 'earliest', autoCommit: false });
    const p = txProducer(c, 'tx');
    const batch = await consumer.fetch();
    expect(batch.length).toBe(5);
    const member = consumer.groupMember()!;
    expect(member).toMatchObject({ groupId: 'g', memberEpoch: expect.any(Number) as number });
    await p.transaction(async (tx) => {
      await tx.send({ topic: 'out', value: 'sum' });
      await tx.commitOffsets('g', [{ topic: 'in', partition: 0, offset: 5 }], member);
    });
    expect(await committed(c, 'g')).toEqual({ 'in/0': 5 });
    const stale = { ...member, memberEpoch: member.memberEpoch + 7 };
    const err = await rejection(p.transaction((tx) => tx.commitOffsets('g', [{ topic: 'in', partition: 0, offset: 9 }], stale)));
    expect(hasCode(err, 'FENCED_MEMBER_EPOCH')).toBe(true);
    expect(await committed(c, 'g')).toEqual({ 'in/0': 5 });
  });
});

describe('PollConsumer for exactly-once', () => {
  it('reads read_committed by default, waits behind an open transaction, caps fetches, and seeks back to the committed offsets', async () => {
    const { c } = await setup();
    await c.admin().createTopic('t', { partitions: 1 });
    const p = txProducer(c, 'tx');
    const plain = c.producer();
    const consumer = c.pollConsumer({ topics: ['t'], group: 'g', from: 'earliest', autoCommit: false, maxWaitMs: 100 });
    expect(consumer.isolation).toBe('read_committed');
    expect(() => c.pollConsumer({ topics: ['t'], isolation: 'dirty' as never })).toThrow(/isolation/);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const open = p.transaction(async (tx) => {
      await tx.send({ topic: 't', value: 'txn' });
      await held;
    });
    await new Promise((r) => setTimeout(r, 50));
    await plain.send({ topic: 't', value: 'plain, after the open transaction' });
    // The open transaction holds back everything after its first offset.
    expect(await consumer.fetch()).toEqual([]);
    const uncommitted = await readAll(c, 't', { isolation: 'read_uncommitted' });
    expect(values(uncommitted)).toEqual(['txn', 'plain, after the open transaction']);
    release();
    await open;
    for (let i = 0; i < 5; i++) await plain.send({ topic: 't', value: `m${i}` });
    const first = await consumer.fetch({ maxMessages: 3 });
    expect(values(first)).toEqual(['txn', 'plain, after the open transaction', 'm0']);
    const rest = await consumer.fetch();
    expect(values(rest)).toEqual(['m1', 'm2', 'm3', 'm4']);
    await consumer.commit([{ topic: 't', partition: 0, offset: first.at(-1)!.offset + 1 }]);
    // Back to the committed offset: what came after it is read again.
    await consumer.seekToCommitted();
    expect(values(await consumer.fetch())).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(consumer.groupMember()).toMatchObject({ groupId: 'g' });
    await consumer.close();
  });
});

describe('tx.ack(): push acks in a transaction', () => {
  it('an ack staged in a committed transaction settles the message; in an aborted one it is redelivered', async () => {
    const { c } = await setup();
    await c.admin().createTopic('jobs', { partitions: 1 });
    await c.admin().createTopic('results', { partitions: 1 });
    const plain = c.producer();
    await plain.send({ topic: 'jobs', value: 'job-1' });
    await plain.send({ topic: 'jobs', value: 'job-2' });
    const consumer = c.pushConsumer({ topic: 'jobs', subscription: 'workers', prefetch: 10, create: { start: 'earliest', ackWaitMs: 30_000 } });
    const p = txProducer(c, 'worker');
    const first = (await consumer.receive({ timeoutMs: 5_000 }))!;
    const second = (await consumer.receive({ timeoutMs: 5_000 }))!;
    expect([first.value, second.value]).toEqual(['job-1', 'job-2']);
    await p.transaction(async (tx) => {
      await tx.send({ topic: 'results', value: `done ${String(first.value)}` });
      await tx.ack(first); // the message names its consumer
    });
    await rejection(
      p.transaction(async (tx) => {
        await tx.send({ topic: 'results', value: `done ${String(second.value)}` });
        await tx.ack(second, consumer);
        throw new Error('handler failed');
      }),
    );
    await second.nack({ delayMs: 0 });
    const again: PushMessage = (await consumer.receive({ timeoutMs: 5_000 }))!;
    expect(again.value).toBe('job-2');
    expect(again.attempt).toBe(2);
    await p.transaction(async (tx) => {
      await tx.send({ topic: 'results', value: `done ${String(again.value)}` });
      await tx.ack(again, consumer);
    });
    expect(values(await readAll(c, 'results'))).toEqual(['done job-1', 'done job-2']);
    // Nothing else comes: both are settled.
    expect(await consumer.receive({ timeoutMs: 300 })).toBeUndefined();
    const described = await c.connection.request('DescribeSubscription', { subscription: 'workers' });
    expect(JSON.stringify(described)).toContain('"ackFloor":2');
    await consumer.close();
  });
});

describe('runTransform (in-process)', () => {
  it('copies input to output exactly, commits the input offsets with it, and stops on its signal', async () => {
    const { c } = await setup();
    await c.admin().createTopic('in', { partitions: 2 });
    await c.admin().createTopic('out', { partitions: 2 });
    const plain = c.producer({ lingerMs: 1 });
    const total = 2_000;
    await Promise.all(Array.from({ length: total }, (_, i) => plain.send({ topic: 'in', partition: i % 2, value: `m${i}` })));
    const consumer = c.pollConsumer({ topics: ['in'], group: 'copy', from: 'earliest', autoCommit: false });
    const producer = txProducer(c, 'copy-0', { lingerMs: 2 });
    const stop = new AbortController();
    let copied = 0;
    const stats = await runTransform({
      consumer,
      producer,
      batchSize: 300,
      signal: stop.signal,
      handler: (m) => ({ topic: 'out', partition: m.partition, value: `copy of ${String(m.value)}` }),
      onCommit: ({ inputs }) => {
        copied += inputs;
        if (copied === total) stop.abort();
      },
    });
    expect(stats).toMatchObject({ inputs: total, outputs: total, aborted: 0 });
    expect(stats.transactions).toBeGreaterThanOrEqual(Math.ceil(total / 300));
    const out = await readAll(c, 'out');
    for (const partition of [0, 1]) {
      expect(out.filter((m) => m.partition === partition).map((m) => m.value)).toEqual(
        Array.from({ length: total }, (_, i) => i).filter((i) => i % 2 === partition).map((i) => `copy of m${i}`),
      );
    }
    expect(await committed(c, 'copy')).toEqual({ 'in/0': total / 2, 'in/1': total / 2 });
  });

  it('a handler that throws aborts its batch and ends runTransform with the error; nothing of the batch is visible', async () => {
    const { c } = await setup();
    await c.admin().createTopic('in', { partitions: 1 });
    await c.admin().createTopic('out', { partitions: 1 });
    const plain = c.producer();
    await Promise.all(Array.from({ length: 10 }, (_, i) => plain.send({ topic: 'in', value: i })));
    const consumer = c.pollConsumer({ topics: ['in'], group: 'copy', from: 'earliest', autoCommit: false });
    const producer = txProducer(c, 'copy-0');
    const bad = new Error('cannot transform 7');
    const err = await rejection(
      runTransform({
        consumer,
        producer,
        batchSize: 5,
        handler: (m) => {
          if (m.value === 7) throw bad;
          return { topic: 'out', value: m.value };
        },
      }),
    );
    expect(err).toBe(bad);
    expect(values(await readAll(c, 'out'))).toEqual([0, 1, 2, 3, 4]);
    expect(await committed(c, 'copy')).toEqual({ 'in/0': 5 });
    // Misconfigured: refused up front.
    const auto = c.pollConsumer({ topics: ['in'], group: 'other' });
    expect(hasCode(await rejection(runTransform({ consumer: auto, producer, handler: () => undefined })), 'INVALID_CONFIG')).toBe(true);
    expect(hasCode(await rejection(runTransform({ consumer, producer: c.producer(), handler: () => undefined })), 'INVALID_CONFIG')).toBe(true);
  });
});
