/**
 * broker/log/batch-headers.ts (the header scan producer state is rebuilt with). Lives under txn/
 * because its only user is there.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeRecordBatch, readBatchHeader } from '../../../../client/protocol/record-batch.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { type ScannedBatch, controlRecordKey, scanBatchHeaders } from '../../../../broker/log/batch-headers.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import { ControlType, encodeControlBatch, parseControlKey } from '../../../../broker/txn/control-record.js';

const quiet = { info: () => {}, warn: () => {} };

const idempotent = (producerId: number, baseSequence: number, count: number, valueBytes = 20): Buffer =>
  encodeRecordBatch(
    Array.from({ length: count }, (_, i) => ({ value: Buffer.alloc(valueBytes, 97 + (i % 26)), timestamp: 1_000 + i })),
    { producerId, producerEpoch: 0, baseSequence },
  );

interface Seen {
  baseOffset: number;
  lastOffset: number;
  producerId: number;
  baseSequence: number;
  control: ControlType | undefined;
}

async function scan(log: PartitionLog, from: number, options = {}): Promise<{ seen: Seen[]; endOffset: number }> {
  const seen: Seen[] = [];
  const visit = ({ header, lastOffset, controlKey }: ScannedBatch): void => {
    seen.push({ baseOffset: header.baseOffset, lastOffset, producerId: header.producerId, baseSequence: header.baseSequence, control: controlKey === null ? undefined : parseControlKey(controlKey) });
  };
  const { endOffset } = await scanBatchHeaders(log, from, visit, options);
  return { seen, endOffset };
}

describe('scanBatchHeaders', () => {
  it('visits every batch header in order, in small chunks, with control markers typed', async () => {
    const io = new CrashFS();
    const log = await PartitionLog.open({ dir: '/d/t/0', io, logger: quiet, segmentBytes: 2_000 });
    for (let i = 0; i < 30; i++) await log.append(idempotent(i % 3, i, 2));
    await log.append(encodeControlBatch({ producerId: 1, producerEpoch: 0, type: ControlType.ABORT }));
    await log.append(encodeControlBatch({ producerId: 2, producerEpoch: 0, type: ControlType.COMMIT }));
    expect(log.segmentCount).toBeGreaterThan(2);
    const { seen, endOffset } = await scan(log, 0, { chunkBytes: 300 });
    expect(endOffset).toBe(62);
    expect(seen.map((s) => s.baseOffset)).toEqual([...Array.from({ length: 30 }, (_, i) => i * 2), 60, 61]);
    expect(seen.slice(0, 3).map((s) => [s.producerId, s.baseSequence])).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
    expect(seen.slice(-2).map((s) => s.control)).toEqual([ControlType.ABORT, ControlType.COMMIT]);
    expect(seen.slice(0, -2).every((s) => s.control === undefined)).toBe(true);
    // From the middle: batches starting before `from` are the caller's already.
    expect((await scan(log, 40, { chunkBytes: 1 })).seen.map((s) => s.baseOffset)[0]).toBe(40);
    expect((await scan(log, 41)).seen.map((s) => s.baseOffset)[0]).toBe(42);
    expect((await scan(log, 62)).seen).toEqual([]);
    await log.close();
  });

  it('stops at the high watermark it started with', async () => {
    const log = await PartitionLog.open({ dir: '/d/t/0', io: new CrashFS(), logger: quiet });
    for (let i = 0; i < 5; i++) await log.append(idempotent(0, i, 1));
    const { seen } = await scan(log, 0, { toOffset: 3 });
    expect(seen.map((s) => s.baseOffset)).toEqual([0, 1, 2]);
    await log.close();
  });

  it('skips a damaged range in a sealed segment, reports it, and carries on after it', async () => {
    const io = new CrashFS();
    const dir = '/d/t/0';
    const options = { dir, io, logger: quiet, segmentBytes: 3_000, indexIntervalBytes: 300 };
    const log = await PartitionLog.open(options);
    for (let i = 0; i < 60; i++) await log.append(idempotent(0, i * 2, 2, 30));
    await log.close();
    // Flip a bit in the record bytes of the 11th batch (first segment).
    const first = (await io.readdir(dir)).filter((f) => f.endsWith('.log')).sort()[0]!;
    const file = path.join(dir, first);
    const buf = io.readFileSync(file);
    let pos = 0;
    for (let i = 0; i < 10; i++) pos += readBatchHeader(buf, pos).batchLength + 12;
    const victim = readBatchHeader(buf, pos);
    expect(victim.baseOffset).toBe(20);
    buf[pos + victim.batchLength + 12 - 3]! ^= 0x10;
    io.writeFileSync(file, buf);

    const reopened = await PartitionLog.open(options);
    const skipped: [number, number][] = [];
    const { seen, endOffset } = await scan(reopened, 0, { chunkBytes: 500, onCorrupt: (from: number, to: number) => skipped.push([from, to]) });
    expect(endOffset).toBe(120);
    expect(skipped).toHaveLength(1);
    const [from, resume] = skipped[0]!;
    expect(from).toBe(20);
    expect(resume).toBeGreaterThan(20);
    const offsets = seen.map((s) => s.baseOffset);
    // Everything before the damage, nothing inside it, everything from the resume point on.
    expect(offsets.filter((o) => o < 20)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(offsets.filter((o) => o >= 20 && o < resume - 1)).toEqual([]);
    expect(offsets[offsets.length - 1]).toBe(118);
    expect(resume).toBeLessThan(60);
    // The resume point is the first readable offset: the one before it is still behind the damage.
    await expect(reopened.read(resume - 1, 1)).rejects.toMatchObject({ code: 'CORRUPT_RECORD' });
    // Here the index has an entry right after the damaged batch: only that batch is lost.
    expect(skipped).toEqual([[20, 22]]);
    expect(offsets).toEqual(Array.from({ length: 60 }, (_, i) => i * 2).filter((o) => o !== 20));
    await reopened.close();
  });

  it('controlRecordKey reads the first key without decoding the batch, and tolerates garbage', () => {
    const marker = encodeControlBatch({ producerId: 3, producerEpoch: 1, type: ControlType.COMMIT });
    expect(parseControlKey(controlRecordKey(marker))).toBe(ControlType.COMMIT);
    const keyless = encodeRecordBatch([{ value: Buffer.from('x') }]);
    expect(controlRecordKey(keyless)).toBeNull();
    expect(parseControlKey(null)).toBeUndefined();
    expect(parseControlKey(Buffer.from([0, 1, 0, 0]))).toBeUndefined(); // version 1
    expect(parseControlKey(Buffer.from([0, 0, 0, 7]))).toBeUndefined(); // unknown type
    const truncated = Buffer.from(marker.subarray(0, 63));
    truncated.writeInt32BE(63 - 12, 8);
    expect(controlRecordKey(truncated)).toBeNull();
  });
});
