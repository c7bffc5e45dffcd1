import { describe, expect, it } from 'vitest';
import { hasCode } from '../../../../client/protocol/errors.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { ensureDir } from '../../../../broker/log/file-io.js';
import { LogManager } from '../../../../broker/log/log-manager.js';
import { captureLogger, makeBatch } from './helpers.js';

const manager = (io: CrashFS, onFatal?: (err: Error, topic: string, partition: number) => void) =>
  new LogManager({ dataDir: '/data', io, defaults: { logger: captureLogger(), segmentBytes: 300, retentionBytes: 400 }, ...(onFatal ? { onFatal } : {}) });

describe('LogManager', () => {
  it('opens DATA/topics/TOPIC/PARTITION durably, once per partition', async () => {
    let io = new CrashFS();
    const logs = manager(io);
    const [a, b] = await Promise.all([logs.openPartition('orders', 0), logs.openPartition('orders', 0)]);
    expect(a).toBe(b);
    expect(logs.get('orders', 0)).toBe(a);
    expect(logs.get('orders', 1)).toBeUndefined();
    await a.append(makeBatch('x'));
    expect(a.dir).toBe('/data/topics/orders/0');
    io = io.crash();
    // The directories and the acknowledged batch survived the power cut.
    const again = manager(io);
    expect((await again.openPartition('orders', 0)).endOffset).toBe(1);
    await again.close();
  });

  it('refuses topic names that are not safe directory names', async () => {
    const logs = manager(new CrashFS());
    for (const bad of ['', '..', '.hidden', 'a/b', 'x'.repeat(250), 'sp ace']) {
      expect(hasCode(await logs.openPartition(bad, 0).catch((e: unknown) => e), 'INVALID_TOPIC'), bad).toBe(true);
    }
    expect(hasCode(await logs.openPartition('ok', -1).catch((e: unknown) => e), 'INVALID_CONFIG')).toBe(true);
  });

  it('deletes a topic: closes its logs and removes its directory, even across a crash', async () => {
    let io = new CrashFS();
    const logs = manager(io);
    for (const p of [0, 1]) await (await logs.openPartition('gone', p)).append(makeBatch(`g${p}`));
    await (await logs.openPartition('kept', 0)).append(makeBatch('k'));
    await logs.deleteTopic('gone');
    expect(logs.get('gone', 0)).toBeUndefined();
    expect(io.listSync('/data/topics')).toEqual(['kept']);
    await logs.deleteTopic('never-existed');
    io = io.crash();
    expect(io.listSync('/data/topics')).toEqual(['kept']);
    // A fresh open of the deleted topic starts empty.
    const again = manager(io);
    expect((await again.openPartition('gone', 0)).endOffset).toBe(0);
    await again.close();
  });

  it('sweeps a topic directory whose deletion a crash interrupted', async () => {
    const io = new CrashFS();
    await ensureDir(io, '/data/topics/.deleting-old-1-0/0');
    io.writeFileSync('/data/topics/.deleting-old-1-0/0/00000000000000000000.log', Buffer.alloc(0));
    const logs = manager(io);
    await logs.openPartition('t', 0);
    expect(io.listSync('/data/topics')).toEqual(['t']);
    await logs.close();
  });

  it('runs retention on every partition and closes them all', async () => {
    const io = new CrashFS();
    const logs = manager(io);
    const p0 = await logs.openPartition('r', 0);
    const p1 = await logs.openPartition('r', 1, { retentionBytes: null });
    for (let i = 0; i < 10; i++) {
      await p0.append(makeBatch(`a${i}`, 1, { valueBytes: 100 }));
      await p1.append(makeBatch(`b${i}`, 1, { valueBytes: 100 }));
    }
    await logs.enforceRetention();
    expect(p0.startOffset).toBeGreaterThan(0);
    expect(p1.startOffset).toBe(0);
    await logs.close();
    expect(hasCode(await p0.append(makeBatch('late')).catch((e: unknown) => e), 'SHUTTING_DOWN')).toBe(true);
    expect(hasCode(await logs.openPartition('r', 0).catch((e: unknown) => e), 'SHUTTING_DOWN')).toBe(true);
  });

  it('reports a fatal storage error with its topic and partition', async () => {
    const io = new CrashFS();
    const seen: string[] = [];
    const logs = manager(io, (err, topic, partition) => seen.push(`${topic}/${partition}: ${(err as { code?: string }).code}`));
    const log = await logs.openPartition('f', 3);
    io.failNext('datasync');
    await log.append(makeBatch('x')).catch(() => {});
    expect(seen).toEqual(['f/3: STORAGE_ERROR']);
    await logs.close();
  });
});
