import { afterEach, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import type { SluiceError } from '../../client/protocol/errors.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_OVERHEAD, decodeBatches, encodeRecordBatch, readBatchHeader } from '../../client/protocol/record-batch.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { tempDir } from '../helpers/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TOPIC = 'out';
const PARTITIONS = 2;

type Outcome = 'committed' | 'aborted' | 'in-doubt';

interface Txn {
  readonly n: number;
  readonly intent: 'commit' | 'abort';
  readonly identity: { transactionalId: string; producerId: number; producerEpoch: number };
  /** Every batch of it was acknowledged: only then may the producer commit it. */
  produced: boolean;
  outcome: Outcome;
}

async function connect(bp: BrokerProcess): Promise<Connection> {
  const conn = await Connection.connect({ broker: bp.address, reconnect: false });
  cleanups.push(() => conn.destroy());
  return conn;
}

const valuesOf = (n: number, partition: number): string[] => [`t${n}-p${partition}-a`, `t${n}-p${partition}-b`];

/**
 * Runs transactions one after another until the connection fails: each writes two records to
 * every partition (two batches, so the sequences matter) and commits, except every third one,
 * which aborts. Returns them with what the producer learnt of each.
 */
async function stream(conn: Connection, first: number, txns: Txn[]): Promise<void> {
  let { producerId, producerEpoch } = await conn.request('InitProducer', { transactionalId: 'copier', transactionTimeoutMs: 60_000 });
  for (let n = first; ; n++) {
    const intent = n % 3 === 2 ? 'abort' : 'commit';
    const txn: Txn = { n, intent, identity: { transactionalId: 'copier', producerId, producerEpoch }, produced: false, outcome: 'in-doubt' };
    txns.push(txn);
    try {
      const batches = [];
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const [a, b] = valuesOf(n, partition);
        for (const [seq, v] of [[0, a], [1, b]] as const) {
          batches.push({ topic: TOPIC, partition, batch: encodeRecordBatch([{ value: Buffer.from(v!) }], { producerId, producerEpoch, baseSequence: seq, attributes: ATTR_TRANSACTIONAL }) });
        }
      }
      const produced = await conn.request('Produce', { batches });
      const failed = produced.results.find((r) => r.error !== undefined);
      if (failed !== undefined) throw new Error(`produce failed: ${failed.error!.name}`);
      txn.produced = true;
      const next = await conn.request('EndTxn', { ...txn.identity, commit: intent === 'commit' });
      txn.outcome = intent === 'commit' ? 'committed' : 'aborted';
      ({ producerId, producerEpoch } = next);
    } catch {
      return;
    }
  }
}

/**
 * After a restart, what a producer does with the transaction it was in the middle of: retries
 * its EndTxn (learning the outcome, or ending it now), or, if its output was not all
 * acknowledged, aborts it.
 */
async function resolve(conn: Connection, txn: Txn): Promise<void> {
  const commit = txn.intent === 'commit' && txn.produced;
  try {
    await conn.request('EndTxn', { ...txn.identity, commit });
    txn.outcome = commit ? 'committed' : 'aborted';
  } catch (err) {
    const code = (err as SluiceError).code;
    // TRANSACTION_ABORTED: the restart aborted it; PRODUCER_FENCED cannot happen before anyone
    // else used the transactional id, and would fail the test below.
    if (code !== 'TRANSACTION_ABORTED') throw err;
    txn.outcome = 'aborted';
  }
}

async function readAll(conn: Connection, partition: number, isolation: 'read_committed' | 'read_uncommitted'): Promise<{ values: string[]; controls: number }> {
  const values: string[] = [];
  let controls = 0;
  for (let offset = 0; ; ) {
    const res = await conn.request('Fetch', { maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 16, ...(isolation === 'read_committed' ? { isolation } : {}), partitions: [{ topic: TOPIC, partition, offset }] });
    const p = res.partitions[0]!;
    if (p.error !== undefined) throw new Error(p.error.message);
    for (let pos = 0; pos < p.records.length; ) {
      const h = readBatchHeader(p.records, pos);
      if ((h.attributes & ATTR_CONTROL) !== 0) controls++;
      pos += h.batchLength + BATCH_OVERHEAD;
    }
    for (const r of decodeBatches(p.records)) if (r.offset >= offset) values.push(r.value!.toString());
    if (p.nextOffset === offset) return { values, controls };
    offset = p.nextOffset;
  }
}

describe('transactions across kill -9', () => {
  it('every committed transaction ends fully visible to read_committed, every other one invisible', async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const bp = await BrokerProcess.start({ dataDir: dir.path });
    cleanups.push(async () => {
      await bp.stop().catch(() => undefined);
    });
    let conn = await connect(bp);
    await conn.request('CreateTopic', { topic: TOPIC, partitions: PARTITIONS });

    const txns: Txn[] = [];
    // A concurrent read_committed reader: whatever it sees must end up committed.
    const seen = new Set<string>();
    for (let kill = 0; kill < 3; kill++) {
      const reader = await connect(bp);
      let reading = true;
      const offsets = Array.from({ length: PARTITIONS }, () => 0);
      const readLoop = (async () => {
        while (reading) {
          try {
            const res = await reader.request('Fetch', {
              maxWaitMs: 50,
              minBytes: 1,
              maxBytes: 1 << 16,
              isolation: 'read_committed',
              partitions: offsets.map((offset, partition) => ({ topic: TOPIC, partition, offset })),
            });
            res.partitions.forEach((p, partition) => {
              for (const r of decodeBatches(p.records)) if (r.offset >= (offsets[partition] ?? 0)) seen.add(r.value!.toString());
              offsets[partition] = p.nextOffset;
            });
          } catch {
            return;
          }
        }
      })();
      const running = stream(conn, txns.length, txns);
      // Kill somewhere in the middle of a transaction's requests, not between two.
      await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 300)));
      await bp.kill();
      await running;
      reading = false;
      await readLoop;
      expect(txns.filter((t) => t.outcome !== 'in-doubt').length).toBeGreaterThan(kill * 3);

      await bp.restart();
      conn = await connect(bp);
      for (const t of txns) if (t.outcome === 'in-doubt') await resolve(conn, t);
    }

    const committed = txns.filter((t) => t.outcome === 'committed');
    const aborted = txns.filter((t) => t.outcome === 'aborted');
    expect(committed.length).toBeGreaterThan(5);
    expect(aborted.length).toBeGreaterThan(2);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const { values, controls } = await readAll(conn, partition, 'read_committed');
      expect(values).toEqual(committed.flatMap((t) => valuesOf(t.n, partition)));
      expect(controls).toBe(0);
      const uncommitted = await readAll(conn, partition, 'read_uncommitted');
      expect(uncommitted.controls).toBe(0);
    }
    const allowed = new Set(committed.flatMap((t) => Array.from({ length: PARTITIONS }, (_, p) => valuesOf(t.n, p)).flat()));
    expect([...seen].filter((v) => !allowed.has(v))).toEqual([]);
  });
});
