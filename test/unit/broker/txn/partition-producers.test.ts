import { describe, expect, it } from 'vitest';
import { hasCode } from '../../../../client/protocol/errors.js';
import { decodeBatches, encodeRecordBatch, readBatchHeader, verifyBatch } from '../../../../client/protocol/record-batch.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import type { FsyncMode } from '../../../../broker/log/options.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import { type IdempotentAppendResult, PartitionProducers } from '../../../../broker/txn/partition-producers.js';
import { PRODUCER_SNAPSHOT_FILE, readProducerSnapshot } from '../../../../broker/txn/producer-snapshot.js';
import { MemoryLogger } from '../../../helpers/logger.js';

const DIR = '/data/topics/t/0';

/** Batch `seq` of producer `pid`: `count` records, values naming them. */
function idem(pid: number, seq: number, count = 1, epoch = 0): Buffer {
  return encodeRecordBatch(
    Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`p${pid}-s${seq + i}`), timestamp: 1_000 })),
    { producerId: pid, producerEpoch: epoch, baseSequence: seq },
  );
}

interface Opened {
  log: PartitionLog;
  producers: PartitionProducers;
  logger: MemoryLogger;
  append(batch: Buffer): Promise<IdempotentAppendResult>;
}

async function open(io: CrashFS, options: { fsync?: FsyncMode; snapshotBytes?: number; maxBatchBytes?: number } = {}): Promise<Opened> {
  const logger = new MemoryLogger();
  const log = await PartitionLog.open({ dir: DIR, io, logger, fsync: options.fsync ?? 'always', ...(options.maxBatchBytes ? { maxBatchBytes: options.maxBatchBytes } : {}) });
  const producers = await PartitionProducers.open(log, { io, logger, snapshotBytes: options.snapshotBytes ?? 1 << 30, now: () => 5_000 });
  // The caller's buffer gets its base offset rewritten: append a copy so retries resend the original.
  return { log, producers, logger, append: (b) => producers.append(Buffer.from(b), verifyBatch(b)) };
}

async function close(o: Opened): Promise<void> {
  await o.log.close();
  await o.producers.close();
}

async function values(log: PartitionLog): Promise<string[]> {
  return decodeBatches(await log.read(log.startOffset, 1 << 24)).map((r) => r.value!.toString());
}

const rebuilt = (logger: MemoryLogger) => logger.records.find((r) => r.message === 'producer state rebuilt')?.fields as { from: number; batches: number } | undefined;

describe('PartitionProducers: the append path', () => {
  it('answers a retry, in flight or acknowledged, with the original offsets and writes it once', async () => {
    const o = await open(new CrashFS());
    const first = o.append(idem(1, 0, 3));
    const retryInFlight = o.append(idem(1, 0, 3));
    expect(o.log.endOffset).toBe(3);
    expect(await first).toEqual({ baseOffset: 0, lastOffset: 2 });
    expect(await retryInFlight).toEqual({ baseOffset: 0, lastOffset: 2, duplicate: true });
    expect(await o.append(idem(1, 3, 2))).toEqual({ baseOffset: 3, lastOffset: 4 });
    expect(await o.append(idem(1, 0, 3))).toEqual({ baseOffset: 0, lastOffset: 2, duplicate: true });
    await expect(o.append(idem(1, 9))).rejects.toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE', details: { expected: 5, got: 9 } });
    expect(await values(o.log)).toEqual(['p1-s0', 'p1-s1', 'p1-s2', 'p1-s3', 'p1-s4']);
    await close(o);
  });

  it('leaves the state untouched when the log refuses a batch', async () => {
    const o = await open(new CrashFS(), { maxBatchBytes: 200 });
    const big = encodeRecordBatch([{ value: Buffer.alloc(300) }], { producerId: 1, producerEpoch: 0, baseSequence: 0 });
    await expect(o.append(big)).rejects.toMatchObject({ code: 'RECORD_TOO_LARGE' });
    expect(o.producers.table.producer(1)).toBeUndefined();
    expect(await o.append(idem(1, 0))).toEqual({ baseOffset: 0, lastOffset: 0 });
    await close(o);
  });
});

describe('PartitionProducers: rebuild after a restart', () => {
  it('rebuilds from the log alone when there is no snapshot', async () => {
    let io = new CrashFS();
    const o = await open(io);
    for (let s = 0; s < 10; s += 2) await o.append(idem(7, s, 2));
    await o.append(idem(8, 0, 1));
    io = io.crash();
    const again = await open(io);
    expect(rebuilt(again.logger)).toMatchObject({ from: 0, batches: 6 });
    expect(await again.append(idem(7, 8, 2))).toEqual({ baseOffset: 8, lastOffset: 9, duplicate: true });
    expect(await again.append(idem(8, 0, 1))).toEqual({ baseOffset: 10, lastOffset: 10, duplicate: true });
    expect(await again.append(idem(7, 10, 1))).toEqual({ baseOffset: 11, lastOffset: 11 });
    await close(again);
  });

  it('writes a snapshot at close and, after a crash, scans only the log written after it', async () => {
    let io = new CrashFS();
    const o = await open(io);
    for (let s = 0; s < 20; s++) await o.append(idem(1, s));
    await close(o);
    const snap = await readProducerSnapshot(io, DIR);
    expect(snap).toMatchObject({ status: 'ok', snapshot: { coveredOffset: 20 } });

    const second = await open(io);
    expect(rebuilt(second.logger)).toBeUndefined(); // nothing after the snapshot: no scan work
    await second.append(idem(1, 20));
    await second.append(idem(2, 0, 3));
    io = io.crash(); // no close: the snapshot still says 20

    const third = await open(io);
    expect(rebuilt(third.logger)).toMatchObject({ from: 20, batches: 2 });
    expect(await third.append(idem(1, 19))).toEqual({ baseOffset: 19, lastOffset: 19, duplicate: true });
    expect(await third.append(idem(1, 20))).toEqual({ baseOffset: 20, lastOffset: 20, duplicate: true });
    expect(await third.append(idem(2, 0, 3))).toEqual({ baseOffset: 21, lastOffset: 23, duplicate: true });
    await expect(third.append(idem(1, 10))).rejects.toMatchObject({ code: 'DUPLICATE_SEQUENCE' });
    await close(third);
  });

  it('snapshots after snapshotBytes appended, covering only what is readable', async () => {
    const io = new CrashFS();
    const o = await open(io, { snapshotBytes: 500 });
    const pending = Array.from({ length: 12 }, (_, s) => o.append(idem(3, s)));
    await Promise.all(pending);
    await o.producers.snapshot();
    const snap = await readProducerSnapshot(io, DIR);
    expect(snap.status).toBe('ok');
    if (snap.status === 'ok') {
      expect(snap.snapshot.coveredOffset).toBeGreaterThan(0);
      expect(snap.snapshot.coveredOffset).toBeLessThanOrEqual(12);
      expect(snap.snapshot.producers[0]!.batches.every(([, , , last]) => last < snap.snapshot.coveredOffset)).toBe(true);
    }
    await close(o);
  });

  it('ignores a snapshot ahead of the log (fsync=never lost the tail) and one that does not parse', async () => {
    const io = await snapshotAheadOfLog();
    const again = await open(io, { fsync: 'never' });
    expect(again.log.endOffset).toBe(0);
    expect(again.logger.records.some((r) => /ahead of the log/.test(r.message ?? ''))).toBe(true);
    // The lost batch was never written: its retry is a new append, not a duplicate.
    expect(await again.append(idem(1, 0))).toEqual({ baseOffset: 0, lastOffset: 0 });
    await close(again);

    io.writeFileSync(`${DIR}/${PRODUCER_SNAPSHOT_FILE}`, Buffer.from('{"version":1,"coveredOffset":'));
    const third = await open(io, { fsync: 'never' });
    expect(third.logger.records.some((r) => /snapshot ignored/.test(r.message ?? ''))).toBe(true);
    expect(await third.append(idem(1, 0))).toMatchObject({ baseOffset: 0, duplicate: true });
    await close(third);
  });
});

/** A file system after a crash that kept a snapshot covering 2 batches of producer 1 but none of the log. */
async function snapshotAheadOfLog(): Promise<CrashFS> {
  const io = new CrashFS();
  const o = await open(io, { fsync: 'never' });
  await o.append(idem(1, 0));
  await o.append(idem(1, 1));
  await o.producers.snapshot(); // covers 2; the log itself is not synced
  return io.crash();
}

describe('regressions', () => {
  // Found by the power-cut scenario (test/scenarios/power-cuts.test.ts, fsync=interval): a
  // snapshot ahead of the log was ignored but left in place; after new appends passed its
  // offset, the next open loaded it and answered retries of lost batches as duplicates, with
  // offsets that now held other messages: acknowledged messages that were never in the log.
  it('a snapshot ahead of the log is removed, so it cannot be loaded once the log grows past it', async () => {
    const io = await snapshotAheadOfLog();
    const again = await open(io, { fsync: 'never' });
    expect(again.log.endOffset).toBe(0);
    expect((await readProducerSnapshot(io, DIR)).status).toBe('missing');
    // Other producers fill the lost offsets and more; producer 1 is not in the log at all.
    for (let s = 0; s < 3; s++) await again.append(idem(2, s));
    await again.log.close();
    const third = await open(io, { fsync: 'never' });
    // Producer 1's batch 1 was lost with the tail: its retry must be written, not answered from the stale snapshot.
    expect(await third.append(idem(1, 1))).toEqual({ baseOffset: 3, lastOffset: 3 });
    await close(third);
  });
});

describe('PartitionProducers: power cut in the middle of idempotent produce (CrashFS)', () => {
  it('after the crash, retried batches are duplicates with their offsets, and the log holds each sequence once', async () => {
    const WINDOW = 5; // a producer's batches in flight per partition, as Kafka's max.in.flight
    for (const cutAfter of [0, 1, 4, 9, 13]) {
      let io = new CrashFS();
      const o = await open(io);
      const batches = Array.from({ length: 16 }, (_, s) => idem(4, s * 2, 2));
      const acked = new Map<number, IdempotentAppendResult>();
      let sent = 0;
      let inFlight = 0;
      const settled: Promise<void>[] = [];
      const pump = (): void => {
        while (sent < batches.length && inFlight < WINDOW && acked.size < cutAfter + WINDOW) {
          const i = sent++;
          inFlight++;
          settled.push(
            o.append(batches[i]!).then(
              (r) => {
                acked.set(i, r);
                inFlight--;
                pump();
              },
              () => void inFlight--,
            ),
          );
        }
      };
      pump();
      while (acked.size < cutAfter) await new Promise((r) => setImmediate(r));
      io = io.crash();
      await Promise.all(settled);
      const sentBeforeCrash = sent;

      const again = await open(io);
      const survived = again.log.endOffset;
      for (const [i, r] of acked) expect(r.lastOffset, `acknowledged batch ${i} lost`).toBeLessThan(survived);
      // The producer resends its last WINDOW batches (acknowledged or not), then carries on.
      for (let i = Math.max(0, sentBeforeCrash - WINDOW); i < batches.length; i++) {
        const r = await again.append(batches[i]!);
        const before = acked.get(i);
        if (before !== undefined) expect(r).toEqual({ ...before, duplicate: true });
        else if (r.duplicate) expect(r.lastOffset).toBeLessThan(survived);
        else expect(r.baseOffset).toBeGreaterThanOrEqual(survived);
      }
      expect(await values(again.log)).toEqual(Array.from({ length: 32 }, (_, s) => `p4-s${s}`));
      await close(again);
    }
  });
});

describe('PartitionProducers: errors keep their codes', () => {
  it('a fenced epoch is PRODUCER_FENCED, a new epoch starts at 0', async () => {
    const o = await open(new CrashFS());
    await o.append(idem(1, 0, 1, 2));
    const err = await o.append(idem(1, 1, 1, 1)).catch((e: unknown) => e);
    expect(hasCode(err, 'PRODUCER_FENCED')).toBe(true);
    await expect(o.append(idem(1, 5, 1, 3))).rejects.toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE' });
    expect(await o.append(idem(1, 0, 1, 3))).toEqual({ baseOffset: 1, lastOffset: 1 });
    expect(readBatchHeader(await o.log.read(1, 1)).producerEpoch).toBe(3);
    await close(o);
  });
});
