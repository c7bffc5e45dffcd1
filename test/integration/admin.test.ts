import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../client/admin.js';
import { connect, type SluiceClient } from '../../client/client.js';
import { hasCode, isSluiceError } from '../../client/protocol/errors.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';
import { rejection } from '../helpers/async.js';

let dir: ReturnType<typeof tempDir>;
let broker: RunningBroker;
let client: SluiceClient;
let admin: Admin;

beforeAll(async () => {
  dir = tempDir();
  broker = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
  client = await connect({ broker: broker.address, clientId: 'admin-test' });
  admin = client.admin();
});

afterAll(async () => {
  await client?.close();
  await broker?.close();
  dir?.remove();
});

describe('Admin', () => {
  it('creates, lists, describes and deletes topics', async () => {
    expect(await admin.createTopic('orders', { partitions: 3, retentionMs: 60_000 })).toEqual({ topic: 'orders', partitions: 3 });
    expect(await admin.createTopic('audit')).toEqual({ topic: 'audit', partitions: 1 });
    const listed = await admin.listTopics();
    expect(listed.filter((t) => t.topic === 'orders' || t.topic === 'audit')).toEqual([
      { topic: 'audit', partitions: 1 },
      { topic: 'orders', partitions: 3 },
    ]);
    const described = await admin.describeTopic('orders');
    expect(described.topic).toBe('orders');
    expect(described.config).toEqual({ retentionMs: 60_000, retentionBytes: null, segmentBytes: null });
    expect(described.partitions).toEqual([0, 1, 2].map((partition) => ({ partition, startOffset: 0, endOffset: 0 })));
    await admin.deleteTopic('audit');
    expect((await admin.listTopics()).some((t) => t.topic === 'audit')).toBe(false);
  });

  it('refuses a bad topic name with INVALID_TOPIC and a message that says why', async () => {
    const err = await rejection(admin.createTopic('a/b'));
    expect(hasCode(err, 'INVALID_TOPIC')).toBe(true);
    expect((err as Error).message).toContain('"/"');
    expect((err as Error).message).toMatch(/letters, digits/);
    expect(hasCode(await rejection(admin.createTopic('..')), 'INVALID_TOPIC')).toBe(true);
  });

  it('reports TOPIC_ALREADY_EXISTS and TOPIC_NOT_FOUND', async () => {
    await admin.createTopic('dup');
    const exists = await rejection(admin.createTopic('dup', { partitions: 2 }));
    expect(hasCode(exists, 'TOPIC_ALREADY_EXISTS')).toBe(true);
    expect((exists as { retriable: boolean }).retriable).toBe(false);
    for (const call of [admin.describeTopic('nope'), admin.deleteTopic('nope'), admin.listOffsets('nope', 'latest')]) {
      expect(hasCode(await rejection(call), 'TOPIC_NOT_FOUND')).toBe(true);
    }
  });

  it('lists earliest, latest and by-timestamp offsets after producing', async () => {
    await admin.createTopic('offsets', { partitions: 2 });
    const producer = client.producer({ lingerMs: 0 });
    const t0 = 1_700_000_000_000;
    // Partition 0: three batches at t0, t0+1000, t0+2000. Partition 1 stays empty.
    for (let i = 0; i < 3; i++) {
      await producer.sendMany([0, 1].map((j) => ({ topic: 'offsets', partition: 0, value: `m${i}-${j}`, timestamp: t0 + i * 1_000 })));
    }
    expect(await admin.listOffsets('offsets', 'earliest')).toEqual([
      { topic: 'offsets', partition: 0, offset: 0 },
      { topic: 'offsets', partition: 1, offset: 0 },
    ]);
    expect(await admin.listOffsets('offsets', 'latest')).toEqual([
      { topic: 'offsets', partition: 0, offset: 6 },
      { topic: 'offsets', partition: 1, offset: 0 },
    ]);
    const at = async (ts: number): Promise<number | undefined> => (await admin.listOffsets('offsets', ts))[0]?.offset;
    expect(await at(t0 - 1)).toBe(0);
    expect(await at(t0 + 1_000)).toBe(2);
    expect(await at(t0 + 1_500)).toBe(4);
    expect(await at(t0 + 10_000)).toBe(6); // past the end: latest
  });

  it('lists, describes and resets groups', async () => {
    await admin.createTopic('grouped', { partitions: 2 });
    const producer = client.producer({ lingerMs: 0 });
    await producer.sendMany(Array.from({ length: 4 }, (_, i) => ({ topic: 'grouped', partition: i % 2, value: i })));
    await client.connection.request('CommitOffsets', { groupId: 'g1', memberEpoch: -1, offsets: [{ topic: 'grouped', partition: 0, offset: 1 }] });
    expect((await admin.listGroups()).map((g) => g.groupId)).toContain('g1');
    const described = await admin.describeGroup('g1');
    expect(described.offsets.find((o) => o.partition === 0)).toMatchObject({ committed: 1, endOffset: 2, lag: 1 });

    const preview = await admin.resetGroupOffsets('g1', 'grouped', 'latest');
    expect(preview.executed).toBe(false);
    expect(preview.offsets).toEqual([
      { topic: 'grouped', partition: 0, previous: 1, offset: 2 },
      { topic: 'grouped', partition: 1, previous: null, offset: 2 },
    ]);
    expect((await admin.describeGroup('g1')).offsets.find((o) => o.partition === 0)?.committed).toBe(1);
    const done = await admin.resetGroupOffsets('g1', 'grouped', 'earliest', { execute: true });
    expect(done.executed).toBe(true);
    expect((await admin.describeGroup('g1')).offsets.find((o) => o.partition === 0)?.committed).toBe(0);
  });

  it('surfaces group errors as SluiceErrors with codes', async () => {
    const err = await rejection(admin.describeGroup('no-such-group'));
    expect(isSluiceError(err) && err.code).toBe('GROUP_NOT_FOUND');
  });
});
