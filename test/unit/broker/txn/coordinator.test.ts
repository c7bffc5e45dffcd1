import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';
import { tempDir } from '../../../helpers/temp-dir.js';
import { Core, failure, txBatch } from './txn-harness.js';

const cores: Core[] = [];
afterEach(async () => {
  for (const c of cores.splice(0)) await c.close();
});

async function open(...args: Parameters<typeof Core.open>): Promise<Core> {
  const core = await Core.open(...args);
  cores.push(core);
  return core;
}

async function init(core: Core, transactionalId = 'tx', transactionTimeoutMs = 10_000): Promise<{ producerId: number; producerEpoch: number }> {
  return core.coordinator.initProducer({ transactionalId, transactionTimeoutMs });
}

const values = (entries: Awaited<ReturnType<Core['entries']>>): string[] => entries.map((e) => (e.kind === 'data' ? e.values.join(',') : e.kind));

describe('TransactionCoordinator: commit and abort', () => {
  it('commits a transaction over two partitions and group offsets at once: markers in both, offsets written, epoch bumped', async () => {
    const core = await open();
    await core.createTopic('out', 2);
    await core.createTopic('in');
    const { producerId } = await init(core);
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['a']));
    await core.produce('out', 1, txBatch(producerId, 0, 0, ['b']));
    await core.produce('out', 0, txBatch(producerId, 0, 1, ['c']));
    core.coordinator.stageOffsets({ transactionalId: 'tx', producerId, producerEpoch: 0, groupId: 'g', memberEpoch: -1, offsets: [{ topic: 'in', partition: 0, offset: 7 }] });
    expect(core.coordinator.describe('tx')).toMatchObject({
      state: 'Ongoing',
      partitions: [['out', 0], ['out', 1]],
      offsets: [{ groupId: 'g', topic: 'in', partition: 0, offset: 7, metadata: null }],
    });
    // The open transaction holds the last stable offset at its first batch.
    expect(core.stability('out', 0)).toEqual({ lso: 0, hw: 2, aborted: 0 });
    expect(core.meta.fetchOffsets('g')).toEqual([]);

    expect(await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true })).toEqual({ producerId, producerEpoch: 1 });
    expect(values(await core.entries('out', 0))).toEqual(['a', 'c', 'COMMIT']);
    expect(values(await core.entries('out', 1))).toEqual(['b', 'COMMIT']);
    expect(core.stability('out', 0)).toEqual({ lso: 3, hw: 3, aborted: 0 });
    expect(core.meta.fetchOffsets('g')).toMatchObject([{ topic: 'in', partition: 0, offset: 7 }]);
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'CompleteCommit', producerEpoch: 1, partitions: [], offsets: [], lastProducerEpoch: 0 });
    // The record survives a reopen of the store as it is.
    expect(core.meta.transactions.get('tx')).toMatchObject({ state: 'CompleteCommit', producerEpoch: 1 });
  });

  it('aborts: ABORT markers, the range indexed as aborted, staged offsets dropped', async () => {
    const core = await open();
    await core.createTopic('out');
    await core.createTopic('in');
    const { producerId } = await init(core);
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['x', 'y']));
    core.coordinator.stageOffsets({ transactionalId: 'tx', producerId, producerEpoch: 0, groupId: 'g', memberEpoch: -1, offsets: [{ topic: 'in', partition: 0, offset: 3 }] });
    expect(await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: false })).toEqual({ producerId, producerEpoch: 1 });
    expect(values(await core.entries('out'))).toEqual(['x,y', 'ABORT']);
    expect(core.stability('out')).toEqual({ lso: 3, hw: 3, aborted: 1 });
    expect(core.meta.fetchOffsets('g')).toEqual([]);
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'CompleteAbort', producerEpoch: 1 });
  });

  it('an EndTxn with nothing open answers with the current epoch and changes nothing', async () => {
    const core = await open();
    const { producerId } = await init(core);
    expect(await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true })).toEqual({ producerId, producerEpoch: 0 });
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'Empty', producerEpoch: 0 });
  });

  it('a commit whose staged ack went stale aborts instead: TRANSACTION_ABORTED with the next epoch, nothing applied', async () => {
    const core = await open();
    await core.createTopic('out');
    const { producerId } = await init(core);
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['out-1']));
    core.coordinator.stageAcks({ transactionalId: 'tx', producerId, producerEpoch: 0, consumerId: 'c1', items: [[0, 4, 1], [0, 5, 1]] }, 'sub');
    core.acks.stale.add('sub/0/5');
    const err = await failure(core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true }));
    expect(err).toMatchObject({ code: 'TRANSACTION_ABORTED', details: { producerId, producerEpoch: 1 } });
    expect(values(await core.entries('out'))).toEqual(['out-1', 'ABORT']);
    expect(core.acks.applied).toEqual([]);
    expect(core.acks.settled).toEqual([]);
  });

  it('applies staged acks on commit, in the tick of the decision, and saves them', async () => {
    const core = await open();
    await core.createTopic('out');
    const { producerId } = await init(core);
    core.coordinator.stageAcks({ transactionalId: 'tx', producerId, producerEpoch: 0, consumerId: 'c1', items: [[0, 4, 1]] }, 'sub');
    core.coordinator.stageAcks({ transactionalId: 'tx', producerId, producerEpoch: 0, consumerId: 'c1', items: [[0, 4, 2], [1, 0, 1]] }, 'sub');
    expect(core.coordinator.describe('tx')?.acks).toEqual([{ subscription: 'sub', items: [[0, 4, 2], [1, 0, 1]] }]);
    await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true });
    expect(core.acks.applied).toEqual([['sub', 0, 4, 2], ['sub', 1, 0, 1]]);
    expect(core.acks.settled).toEqual(core.acks.applied);
  });
});

describe('TransactionCoordinator: fencing, per transaction', () => {
  it('a delayed EndTxn or produce of the previous transaction is refused and leaves the next one alone', async () => {
    const core = await open();
    await core.createTopic('out');
    const { producerId } = await init(core);
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['t1']));
    await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true });
    // The next transaction, at epoch 1, sequences from 0.
    await core.produce('out', 0, txBatch(producerId, 1, 0, ['t2']));
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'Ongoing', producerEpoch: 1 });

    expect((await failure(core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: false }))).code).toBe('PRODUCER_FENCED');
    expect((await failure(core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true }))).code).toBe('PRODUCER_FENCED');
    expect((await failure(core.produce('out', 0, txBatch(producerId, 0, 1, ['late'])))).code).toBe('PRODUCER_FENCED');
    expect(
      (await failure(() => core.coordinator.stageOffsets({ transactionalId: 'tx', producerId, producerEpoch: 0, groupId: 'g', memberEpoch: -1, offsets: [] }))).code,
    ).toBe('PRODUCER_FENCED');
    expect((await failure(core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 5, commit: true }))).code).toBe('UNKNOWN_PRODUCER');
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'Ongoing', producerEpoch: 1, partitions: [['out', 0]] });

    expect(await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 1, commit: false })).toEqual({ producerId, producerEpoch: 2 });
    expect(values(await core.entries('out'))).toEqual(['t1', 'COMMIT', 't2', 'ABORT']);
  });

  it('a retried EndTxn of the transaction that just ended gets its outcome, until the next one begins', async () => {
    const core = await open();
    await core.createTopic('out');
    const { producerId } = await init(core);
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['a']));
    const end = { transactionalId: 'tx', producerId, producerEpoch: 0 };
    expect(await core.coordinator.endTxn({ ...end, commit: true })).toEqual({ producerId, producerEpoch: 1 });
    expect(await core.coordinator.endTxn({ ...end, commit: true })).toEqual({ producerId, producerEpoch: 1 });
    expect((await failure(core.coordinator.endTxn({ ...end, commit: false }))).code).toBe('INVALID_TXN_STATE');
    expect(values(await core.entries('out'))).toEqual(['a', 'COMMIT']);
    await core.produce('out', 0, txBatch(producerId, 1, 0, ['b']));
    expect((await failure(core.coordinator.endTxn({ ...end, commit: true }))).code).toBe('PRODUCER_FENCED');
  });

  it('refuses transactional batches without a transactional id, plain ones inside a transaction, and any while it ends', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const core = await open(undefined, undefined, undefined, { failpoint: (point) => (point === 'prepared' ? gate : undefined) });
    await core.createTopic('out');
    const plain = await core.coordinator.initProducer({});
    expect((await failure(core.produce('out', 0, txBatch(plain.producerId, 0, 0, ['x'])))).code).toBe('INVALID_TXN_STATE');

    const { producerId } = await init(core);
    // Outside a transaction a transactional id's producer may write plain idempotent batches (Kafka's rule).
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['plain'], false));
    await core.produce('out', 0, txBatch(producerId, 0, 1, ['in-txn']));
    expect((await failure(core.produce('out', 0, txBatch(producerId, 0, 2, ['escape'], false)))).code).toBe('INVALID_TXN_STATE');

    const ending = core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true });
    await new Promise((r) => setImmediate(r));
    expect(core.coordinator.describe('tx')?.state).toBe('PrepareCommit');
    expect((await failure(core.produce('out', 0, txBatch(producerId, 0, 2, ['during'])))).code).toBe('INVALID_TXN_STATE');
    expect(
      (await failure(() => core.coordinator.stageAcks({ transactionalId: 'tx', producerId, producerEpoch: 0, consumerId: 'c', items: [[0, 0, 1]] }, 'sub'))).code,
    ).toBe('INVALID_TXN_STATE');
    release();
    expect(await ending).toEqual({ producerId, producerEpoch: 1 });
    expect(values(await core.entries('out'))).toEqual(['plain', 'in-txn', 'COMMIT']);
  });

  it('InitProducer aborts the transaction the previous instance left open, then fences it', async () => {
    const core = await open();
    await core.createTopic('out', 2);
    const first = await init(core);
    await core.produce('out', 0, txBatch(first.producerId, 0, 0, ['zombie-0']));
    await core.produce('out', 1, txBatch(first.producerId, 0, 0, ['zombie-1']));
    const second = await init(core);
    expect(second).toEqual({ producerId: first.producerId, producerEpoch: 1 });
    expect(values(await core.entries('out', 0))).toEqual(['zombie-0', 'ABORT']);
    expect(values(await core.entries('out', 1))).toEqual(['zombie-1', 'ABORT']);
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'Empty', producerEpoch: 1 });
    expect((await failure(core.produce('out', 0, txBatch(first.producerId, 0, 1, ['late'])))).code).toBe('PRODUCER_FENCED');
    expect((await failure(core.coordinator.endTxn({ transactionalId: 'tx', ...first, commit: true }))).code).toBe('PRODUCER_FENCED');
  });

  it('moves to a fresh producer id when the epoch runs out at the end of a transaction, and fences the old one', async () => {
    const dir = tempDir();
    try {
      const file = join(dir.path, 'sluice.db');
      const seed = openMetaStore(file);
      seed.producers.initTransactionalId('tx', 10_000, 1);
      seed.close();
      // Where 32767 transactions would have left it.
      const db = new Database(file);
      db.prepare(`UPDATE transactional_ids SET producer_epoch = 32767`).run();
      db.close();
      const core = await open(undefined, openMetaStore(file));
      await core.createTopic('out');
      await core.produce('out', 0, txBatch(0, 32_767, 0, ['last']));
      const next = await core.coordinator.endTxn({ transactionalId: 'tx', producerId: 0, producerEpoch: 32_767, commit: true });
      expect(next).toEqual({ producerId: 1, producerEpoch: 0 });
      expect((await failure(core.produce('out', 0, txBatch(0, 32_767, 1, ['late'])))).code).toBe('PRODUCER_FENCED');
      // A retry of the EndTxn that moved it still gets its answer, until the next transaction begins.
      expect(await core.coordinator.endTxn({ transactionalId: 'tx', producerId: 0, producerEpoch: 32_767, commit: true })).toEqual(next);
      await core.produce('out', 0, txBatch(1, 0, 0, ['fresh']));
      expect((await failure(core.coordinator.endTxn({ transactionalId: 'tx', producerId: 0, producerEpoch: 32_767, commit: true }))).code).toBe('PRODUCER_FENCED');
      expect(values(await core.entries('out'))).toEqual(['last', 'COMMIT', 'fresh']);
    } finally {
      await cores.pop()?.close();
      dir.remove();
    }
  });
});
