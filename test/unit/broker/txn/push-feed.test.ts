import { describe, expect, it } from 'vitest';
import { ATTR_TRANSACTIONAL, encodeRecordBatch, readBatchHeader, verifyBatch } from '../../../../client/protocol/record-batch.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { PartitionLog } from '../../../../broker/log/partition-log.js';
import { PartitionFeed } from '../../../../broker/push/partition-feed.js';
import { PartitionDeliveryState } from '../../../../broker/push/partition-state.js';
import { ControlType, encodeControlBatch } from '../../../../broker/txn/control-record.js';
import { PartitionProducers } from '../../../../broker/txn/partition-producers.js';
import { MemoryLogger } from '../../../helpers/logger.js';

/**
 * The push feed reads committed data only (broker/push/partition-feed.ts): below the last
 * stable offset, without markers or aborted transactions, and never gets stuck on them.
 */
async function partition(): Promise<{ log: PartitionLog; append(batch: Buffer): Promise<unknown> }> {
  const io = new CrashFS();
  const logger = new MemoryLogger();
  const log = await PartitionLog.open({ dir: '/data/topics/t/0', io, logger, fsync: 'always' });
  const producers = await PartitionProducers.open(log, { io, logger, snapshotBytes: 1 << 30, now: () => 0 });
  return { log, append: (batch) => producers.append(batch, verifyBatch(batch)) };
}

const txn = (pid: number, seq: number, value: string): Buffer =>
  encodeRecordBatch([{ value: Buffer.from(value) }], { producerId: pid, producerEpoch: 0, baseSequence: seq, attributes: ATTR_TRANSACTIONAL });
const marker = (pid: number, type: ControlType): Buffer => encodeControlBatch({ producerId: pid, producerEpoch: 0, type });
const plain = (value: string): Buffer => encodeRecordBatch([{ value: Buffer.from(value) }]);

function state(): PartitionDeliveryState {
  return new PartitionDeliveryState({ ackWaitMs: 1_000, maxDeliveries: 5, backoffMs: [], ordering: 'partition' });
}

/** Fills until the feed has nothing new; returns the offsets delivered, in order. */
async function drain(feed: PartitionFeed, s: PartitionDeliveryState): Promise<number[]> {
  for (let rounds = 0; rounds < 1_000 && (await feed.fill(s)); rounds++);
  return s.take(1_000, 'c', 0).map((d) => d.offset);
}

describe('PartitionFeed with transactions', () => {
  it('offers committed and plain data only, holds back what follows an open transaction, and moves past markers', async () => {
    const p = await partition();
    await p.append(txn(1, 0, 'committed')); // 0
    await p.append(txn(2, 0, 'aborted')); // 1
    await p.append(marker(1, ControlType.COMMIT)); // 2
    await p.append(marker(2, ControlType.ABORT)); // 3
    await p.append(txn(3, 0, 'open')); // 4
    await p.append(plain('behind')); // 5
    const feed = new PartitionFeed(p.log, false);
    const s = state();
    expect(await drain(feed, s)).toEqual([0]);
    // Everything before the open transaction is settled or a gap: the floor is at its first offset.
    s.ack(0, 1);
    expect(s.ackFloor).toBe(4);
    expect(feed.hasUnread(s)).toBe(false);
    await p.append(marker(3, ControlType.COMMIT)); // 6
    expect(feed.hasUnread(s)).toBe(true);
    expect(await drain(feed, s)).toEqual([4, 5]);
    s.ack(4, 1);
    s.ack(5, 1);
    // The marker at the tail is passed over, so nothing looks pending behind it.
    expect(s.ackFloor).toBe(7);
    expect(feed.hasUnread(s)).toBe(false);
  });

  it('gets past an aborted run longer than one read', async () => {
    const p = await partition();
    const big = 'x'.repeat(60_000);
    for (let i = 0; i < 10; i++) await p.append(txn(7, i, big)); // 0-9: 600 kB, more than a read
    await p.append(marker(7, ControlType.ABORT)); // 10
    await p.append(plain('after')); // 11
    const feed = new PartitionFeed(p.log, true);
    const s = state();
    expect(await drain(feed, s)).toEqual([11]);
    const batch = await feed.batchesFor([11]);
    expect(readBatchHeader(batch).baseOffset).toBe(11);
  });
});
