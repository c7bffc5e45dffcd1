import { describe, expect, it } from 'vitest';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { PRODUCER_SNAPSHOT_FILE, parseProducerSnapshot, readProducerSnapshot, writeProducerSnapshot } from '../../../../broker/txn/producer-snapshot.js';

const good = {
  version: 1,
  coveredOffset: 10,
  producers: [
    { producerId: 3, epoch: 1, lastSequence: 4, lastTimestamp: 99, txnFirstOffset: null, batches: [[0, 4, 0, 4]] },
    { producerId: 5, epoch: 0, lastSequence: null, lastTimestamp: 98, txnFirstOffset: 7, batches: [] },
  ],
  aborted: [{ producerId: 9, firstOffset: 5, lastOffset: 6 }],
};

describe('producer-state snapshot', () => {
  it('round-trips through the file, crash-safely', async () => {
    let io = new CrashFS();
    await io.mkdir('/p');
    await io.fsyncDir('/');
    const snapshot = parseProducerSnapshot(good);
    await writeProducerSnapshot(io, '/p', snapshot);
    io = io.crash();
    expect(await readProducerSnapshot(io, '/p')).toEqual({ status: 'ok', snapshot });
    expect(io.listSync('/p')).toEqual([PRODUCER_SNAPSHOT_FILE]);
    expect(await readProducerSnapshot(io, '/elsewhere')).toEqual({ status: 'missing' });
  });

  it('refuses anything it would not have written', () => {
    const bad: [string, unknown][] = [
      ['version', { ...good, version: 2 }],
      ['coveredOffset', { ...good, coveredOffset: -1 }],
      ['producers', { ...good, producers: {} }],
      ['twice', { ...good, producers: [good.producers[0], good.producers[0]] }],
      ['epoch', { ...good, producers: [{ ...good.producers[0], epoch: 40_000 }] }],
      ['offset past coveredOffset', { ...good, producers: [{ ...good.producers[0], batches: [[0, 4, 6, 10]] }] }],
      ['batch offsets backwards', { ...good, producers: [{ ...good.producers[0], batches: [[0, 4, 4, 3]] }] }],
      ['too many batches', { ...good, producers: [{ ...good.producers[0], batches: Array.from({ length: 6 }, () => [0, 0, 0, 0]) }] }],
      ['sequence', { ...good, producers: [{ ...good.producers[0], lastSequence: 2 ** 31 }] }],
      ['aborted order', { ...good, aborted: [good.aborted[0], good.aborted[0]] }],
      ['not an object', 'hello'],
    ];
    for (const [name, doc] of bad) expect(() => parseProducerSnapshot(doc), name).toThrow();
  });

  it('reports an unparsable file as invalid, not as an error', async () => {
    const io = new CrashFS();
    await io.mkdir('/p');
    io.writeFileSync(`/p/${PRODUCER_SNAPSHOT_FILE}`, Buffer.from('{"version": 1, "cov'));
    expect(await readProducerSnapshot(io, '/p')).toMatchObject({ status: 'invalid' });
  });
});
