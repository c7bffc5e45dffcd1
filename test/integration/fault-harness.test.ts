/**
 * The fault harness end to end (issue #7): a real broker process, real TCP, real files.
 *
 * Network faults come from TcpProxy (trickle, delay, stall, a reply cut after the broker did the
 * work); disk faults from disk-faults.ts, applied between runs (torn tail, garbage after the last
 * batch, a bit flipped in a sealed segment). Every test checks the data itself: which values are
 * at which offsets, and that nothing is lost or doubled.
 */
import { statSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SluiceClient } from '../../client/client.js';
import { Connection } from '../../client/connection.js';
import type { ProducerOptions, RecordMetadata } from '../../client/producer.js';
import { hasCode } from '../../client/protocol/errors.js';
import type { ErrorBody } from '../../client/protocol/messages/error.js';
import type { ProduceResponse } from '../../client/protocol/messages/produce.js';
import { decodeBatches } from '../../client/protocol/record-batch.js';
import type { Message } from '../../client/value-codec.js';
import { rejection, until } from '../helpers/async.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { activeSegment, appendGarbage, batchesIn, flipBitInRecords, recoveryPoint, sealedSegments, tearTail } from '../helpers/disk-faults.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { tempDir } from '../helpers/temp-dir.js';
import { answerRecordingClient } from '../helpers/produce-answers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startBroker(): Promise<BrokerProcess> {
  const dir = tempDir('sluice-faults-');
  const bp = await BrokerProcess.start({ dataDir: dir.path });
  cleanups.push(dir.remove, () => bp.stop('SIGKILL').then(() => undefined, () => undefined));
  return bp;
}

async function client(address: string): Promise<{ client: SluiceClient; answers: ProduceResponse[] }> {
  const recorded = await answerRecordingClient(address);
  cleanups.push(() => recorded.client.connection.destroy());
  return recorded;
}

/** A plain connection (no reconnect, no producer): to the broker, it sees the log behind the faults' back. */
async function direct(address: string): Promise<Connection> {
  const conn = await Connection.connect({ broker: address, reconnect: false });
  cleanups.push(() => conn.destroy());
  return conn;
}

interface Read {
  readonly offset: number;
  readonly value: string;
}

/** One Fetch of one partition at `offset`: its records at or after `offset`, or its error. */
async function fetchAt(conn: Connection, topic: string, partition: number, offset: number): Promise<{ records: Read[]; error?: ErrorBody }> {
  const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic, partition, offset }] });
  const p = res.partitions[0]!;
  if (p.error !== undefined) return { records: [], error: p.error };
  const records = decodeBatches(p.records)
    .filter((r) => r.offset >= offset)
    .map((r) => ({ offset: r.offset, value: r.value!.toString() }));
  return { records };
}

/** Every record of a partition, offset by offset from 0, failing on any error. */
async function readAll(conn: Connection, topic: string, partition: number): Promise<Read[]> {
  const out: Read[] = [];
  for (;;) {
    const next = out.length === 0 ? 0 : out[out.length - 1]!.offset + 1;
    const { records, error } = await fetchAt(conn, topic, partition, next);
    if (error !== undefined) throw new Error(`fetch at ${next}: ${error.name} ${error.message}`);
    if (records.length === 0) return out;
    out.push(...records);
  }
}

/**
 * Marks `p` as handled without changing it (awaiting it still throws): if the test fails first,
 * its cleanup closes the connections and the sends still pending would be unhandled rejections.
 */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

const values = (n: number, prefix = 'm'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
/** `values` as the log must hold them: value i at offset from + i. */
const at = (vs: readonly string[], from = 0): Read[] => vs.map((value, i) => ({ offset: from + i, value }));

// ---- network faults ------------------------------------------------------------------------

describe('network faults through the proxy', () => {
  let bp: BrokerProcess;
  const dir = tempDir('sluice-faults-');
  beforeAll(async () => {
    bp = await BrokerProcess.start({ dataDir: dir.path });
  });
  afterAll(async () => {
    await bp.stop('SIGKILL').catch(() => undefined);
    dir.remove();
  });

  async function topic(name: string): Promise<void> {
    const { client: admin } = await client(bp.address);
    await admin.admin().createTopic(name, { partitions: 1 });
  }

  async function proxy(): Promise<TcpProxy> {
    const p = await TcpProxy.start(bp.port);
    cleanups.push(() => p.close());
    return p;
  }

  /**
   * Sends `n` messages through an idempotent producer (in waves, so there are many Produce
   * requests) while a poll consumer on its own connection reads them; both go through `address`.
   * `midway` starts when half the sends are out and runs while the rest are sent. Checks that
   * the sends resolved with their log offsets and that the consumer got every message exactly
   * once, in order. Returns the producer's Produce answers.
   */
  async function exactlyOnceThrough(
    address: string,
    name: string,
    n: number,
    options: ProducerOptions,
    midway = async (): Promise<void> => {},
  ): Promise<ProduceResponse[]> {
    const { client: pc, answers } = await client(address);
    const { client: cc } = await client(address);
    const producer = pc.producer({ lingerMs: 2, ...options });
    const consumer = cc.pollConsumer({ topics: [name], from: 'earliest', maxWaitMs: 100 });
    cleanups.push(() => consumer.close().catch(() => undefined));
    const got: Message[] = [];
    const consuming = quiet(
      (async () => {
        const deadline = Date.now() + 10_000;
        while (got.length < n && Date.now() < deadline) got.push(...(await consumer.fetch()));
      })(),
    );

    const sends: Promise<RecordMetadata>[] = [];
    let fault: Promise<void> | undefined;
    for (let i = 0; i < n; i += 10) {
      if (i >= n / 2) fault ??= midway();
      for (let j = i; j < Math.min(n, i + 10); j++) sends.push(quiet(producer.send({ topic: name, partition: 0, value: `m${j}` })));
      await new Promise((r) => setTimeout(r, 3));
    }
    await fault;
    const acks = await Promise.all(sends);
    await consuming;
    // Nothing more to come: no duplicate behind the last one.
    got.push(...(await consumer.fetch()));

    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(got.map((m) => ({ offset: m.offset, value: m.value }))).toEqual(at(values(n)));
    return answers;
  }

  it('trickle: every frame arrives split at every byte; nothing lost, nothing doubled, in order', async () => {
    await topic('trickle');
    const p = await proxy();
    p.trickle();
    await exactlyOnceThrough(p.address, 'trickle', 60, {});
    // Everything, handshakes included, went one byte per write.
    const { forwarded, writes } = p.stats;
    expect(forwarded).toBeGreaterThan(2_000);
    expect(writes).toBe(forwarded);
  });

  it('delay: every chunk is held 25 ms each way; nothing lost, nothing doubled, in order', async () => {
    await topic('delay');
    const p = await proxy();
    p.delay(25);
    const conn = await direct(p.address);
    const t0 = performance.now();
    await conn.request('Ping', {});
    expect(performance.now() - t0).toBeGreaterThanOrEqual(48);
    await exactlyOnceThrough(p.address, 'delay', 200, {});
  });

  it('a 1 s stall with the producer timing out and retrying into it: each message once, in order', async () => {
    await topic('stall');
    const p = await proxy();
    const behind = await direct(bp.address);
    const end = async (): Promise<number> =>
      (await behind.request('ListOffsets', { partitions: [{ topic: 'stall', partition: 0, at: 'latest' }] })).partitions[0]!.offset;
    // Requests time out during the stall and are sent again into it: after it the broker gets
    // the original and the retries back to back, and must write each batch once.
    const answers = await exactlyOnceThrough(p.address, 'stall', 100, { requestTimeoutMs: 300, retries: 50 }, async () => {
      p.stall();
      // What passed the proxy just before the stall may still be on its way to the broker.
      await new Promise((r) => setTimeout(r, 200));
      const before = await end();
      await new Promise((r) => setTimeout(r, 800));
      // Held, not lost and not delivered: the broker saw none of what was sent meanwhile.
      expect(before).toBeLessThan(100);
      expect(await end()).toBe(before);
      p.unstall();
    });
    // The retries reached the broker after their originals, and were answered as duplicates.
    expect(answers.some((a) => a.results.some((r) => r.duplicate === true))).toBe(true);
  });

  it('a request the broker processed but whose reply was cut is retried and written once', async () => {
    await topic('cut');
    const p = await proxy();
    const { client: c, answers } = await client(p.address);
    const producer = c.producer({ lingerMs: 0 });
    // The producer id and metadata first, so the next reply is a Produce reply.
    expect((await producer.send({ topic: 'cut', partition: 0, value: 'v0' })).offset).toBe(0);
    for (let round = 1; round <= 4; round++) {
      const dropped = p.dropped;
      const cutDone = p.cutOnNextReply();
      const sent = producer.send({ topic: 'cut', partition: 0, value: `v${round}` });
      await cutDone;
      expect(p.dropped).toBeGreaterThan(dropped);
      expect((await sent).offset).toBe(round);
      // The retry was recognised: the broker had written the first attempt.
      expect(answers.at(-1)?.results[0]).toMatchObject({ baseOffset: round, duplicate: true });
    }
    expect(p.accepted).toBe(5);
    expect(await readAll(await direct(bp.address), 'cut', 0)).toEqual(at(values(5, 'v')));
  });
});

// ---- disk faults between runs ----------------------------------------------------------------

describe('disk faults between runs', () => {
  /** Sends `groups` batches of 3 messages each (one linger window per group), one at a time. */
  async function produceGroups(address: string, topic: string, partitions: readonly number[], groups: number, value: (p: number, i: number) => string): Promise<void> {
    const { client: c } = await client(address);
    const producer = c.producer({ lingerMs: 20 });
    for (let g = 0; g < groups; g++) {
      const sends = partitions.flatMap((partition) => [0, 1, 2].map((k) => producer.send({ topic, partition, value: value(partition, g * 3 + k) })));
      await Promise.all(sends);
    }
    await producer.close();
  }

  it('a torn tail loses the torn batch only; the next produce takes its offsets', async () => {
    const bp = await startBroker();
    const { client: admin } = await client(bp.address);
    await admin.admin().createTopic('torn');
    await produceGroups(bp.address, 'torn', [0], 8, (_, i) => `m${i}`);
    await bp.kill();

    const active = activeSegment(bp.dataDir, 'torn', 0);
    const batches = batchesIn(active.log);
    expect(batches.map((b) => [b.baseOffset, b.lastOffset])).toEqual(Array.from({ length: 8 }, (_, g) => [g * 3, g * 3 + 2]));
    const torn = batches.at(-1)!;
    tearTail(active.log, 5);

    await bp.restart();
    const conn = await direct(bp.address);
    // Everything before the torn batch, intact and where it was; the torn batch is gone whole.
    expect(await readAll(conn, 'torn', 0)).toEqual(at(values(torn.baseOffset)));
    expect(statSync(active.log).size).toBe(torn.position);
    // New produces continue at the torn batch's offset: nothing before it was renumbered.
    const { client: c } = await client(bp.address);
    const producer = c.producer({ lingerMs: 0 });
    expect((await producer.send({ topic: 'torn', partition: 0, value: 'after' })).offset).toBe(torn.baseOffset);
    expect(await readAll(conn, 'torn', 0)).toEqual(at([...values(torn.baseOffset), 'after']));
  });

  it('garbage after the last batch is cut off at restart; every acknowledged message is still there', async () => {
    const bp = await startBroker();
    const { client: admin } = await client(bp.address);
    await admin.admin().createTopic('garbage');
    await produceGroups(bp.address, 'garbage', [0], 8, (_, i) => `m${i}`);
    await bp.kill();

    const active = activeSegment(bp.dataDir, 'garbage', 0);
    const size = statSync(active.log).size;
    appendGarbage(active.log, 100, 42);

    await bp.restart();
    expect(statSync(active.log).size).toBe(size);
    const conn = await direct(bp.address);
    expect(await readAll(conn, 'garbage', 0)).toEqual(at(values(24)));
    const { client: c } = await client(bp.address);
    const producer = c.producer({ lingerMs: 0 });
    expect((await producer.send({ topic: 'garbage', partition: 0, value: 'after' })).offset).toBe(24);
    expect(await readAll(conn, 'garbage', 0)).toEqual(at([...values(24), 'after']));
  });

  it('a bit flipped in a sealed segment fails reads of that range with CORRUPT_RECORD; the rest stays readable', async () => {
    const bp = await startBroker();
    const { client: admin } = await client(bp.address);
    // The smallest segments the broker allows, so a few KiB make several sealed ones.
    await admin.admin().createTopic('rot', { partitions: 2, segmentBytes: 1024 });
    const value = (p: number, i: number): string => `p${p}-${i}`;
    const expected = (p: number): Read[] => at(Array.from({ length: 60 }, (_, i) => value(p, i)));
    await produceGroups(bp.address, 'rot', [0, 1], 20, value);
    // Sealed segments are trusted at open once the recovery point covers them (after their
    // background sync); one it does not cover would be rescanned and cut, not served as damaged.
    await until(() => recoveryPoint(bp.dataDir, 'rot', 0) === activeSegment(bp.dataDir, 'rot', 0).baseOffset);
    await bp.kill();

    const sealed = sealedSegments(bp.dataDir, 'rot', 0);
    expect(sealed.length).toBeGreaterThanOrEqual(2);
    const victim = sealed[1]!;
    // Seed 1 strikes the third of the segment's four batches: good batches on either side.
    const { batch } = flipBitInRecords(victim.log, 1);
    const inVictim = batchesIn(victim.log);
    expect(inVictim.map((b) => b.baseOffset)).toEqual([12, 15, 18, 21]);
    expect(batch.baseOffset).toBe(18);

    await bp.restart();
    const conn = await direct(bp.address);
    // Any offset of the damaged batch: the typed error, naming the segment and byte position.
    for (const offset of [batch.baseOffset, batch.lastOffset]) {
      const { error } = await fetchAt(conn, 'rot', 0, offset);
      expect(error).toMatchObject({ name: 'CORRUPT_RECORD', details: { segment: victim.baseOffset, position: batch.position } });
    }
    // Walking the partition offset by offset: exactly the damaged batch fails, the batches after
    // it in the same segment included are served (their headers lead the way past the damage).
    const readable: Read[] = [];
    const failed: number[] = [];
    for (let offset = 0; offset < 60; ) {
      const { records, error } = await fetchAt(conn, 'rot', 0, offset);
      if (error !== undefined) {
        expect(error.name).toBe('CORRUPT_RECORD');
        failed.push(offset++);
        continue;
      }
      readable.push(...records);
      offset = records.at(-1)!.offset + 1;
    }
    expect(failed).toEqual([18, 19, 20]);
    expect(readable).toEqual(expected(0).filter((r) => r.offset < batch.baseOffset || r.offset > batch.lastOffset));
    // The other partition, alone and in the same Fetch as the damaged range.
    expect(await readAll(conn, 'rot', 1)).toEqual(expected(1));
    const both = await conn.request('Fetch', {
      maxWaitMs: 0,
      minBytes: 0,
      maxBytes: 1 << 20,
      partitions: [
        { topic: 'rot', partition: 0, offset: batch.baseOffset },
        { topic: 'rot', partition: 1, offset: 0 },
      ],
    });
    expect(both.partitions.map((p) => p.error?.name)).toEqual(['CORRUPT_RECORD', undefined]);
    expect(decodeBatches(both.partitions[1]!.records)[0]?.value?.toString()).toBe(value(1, 0));

    // Through the SDK: a poll consumer gets everything before the damage, then the typed error.
    const { client: c } = await client(bp.address);
    const consumer = c.pollConsumer({ topics: ['rot'], from: 'earliest', maxWaitMs: 50 });
    cleanups.push(() => consumer.close().catch(() => undefined));
    const before: Message[] = [];
    const err = await rejection(
      (async () => {
        for (const deadline = Date.now() + 5_000; Date.now() < deadline; ) before.push(...(await consumer.fetch()));
        throw new Error('the consumer never reached the damage');
      })(),
    );
    expect(hasCode(err, 'CORRUPT_RECORD')).toBe(true);
    expect(before.filter((m) => m.partition === 0).map((m) => ({ offset: m.offset, value: m.value }))).toEqual(
      expected(0).filter((r) => r.offset < batch.baseOffset),
    );

    // The broker stayed up and still appends to the damaged partition, after its last offset.
    const producer = c.producer({ lingerMs: 0 });
    expect((await producer.send({ topic: 'rot', partition: 0, value: 'after' })).offset).toBe(60);
    expect((await fetchAt(conn, 'rot', 0, 60)).records).toEqual([{ offset: 60, value: 'after' }]);
  });
});
