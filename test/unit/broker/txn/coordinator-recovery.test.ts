import { afterEach, describe, expect, it } from 'vitest';
import type { TxnFailpoint } from '../../../../broker/txn/coordinator.js';
import { Core, failure, txBatch } from './txn-harness.js';

const cores: Core[] = [];
afterEach(async () => {
  for (const c of cores.splice(0)) await c.close();
});

async function track(core: Promise<Core>): Promise<Core> {
  const c = await core;
  cores.push(c);
  return c;
}

const values = (entries: Awaited<ReturnType<Core['entries']>>): string[] => entries.map((e) => (e.kind === 'data' ? e.values.join(',') : e.kind));

/** A crash at `point` of ending the transaction: the failpoint throws, as if the process died there. */
function crashAt(point: TxnFailpoint): (p: TxnFailpoint) => void {
  return (p) => {
    if (p === point) throw new Error(`crash at ${point}`);
  };
}

/**
 * A transaction over out/0 and out/1 with group offsets and push acks staged, ended with
 * `commit`, the broker "crashing" at `point`; returns the core restarted on what survived.
 */
async function interrupted(point: TxnFailpoint, commit: boolean): Promise<{ before: Core; after: Core; producerId: number }> {
  const before = await Core.open(undefined, undefined, undefined, { failpoint: crashAt(point) });
  await before.createTopic('out', 2);
  await before.createTopic('in');
  const { producerId } = await before.coordinator.initProducer({ transactionalId: 'tx', transactionTimeoutMs: 60_000 });
  await before.produce('out', 0, txBatch(producerId, 0, 0, ['a']));
  await before.produce('out', 1, txBatch(producerId, 0, 0, ['b']));
  before.coordinator.stageOffsets({ transactionalId: 'tx', producerId, producerEpoch: 0, groupId: 'g', memberEpoch: -1, offsets: [{ topic: 'in', partition: 0, offset: 11 }] });
  before.coordinator.stageAcks({ transactionalId: 'tx', producerId, producerEpoch: 0, consumerId: 'c', items: [[0, 3, 1]] }, 'sub');
  const err = await failure(before.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit }));
  expect(err.message).toBe(`crash at ${point}`);
  expect(before.meta.transactions.get('tx')?.state).toBe(commit ? 'PrepareCommit' : 'PrepareAbort');
  const after = await track(before.crashAndRestart());
  return { before, after, producerId };
}

describe('TransactionCoordinator: recovery of interrupted transactions', () => {
  it('completes a commit found prepared at startup: markers, group offsets, push acks, epoch bump', async () => {
    const { after, producerId } = await interrupted('prepared', true);
    expect(values(await after.entries('out', 0))).toEqual(['a', 'COMMIT']);
    expect(values(await after.entries('out', 1))).toEqual(['b', 'COMMIT']);
    expect(after.stability('out', 0)).toMatchObject({ lso: 2, hw: 2 });
    expect(after.meta.fetchOffsets('g')).toMatchObject([{ topic: 'in', partition: 0, offset: 11 }]);
    expect(after.acks.settled).toEqual([['sub', 0, 3, 1]]);
    expect(after.coordinator.describe('tx')).toMatchObject({ state: 'CompleteCommit', producerEpoch: 1 });
    // The producer, still waiting for its EndTxn answer, retries it and learns the outcome.
    expect(await after.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true })).toEqual({ producerId, producerEpoch: 1 });
    expect((await failure(after.produce('out', 0, txBatch(producerId, 0, 1, ['zombie'])))).code).toBe('PRODUCER_FENCED');
  });

  it('a crash after the markers were written: a second marker changes nothing, offsets are written once', async () => {
    const { after } = await interrupted('markers-written', true);
    expect(values(await after.entries('out', 0))).toEqual(['a', 'COMMIT', 'COMMIT']);
    expect(after.stability('out', 0)).toEqual({ lso: 3, hw: 3, aborted: 0 });
    expect(after.meta.fetchOffsets('g')).toMatchObject([{ offset: 11 }]);
    expect(after.coordinator.describe('tx')).toMatchObject({ state: 'CompleteCommit', producerEpoch: 1 });
  });

  it('completes an abort found prepared at startup: ABORT markers, nothing staged applied', async () => {
    const { after } = await interrupted('prepared', false);
    expect(values(await after.entries('out', 0))).toEqual(['a', 'ABORT']);
    expect(after.stability('out', 1)).toEqual({ lso: 2, hw: 2, aborted: 1 });
    expect(after.meta.fetchOffsets('g')).toEqual([]);
    expect(after.acks.settled).toEqual([]);
    expect(after.coordinator.describe('tx')).toMatchObject({ state: 'CompleteAbort', producerEpoch: 1 });
  });

  it('keeps an Ongoing transaction open across a restart; its timeout aborts it then', async () => {
    const before = await Core.open();
    await before.createTopic('out');
    const { producerId } = await before.coordinator.initProducer({ transactionalId: 'tx', transactionTimeoutMs: 5_000 });
    await before.produce('out', 0, txBatch(producerId, 0, 0, ['open']));
    const after = await track(before.crashAndRestart());
    expect(after.coordinator.describe('tx')).toMatchObject({ state: 'Ongoing', partitions: [['out', 0]] });
    expect(after.stability('out')).toMatchObject({ lso: 0, hw: 1 });
    expect(await after.coordinator.abortExpired()).toBe(0);
    after.clock.t += 5_000;
    expect(await after.coordinator.abortExpired()).toBe(1);
    expect(values(await after.entries('out'))).toEqual(['open', 'ABORT']);
    expect(after.stability('out')).toEqual({ lso: 2, hw: 2, aborted: 1 });
  });

  it('closes a transaction left open in a partition whose coordinator record moved on (its marker was lost with the log tail)', async () => {
    const before = await Core.open();
    await before.createTopic('out', 2);
    const { producerId } = await before.coordinator.initProducer({ transactionalId: 'tx' });
    const other = await before.coordinator.initProducer({ transactionalId: 'other' });
    await before.produce('out', 0, txBatch(producerId, 0, 0, ['committed']));
    await before.produce('out', 1, txBatch(other.producerId, 0, 0, ['unknown']));
    // The records say both transactions completed (tx committed, other aborted), but the
    // markers never reached the logs, as after a power cut under fsync=interval.
    const t = before.meta.transactions;
    for (const [id, pid, outcome] of [['tx', producerId, 'commit'], ['other', other.producerId, 'abort']] as const) {
      const r = t.get(id)!;
      expect(t.write(id, pid, 0, ['Ongoing'], { ...r, state: outcome === 'commit' ? 'PrepareCommit' : 'PrepareAbort' }, 1)).toBe(true);
      expect(t.complete(id, pid, 0, { outcome, bump: true, now: 2 })).toMatchObject({ producerEpoch: 1 });
    }
    const after = await track(before.crashAndRestart());
    expect(values(await after.entries('out', 0))).toEqual(['committed', 'COMMIT']);
    expect(values(await after.entries('out', 1))).toEqual(['unknown', 'ABORT']);
    expect(after.stability('out', 0)).toMatchObject({ lso: 2, hw: 2, aborted: 0 });
    expect(after.stability('out', 1)).toMatchObject({ lso: 2, hw: 2, aborted: 1 });
    expect(after.logger.records.filter((r) => r.level === 'warn' && /closing it/.test(r.message ?? ''))).toHaveLength(2);
  });
});

describe('TransactionCoordinator: timeouts', () => {
  it('aborts a transaction open past its timeout and fences its producer; EndTxn then says it was aborted', async () => {
    const core = await track(Core.open());
    await core.createTopic('out');
    const { producerId } = await core.coordinator.initProducer({ transactionalId: 'tx', transactionTimeoutMs: 1_000 });
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['slow']));
    core.clock.t += 999;
    expect(await core.coordinator.abortExpired()).toBe(0);
    core.clock.t += 1;
    expect(await core.coordinator.abortExpired()).toBe(1);
    expect(core.coordinator.describe('tx')).toMatchObject({ state: 'CompleteAbort', producerEpoch: 1 });
    expect(values(await core.entries('out'))).toEqual(['slow', 'ABORT']);
    expect((await failure(core.produce('out', 0, txBatch(producerId, 0, 1, ['late'])))).code).toBe('PRODUCER_FENCED');
    const commit = await failure(core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: true }));
    expect(commit).toMatchObject({ code: 'TRANSACTION_ABORTED', details: { producerId, producerEpoch: 1 } });
    expect(await core.coordinator.endTxn({ transactionalId: 'tx', producerId, producerEpoch: 0, commit: false })).toEqual({ producerId, producerEpoch: 1 });
  });

  it('the timer runs the check by itself once started', async () => {
    const core = await track(Core.open());
    await core.createTopic('out');
    const { producerId } = await core.coordinator.initProducer({ transactionalId: 'tx', transactionTimeoutMs: 100 });
    await core.produce('out', 0, txBatch(producerId, 0, 0, ['x']));
    core.clock.t += 100;
    core.coordinator.start();
    const deadline = Date.now() + 5_000;
    while (core.coordinator.describe('tx')?.state !== 'CompleteAbort' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(core.coordinator.describe('tx')?.state).toBe('CompleteAbort');
  });
});
