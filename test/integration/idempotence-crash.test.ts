import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { decodeBatches, encodeRecordBatch } from '../../client/protocol/record-batch.js';
import type { ProduceResult } from '../../client/protocol/messages/produce.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { tempDir } from '../helpers/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TOPIC = 'crash';
/** Batches in flight at once, as Kafka's max.in.flight.requests.per.connection. */
const WINDOW = 5;

function idem(producerId: number, baseSequence: number, count: number): Buffer {
  return encodeRecordBatch(
    Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`s${baseSequence + i}`) })),
    { producerId, producerEpoch: 0, baseSequence },
  );
}

async function connect(bp: BrokerProcess): Promise<Connection> {
  const conn = await Connection.connect({ broker: bp.address, reconnect: false });
  cleanups.push(() => conn.destroy());
  return conn;
}

async function produce(conn: Connection, batch: Buffer): Promise<ProduceResult> {
  const res = await conn.request('Produce', { batches: [{ topic: TOPIC, partition: 0, batch }] });
  return res.results[0]!;
}

async function endOffset(conn: Connection): Promise<number> {
  const res = await conn.request('ListOffsets', { partitions: [{ topic: TOPIC, partition: 0, at: 'latest' }] });
  return res.partitions[0]!.offset;
}

async function values(conn: Connection): Promise<string[]> {
  const out: string[] = [];
  for (let offset = 0; ; ) {
    const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20, partitions: [{ topic: TOPIC, partition: 0, offset }] });
    const records = decodeBatches(res.partitions[0]?.records ?? Buffer.alloc(0));
    if (records.length === 0) return out;
    for (const r of records) out.push(r.value!.toString());
    offset = records[records.length - 1]!.offset + 1;
  }
}

/**
 * One idempotent producer: batches of 3 records with consecutive sequences, at most WINDOW in
 * flight, like a Kafka producer. `run` pipelines until every batch is acknowledged or the
 * connection fails; `resume` resends the last WINDOW batches sent (acknowledged or not: the
 * producer cannot know what the broker wrote) and checks the answers.
 */
class Producer {
  readonly acked = new Map<number, ProduceResult>();
  sent = 0;
  readonly batches: Buffer[];
  duplicates = { acked: 0, unacked: 0 };

  constructor(
    readonly producerId: number,
    total: number,
  ) {
    this.batches = Array.from({ length: total }, (_, i) => idem(producerId, i * 3, 3));
  }

  /**
   * `onAck` runs after each acknowledgement with their count; returning true stops sending (a
   * test kills the broker there, with the rest of the window still in flight).
   */
  run(conn: Connection, onAck: (acked: number) => boolean = () => false): Promise<void> {
    let inFlight = 0;
    return new Promise<void>((resolve, reject) => {
      let stopped = false;
      const pump = (): void => {
        if (this.acked.size === this.batches.length || (stopped && inFlight === 0)) return resolve();
        while (!stopped && inFlight < WINDOW && this.sent < this.batches.length) {
          const i = this.sent++;
          inFlight++;
          produce(conn, this.batches[i]!).then(
            (r) => {
              inFlight--;
              if (r.error !== undefined || r.duplicate !== undefined) return reject(new Error(`batch ${i}: ${JSON.stringify(r)}`));
              this.acked.set(i, r);
              if (onAck(this.acked.size)) stopped = true;
              pump();
            },
            () => {
              // The broker went away: what was in flight is unknown to us.
              stopped = true;
              resolve();
            },
          );
        }
      };
      pump();
    });
  }

  async resume(conn: Connection): Promise<void> {
    for (let i = Math.max(0, this.sent - WINDOW); i < this.sent; i++) {
      const r = await produce(conn, this.batches[i]!);
      expect(r.error).toBeUndefined();
      const before = this.acked.get(i);
      if (before !== undefined) {
        expect(r).toEqual({ ...before, duplicate: true });
        this.duplicates.acked++;
      } else {
        if (r.duplicate) this.duplicates.unacked++;
        this.acked.set(i, { topic: r.topic, partition: r.partition, baseOffset: r.baseOffset, lastOffset: r.lastOffset });
      }
    }
  }
}

describe('idempotent produce across broker crashes (kill -9)', () => {
  it('retries after a crash are duplicates with the original offsets; the log holds every record once', async () => {
    const dir = tempDir();
    const bp = await BrokerProcess.start({ dataDir: dir.path });
    cleanups.push(dir.remove, () => bp.stop('SIGKILL').then(() => undefined, () => undefined));
    let conn = await connect(bp);
    await conn.request('CreateTopic', { topic: TOPIC });
    const { producerId } = await conn.request('InitProducer', {});
    const producer = new Producer(producerId, 60);
    /** Signals the broker from inside the n-th acknowledgement, with the rest of the window in flight. */
    const signalAt =
      (n: number, signal: NodeJS.Signals) =>
      (acked: number): boolean => {
        if (acked !== n) return false;
        void bp.stop(signal);
        return true;
      };

    // 1. Crash with no snapshot yet: the restart rebuilds from the whole log. SIGKILL goes out
    //    from inside an acknowledgement, with more batches in flight.
    await producer.run(conn, signalAt(12, 'SIGKILL'));
    await bp.stop('SIGKILL');
    await bp.restart();
    conn = await connect(bp);
    await producer.resume(conn);

    // 2. A clean stop writes the snapshot; a crash after it rescans only the tail.
    await producer.run(conn, signalAt(30, 'SIGTERM'));
    await bp.stop('SIGTERM');
    expect(existsSync(join(dir.path, 'topics', TOPIC, '0', 'producer-state.snapshot'))).toBe(true);
    await bp.restart();
    conn = await connect(bp);
    await producer.resume(conn);
    await producer.run(conn, signalAt(45, 'SIGKILL'));
    await bp.stop('SIGKILL');
    await bp.restart();
    conn = await connect(bp);
    await producer.resume(conn);

    // 3. Written but never acknowledged: the reply dies with the connection, then the broker.
    const i = producer.sent++;
    const peer = await RawPeer.tcp(bp.port);
    peer.hello();
    peer.send(Opcode.Produce, { batches: [{ topic: TOPIC, partition: 0, batch: producer.batches[i]! }] }, 2);
    peer.destroy();
    const written = (i + 1) * 3;
    for (let t = 0; (await endOffset(conn)) < written && t < 500; t++) await new Promise((r) => setTimeout(r, 10));
    await bp.kill();
    await bp.restart();
    conn = await connect(bp);
    await producer.resume(conn);
    expect(producer.duplicates.unacked).toBe(1);
    await producer.run(conn);

    expect(producer.acked.size).toBe(60);
    const got = await values(conn);
    expect(got).toEqual(Array.from({ length: 180 }, (_, s) => `s${s}`));
    // Every acknowledged offset is where that batch is.
    for (const [i, r] of producer.acked) expect(got[r.baseOffset]).toBe(`s${i * 3}`);
    // Each restart answered at least the acknowledged batch among the resent ones as a duplicate.
    expect(producer.duplicates.acked).toBeGreaterThanOrEqual(3);
    // The id survived too: a new producer gets a new id.
    expect((await conn.request('InitProducer', {})).producerId).toBe(producerId + 1);
  });
});
