import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { hasCode } from '../../client/protocol/errors.js';
import { decodeBatches } from '../../client/protocol/record-batch.js';
import { PollConsumer, type PollConsumerOptions, type PositionChange } from '../../client/poll-consumer.js';
import type { Message } from '../../client/value-codec.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { MemoryLogger } from '../helpers/logger.js';
import { produceRaw } from '../helpers/produce.js';
import { tempDir } from '../helpers/temp-dir.js';
import { rejection } from '../helpers/async.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function broker(options: { groupSessionTimeoutMs?: number; groupHeartbeatIntervalMs?: number } = {}): Promise<RunningBroker> {
  const dir = tempDir();
  const b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger(), ...options });
  cleanups.push(dir.remove, () => b.close());
  return b;
}

async function connect(address: string): Promise<Connection> {
  const c = await Connection.connect({ broker: address, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  cleanups.push(() => c.destroy());
  return c;
}

describe('long-poll fetch', () => {
  it('returns empty at its deadline, and wakes within milliseconds of an append', async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'lp', partitions: 1 });
    const started = Date.now();
    const empty = await conn.request('Fetch', { maxWaitMs: 300, minBytes: 1, maxBytes: 1 << 20, partitions: [{ topic: 'lp', partition: 0, offset: 0 }] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(empty.partitions[0]?.records.length).toBe(0);

    const parked = conn.request('Fetch', { maxWaitMs: 10_000, minBytes: 1, maxBytes: 1 << 20, partitions: [{ topic: 'lp', partition: 0, offset: 0 }] });
    await new Promise((r) => setTimeout(r, 100));
    await produceRaw(conn, 'lp', 0, [{ value: 'wake up' }]);
    const acked = Date.now();
    const woken = await parked;
    // Far below the 10 s wait: the append woke the poll, the deadline did not.
    expect(Date.now() - acked).toBeLessThan(200);
    expect(decodeBatches(woken.partitions[0]?.records ?? Buffer.alloc(0)).map((r) => r.value?.toString())).toEqual(['wake up']);
  });

  it('answers OFFSET_OUT_OF_RANGE with the valid range', async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'oor', partitions: 1 });
    await produceRaw(conn, 'oor', 0, [{ value: 1 }, { value: 2 }]);
    const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 1, maxBytes: 1024, partitions: [{ topic: 'oor', partition: 0, offset: 9 }] });
    expect(res.partitions[0]?.error).toMatchObject({ name: 'OFFSET_OUT_OF_RANGE', details: { start: 0, end: 2 } });
  });
});

describe('PollConsumer', () => {
  it('round-trips keys, headers and msgpack, string and binary values in partition order', async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'rt', partitions: 2 });
    await produceRaw(conn, 'rt', 0, [
      { key: 'k1', value: { n: 1, list: [1, 2], nested: { ok: true } }, headers: { trace: 'abc' } },
      { key: 'k2', value: 'plain text' },
      { value: Buffer.from([0, 1, 2, 255]) },
    ]);
    await produceRaw(conn, 'rt', 1, [{ value: 'p1-a' }, { value: 'p1-b' }]);
    const consumer = new PollConsumer(conn, { topics: ['rt'], from: 'earliest', maxWaitMs: 100 });
    cleanups.push(() => consumer.close());
    const got: Message[] = [];
    for await (const m of consumer) {
      got.push(m);
      if (got.length === 5) break;
    }
    const p0 = got.filter((m) => m.partition === 0);
    expect(p0.map((m) => m.offset)).toEqual([0, 1, 2]);
    expect(p0[0]).toMatchObject({ key: Buffer.from('k1'), value: { n: 1, list: [1, 2], nested: { ok: true } } });
    expect(p0[0]?.headers['trace']?.toString()).toBe('abc');
    expect(p0[1]?.value).toBe('plain text');
    expect(p0[2]?.value).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(got.filter((m) => m.partition === 1).map((m) => m.value)).toEqual(['p1-a', 'p1-b']);
  });

  it('commits what was processed and resumes after it; seek and pause work', async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'cm', partitions: 1 });
    await produceRaw(conn, 'cm', 0, [0, 1, 2, 3, 4, 5].map((value) => ({ value })));
    const first = new PollConsumer(conn, { topics: ['cm'], group: 'g', from: 'earliest', autoCommit: false, maxWaitMs: 100 });
    const seen: unknown[] = [];
    for await (const m of first) {
      seen.push(m.value);
      if (seen.length === 3) {
        await first.commit();
        break;
      }
    }
    await first.close();
    expect((await conn.request('FetchOffsets', { groupId: 'g' })).offsets).toEqual([{ topic: 'cm', partition: 0, offset: 3, metadata: null }]);

    const second = new PollConsumer(conn, { topics: ['cm'], group: 'g', from: 'earliest', maxWaitMs: 100 });
    cleanups.push(() => second.close());
    const batch = await second.fetch();
    expect(batch.map((m) => m.value)).toEqual([3, 4, 5]);
    second.seek('cm', 0, 1);
    expect((await second.fetch()).map((m) => m.value)).toEqual([1, 2, 3, 4, 5]);
    second.pause([{ topic: 'cm', partition: 0 }]);
    await produceRaw(conn, 'cm', 0, [{ value: 6 }]);
    expect(await second.fetch()).toEqual([]);
    second.resume([{ topic: 'cm', partition: 0 }]);
    expect((await second.fetch()).map((m) => m.value)).toEqual([6]);
  });

  it('refuses a commit from a fenced member', async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'fence', partitions: 2 });
    const joined = await conn.request('GroupHeartbeat', { groupId: 'fg', memberEpoch: 0, topics: ['fence'], ownedPartitions: [] });
    expect(joined.memberEpoch).toBeGreaterThan(0);
    // The same member id joins again (a restarted process): the old incarnation is a zombie.
    const again = await conn.request('GroupHeartbeat', { groupId: 'fg', memberId: joined.memberId, memberEpoch: 0, topics: ['fence'], ownedPartitions: [] });
    expect(again.memberEpoch).toBeGreaterThan(joined.memberEpoch);
    const err = await rejection(conn.request('CommitOffsets', { groupId: 'fg', memberId: joined.memberId, memberEpoch: joined.memberEpoch, offsets: [{ topic: 'fence', partition: 0, offset: 1 }] }));
    expect(hasCode(err, 'FENCED_MEMBER_EPOCH')).toBe(true);
    expect((await conn.request('FetchOffsets', { groupId: 'fg' })).offsets).toEqual([]);
  });
});

describe('consumer groups over TCP', () => {
  it('three consumers over six partitions: a join and a kill lose nothing and end balanced', async () => {
    const b = await broker({ groupSessionTimeoutMs: 1_500, groupHeartbeatIntervalMs: 100 });
    const admin = await connect(b.address);
    await admin.request('CreateTopic', { topic: 'work', partitions: 6 });
    const total = 600;
    const produced = new Set<string>();
    const processed = new Map<string, number>();
    let next = 0;
    const produceSome = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++, next++) {
        await produceRaw(admin, 'work', next % 6, [{ value: next }]);
        produced.add(String(next));
      }
    };
    const run = async (consumer: PollConsumer, stop: AbortSignal): Promise<void> => {
      for await (const m of consumer) {
        processed.set(String(m.value), (processed.get(String(m.value)) ?? 0) + 1);
        if (stop.aborted || processed.size >= total) break;
      }
    };
    const make = async (): Promise<{ consumer: PollConsumer; conn: Connection; stop: AbortController; done: Promise<unknown> }> => {
      const conn = await connect(b.address);
      const consumer = new PollConsumer(conn, { topics: ['work'], group: 'workers', from: 'earliest', maxWaitMs: 100, autoCommitIntervalMs: 100 });
      const stop = new AbortController();
      await consumer.start();
      // Settles to the error the loop ended with, if any.
      return { consumer, conn, stop, done: run(consumer, stop.signal).then(() => undefined, (err: unknown) => err) };
    };
    const a = await make();
    const c2 = await make();
    await produceSome(200);
    const c3 = await make(); // one joins mid-stream
    await produceSome(200);
    // One is killed: its connection dies without a commit or a leave; its session must expire.
    c2.conn.destroy();
    c2.stop.abort();
    await produceSome(200);

    const deadline = Date.now() + 20_000;
    while ([...produced].some((v) => !processed.has(v)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect([...produced].filter((v) => !processed.has(v))).toEqual([]);

    // Balanced: the two survivors own three partitions each once the group settles.
    const settle = Date.now() + 10_000;
    while ((a.consumer.assignment().length !== 3 || c3.consumer.assignment().length !== 3) && Date.now() < settle) await new Promise((r) => setTimeout(r, 50));
    expect(a.consumer.assignment().length).toBe(3);
    expect(c3.consumer.assignment().length).toBe(3);

    // Nothing committed is skipped: every committed offset is at most the partition's end, and
    // every message below a committed offset was processed.
    await a.consumer.commit();
    await c3.consumer.commit();
    const committed = (await admin.request('FetchOffsets', { groupId: 'workers' })).offsets;
    for (const o of committed) {
      for (let v = o.partition; v < next; v += 6) {
        const offsetInPartition = Math.floor(v / 6);
        if (offsetInPartition < o.offset) expect(processed.has(String(v))).toBe(true);
      }
    }
    a.stop.abort();
    c3.stop.abort();
    await Promise.all([a.consumer.close(), c3.consumer.close(), c2.consumer.close()]);
    expect(hasCode(await c2.done, 'CONNECTION_CLOSED')).toBe(true);
  }, 60_000);

  it('committed offsets survive a broker kill -9 and restart', async () => {
    const dir = tempDir();
    const bp = await BrokerProcess.start({ dataDir: dir.path });
    cleanups.push(dir.remove, async () => void (await bp.kill()));
    const conn = await connect(bp.address);
    await conn.request('CreateTopic', { topic: 'dur', partitions: 2 });
    await conn.request('CommitOffsets', { groupId: 'dg', memberEpoch: -1, offsets: [{ topic: 'dur', partition: 0, offset: 42, metadata: 'm' }, { topic: 'dur', partition: 1, offset: 7 }] });
    await bp.kill();
    await bp.restart();
    const after = await conn.request('FetchOffsets', { groupId: 'dg' }, { timeoutMs: 10_000 });
    expect(after.offsets).toEqual([
      { topic: 'dur', partition: 0, offset: 42, metadata: 'm' },
      { topic: 'dur', partition: 1, offset: 7, metadata: null },
    ]);
  });
});

describe('PollConsumer onPosition', () => {
  /** A consumer whose position reports are collected, one array per onPosition call. */
  function watched(conn: Connection, options: Omit<PollConsumerOptions, 'onPosition'>): { consumer: PollConsumer; calls: PositionChange[][] } {
    const calls: PositionChange[][] = [];
    const consumer = new PollConsumer(conn, { maxWaitMs: 100, ...options, onPosition: (changes) => calls.push([...changes]) });
    cleanups.push(() => consumer.close());
    return { consumer, calls };
  }

  const byPartition = (changes: readonly PositionChange[]): PositionChange[] => [...changes].sort((a, b) => a.partition - b.partition);

  it("reports the partitions assigned at start with reason 'assigned' and the `from` start", async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'pa', partitions: 2 });
    await produceRaw(conn, 'pa', 0, [{ value: 0 }, { value: 1 }, { value: 2 }]);
    await produceRaw(conn, 'pa', 1, [{ value: 0 }, { value: 1 }, { value: 2 }, { value: 3 }, { value: 4 }]);

    const latest = watched(conn, { topics: ['pa'], from: 'latest' });
    const earliest = watched(conn, { topics: ['pa'], from: 'earliest' });
    const exact = watched(conn, { topics: ['pa'], from: { offset: 2 } });
    await Promise.all([latest.consumer.start(), earliest.consumer.start(), exact.consumer.start()]);
    expect(latest.calls.map(byPartition)).toEqual([
      [
        { topic: 'pa', partition: 0, offset: 3, reason: 'assigned' },
        { topic: 'pa', partition: 1, offset: 5, reason: 'assigned' },
      ],
    ]);
    expect(earliest.calls.map(byPartition)).toEqual([
      [
        { topic: 'pa', partition: 0, offset: 0, reason: 'assigned' },
        { topic: 'pa', partition: 1, offset: 0, reason: 'assigned' },
      ],
    ]);
    expect(exact.calls.map(byPartition)).toEqual([
      [
        { topic: 'pa', partition: 0, offset: 2, reason: 'assigned' },
        { topic: 'pa', partition: 1, offset: 2, reason: 'assigned' },
      ],
    ]);
  });

  it("in a group: the committed offset where there is one, the `from` start elsewhere", async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'pg', partitions: 2 });
    await produceRaw(conn, 'pg', 0, [0, 1, 2, 3, 4, 5].map((value) => ({ value })));
    await produceRaw(conn, 'pg', 1, [0, 1, 2, 3].map((value) => ({ value })));
    await conn.request('CommitOffsets', { groupId: 'og', memberEpoch: -1, offsets: [{ topic: 'pg', partition: 0, offset: 4 }] });

    const { consumer, calls } = watched(conn, { topics: ['pg'], group: 'og', from: 'latest', autoCommit: false });
    await consumer.start();
    const deadline = Date.now() + 5_000;
    while (calls.flat().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(calls.every((c) => c.every((p) => p.reason === 'assigned'))).toBe(true);
    expect(byPartition(calls.flat())).toEqual([
      { topic: 'pg', partition: 0, offset: 4, reason: 'assigned' },
      { topic: 'pg', partition: 1, offset: 4, reason: 'assigned' },
    ]);
    // And that is where reading starts: p0 from the commit, p1 at its end (nothing to read).
    const got = await consumer.fetch();
    expect(got.map((m) => [m.partition, m.offset])).toEqual([
      [0, 4],
      [0, 5],
    ]);
  });

  it("seek() reports 'seek' with the new offset, forwards and back, and reading continues there", async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'ps', partitions: 1 });
    await produceRaw(conn, 'ps', 0, Array.from({ length: 10 }, (_, value) => ({ value })));
    const { consumer, calls } = watched(conn, { topics: ['ps'], from: 'earliest' });
    // Two handed out, the rest of the fetched batch (2..9) buffered.
    expect((await consumer.fetch({ maxMessages: 2 })).map((m) => m.offset)).toEqual([0, 1]);
    calls.length = 0;

    consumer.seek('ps', 0, 7);
    expect(calls).toEqual([[{ topic: 'ps', partition: 0, offset: 7, reason: 'seek' }]]);
    expect((await consumer.fetch()).map((m) => m.offset)).toEqual([7, 8, 9]);

    consumer.seek('ps', 0, 3);
    expect(calls.slice(1)).toEqual([[{ topic: 'ps', partition: 0, offset: 3, reason: 'seek' }]]);
    expect((await consumer.fetch({ maxMessages: 1 })).map((m) => m.offset)).toEqual([3]);
  });

  it("leaving a for-await loop early reports 'rewind' to the unprocessed message", async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'pr', partitions: 1 });
    await produceRaw(conn, 'pr', 0, [0, 1, 2, 3, 4, 5].map((value) => ({ value })));
    const { consumer, calls } = watched(conn, { topics: ['pr'], from: 'earliest' });
    for await (const m of consumer) {
      if (m.offset === 2) break;
    }
    expect(calls).toEqual([
      [{ topic: 'pr', partition: 0, offset: 0, reason: 'assigned' }],
      [{ topic: 'pr', partition: 0, offset: 2, reason: 'rewind' }],
    ]);
    // The message the loop left is read again.
    expect((await consumer.fetch()).map((m) => m.offset)).toEqual([2, 3, 4, 5]);
    // Breaking at the first message of a new loop rewinds to that one.
    await produceRaw(conn, 'pr', 0, [{ value: 6 }, { value: 7 }]);
    for await (const m of consumer) {
      expect(m.offset).toBe(6);
      break;
    }
    expect(calls.slice(2)).toEqual([[{ topic: 'pr', partition: 0, offset: 6, reason: 'rewind' }]]);
    expect((await consumer.fetch()).map((m) => m.offset)).toEqual([6, 7]);
  });

  it("a position that fell out of the log reports 'reset' to where reading restarts", async () => {
    const b = await broker();
    const conn = await connect(b.address);
    await conn.request('CreateTopic', { topic: 'po', partitions: 1 });
    await produceRaw(conn, 'po', 0, [0, 1, 2].map((value) => ({ value })));

    // Past the end from the start: OFFSET_OUT_OF_RANGE on the first fetch, restart at 'earliest'.
    const beyond = watched(conn, { topics: ['po'], from: { offset: 50 } });
    expect(await beyond.consumer.fetch()).toEqual([]);
    expect(beyond.calls).toEqual([
      [{ topic: 'po', partition: 0, offset: 50, reason: 'assigned' }],
      [{ topic: 'po', partition: 0, offset: 0, reason: 'reset' }],
    ]);
    expect((await beyond.consumer.fetch()).map((m) => m.offset)).toEqual([0, 1, 2]);

    // A seek beyond the end under from 'latest' restarts at the end.
    const latest = watched(conn, { topics: ['po'], from: 'latest' });
    await latest.consumer.start();
    latest.consumer.seek('po', 0, 9);
    expect(await latest.consumer.fetch()).toEqual([]);
    expect(latest.calls).toEqual([
      [{ topic: 'po', partition: 0, offset: 3, reason: 'assigned' }],
      [{ topic: 'po', partition: 0, offset: 9, reason: 'seek' }],
      [{ topic: 'po', partition: 0, offset: 3, reason: 'reset' }],
    ]);
    await produceRaw(conn, 'po', 0, [{ value: 3 }]);
    expect((await latest.consumer.fetch()).map((m) => m.offset)).toEqual([3]);
  });
});
