import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../../../client/protocol/errors.js';
import type { MetaStore, TopicConfig, TopicRecord } from '../../../../broker/meta/meta-store.js';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';

/**
 * The MetaStore contract, run against every implementation (today: SQLite on a file and in
 * memory). Implementation-specific checks (pragmas, migrations) live in sqlite-meta-store.test.ts.
 */
interface Harness {
  open(): MetaStore;
  cleanup(): void;
}

const implementations: Record<string, () => Harness> = {
  'sqlite file': () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-meta-'));
    return { open: () => openMetaStore(join(dir, 'sluice.db')), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  },
  'sqlite :memory:': () => ({ open: () => openMetaStore(':memory:'), cleanup: () => {} }),
};

const NO_CONFIG: TopicConfig = { retentionMs: null, retentionBytes: null, segmentBytes: null };

function topic(name: string, partitions = 3, config: TopicConfig = NO_CONFIG): TopicRecord {
  return { name, partitions, config, createdAt: 1_700_000_000_000 };
}

function expectCode(fn: () => unknown, code: Parameters<typeof hasCode>[1]): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code}`).toBeDefined();
  expect(hasCode(thrown, code), `expected ${code}, got ${String(thrown)}`).toBe(true);
}

describe.each(Object.entries(implementations))('MetaStore contract: %s', (_name, makeHarness) => {
  let harness: Harness;
  let store: MetaStore;

  beforeEach(() => {
    harness = makeHarness();
    store = harness.open();
  });
  afterEach(() => {
    store.close();
    harness.cleanup();
  });

  describe('topics', () => {
    it('creates, gets and lists topics sorted by name', () => {
      store.createTopic(topic('orders', 4, { retentionMs: 60_000, retentionBytes: null, segmentBytes: 1 << 20 }));
      store.createTopic(topic('audit', 1));
      expect(store.getTopic('orders')).toEqual({
        name: 'orders',
        partitions: 4,
        config: { retentionMs: 60_000, retentionBytes: null, segmentBytes: 1 << 20 },
        createdAt: 1_700_000_000_000,
      });
      expect(store.getTopic('missing')).toBeUndefined();
      expect(store.listTopics().map((t) => t.name)).toEqual(['audit', 'orders']);
    });

    it('refuses a duplicate topic with TOPIC_ALREADY_EXISTS and keeps the original', () => {
      store.createTopic(topic('orders', 4));
      expectCode(() => store.createTopic(topic('orders', 9)), 'TOPIC_ALREADY_EXISTS');
      expect(store.getTopic('orders')?.partitions).toBe(4);
    });

    it('refuses invalid names and configs', () => {
      expectCode(() => store.createTopic(topic('bad name')), 'INVALID_TOPIC');
      expectCode(() => store.createTopic(topic('..')), 'INVALID_TOPIC');
      expectCode(() => store.createTopic(topic('ok', 0)), 'INVALID_CONFIG');
      expectCode(() => store.createTopic(topic('ok', 1.5)), 'INVALID_CONFIG');
      expectCode(() => store.createTopic(topic('ok', 1, { ...NO_CONFIG, retentionMs: -1 })), 'INVALID_CONFIG');
      expect(store.listTopics()).toEqual([]);
    });

    it('deletes a topic and reports whether it existed', () => {
      store.createTopic(topic('orders'));
      expect(store.deleteTopic('orders')).toBe(true);
      expect(store.deleteTopic('orders')).toBe(false);
      expect(store.getTopic('orders')).toBeUndefined();
      store.createTopic(topic('orders', 2));
      expect(store.getTopic('orders')?.partitions).toBe(2);
    });
  });

  describe('committed offsets', () => {
    beforeEach(() => {
      store.createTopic(topic('orders', 3));
      store.createTopic(topic('audit', 1));
    });

    it('commits and fetches offsets sorted by topic and partition', () => {
      store.commitOffsets(
        'g1',
        [
          { topic: 'orders', partition: 2, offset: 10, metadata: 'm' },
          { topic: 'orders', partition: 0, offset: 5 },
          { topic: 'audit', partition: 0, offset: 0, metadata: null },
        ],
        1000,
      );
      expect(store.fetchOffsets('g1')).toEqual([
        { groupId: 'g1', topic: 'audit', partition: 0, offset: 0, metadata: null, committedAt: 1000 },
        { groupId: 'g1', topic: 'orders', partition: 0, offset: 5, metadata: null, committedAt: 1000 },
        { groupId: 'g1', topic: 'orders', partition: 2, offset: 10, metadata: 'm', committedAt: 1000 },
      ]);
      expect(store.fetchOffsets('g1', 'orders').map((o) => o.partition)).toEqual([0, 2]);
      expect(store.fetchOffsets('g2')).toEqual([]);
    });

    it('overwrites an earlier commit of the same partition, metadata included', () => {
      store.commitOffsets('g1', [{ topic: 'orders', partition: 0, offset: 5, metadata: 'first' }], 1000);
      store.commitOffsets('g1', [{ topic: 'orders', partition: 0, offset: 3 }], 2000);
      expect(store.fetchOffsets('g1')).toEqual([
        { groupId: 'g1', topic: 'orders', partition: 0, offset: 3, metadata: null, committedAt: 2000 },
      ]);
    });

    it('keeps groups apart', () => {
      store.commitOffsets('g1', [{ topic: 'orders', partition: 0, offset: 5 }], 1);
      store.commitOffsets('g2', [{ topic: 'orders', partition: 0, offset: 7 }], 1);
      expect(store.fetchOffsets('g1')[0]?.offset).toBe(5);
      expect(store.fetchOffsets('g2')[0]?.offset).toBe(7);
      expect(store.listOffsetGroups()).toEqual(['g1', 'g2']);
    });

    it('is all or nothing: an unknown topic or partition anywhere writes nothing', () => {
      store.commitOffsets('g1', [{ topic: 'orders', partition: 0, offset: 1 }], 1);
      expectCode(
        () =>
          store.commitOffsets('g1', [
            { topic: 'orders', partition: 0, offset: 99 },
            { topic: 'nope', partition: 0, offset: 1 },
          ]),
        'TOPIC_NOT_FOUND',
      );
      expectCode(
        () =>
          store.commitOffsets('g1', [
            { topic: 'orders', partition: 0, offset: 99 },
            { topic: 'orders', partition: 3, offset: 1 },
          ]),
        'PARTITION_NOT_FOUND',
      );
      expect(store.fetchOffsets('g1')).toEqual([
        { groupId: 'g1', topic: 'orders', partition: 0, offset: 1, metadata: null, committedAt: 1 },
      ]);
    });

    it('refuses malformed entries with INVALID_REQUEST', () => {
      expectCode(() => store.commitOffsets('', [{ topic: 'orders', partition: 0, offset: 1 }]), 'INVALID_REQUEST');
      expectCode(() => store.commitOffsets('g', [{ topic: 'orders', partition: -1, offset: 1 }]), 'INVALID_REQUEST');
      expectCode(() => store.commitOffsets('g', [{ topic: 'orders', partition: 0, offset: -1 }]), 'INVALID_REQUEST');
      expectCode(() => store.commitOffsets('g', [{ topic: 'orders', partition: 0, offset: 2 ** 53 }]), 'INVALID_REQUEST');
      expectCode(
        () => store.commitOffsets('g', [{ topic: 'orders', partition: 0, offset: 1, metadata: 'x'.repeat(5000) }]),
        'INVALID_REQUEST',
      );
      expect(store.listOffsetGroups()).toEqual([]);
    });

    it('accepts an empty commit as a no-op', () => {
      store.commitOffsets('g1', []);
      expect(store.listOffsetGroups()).toEqual([]);
    });

    it('deletes a group offsets, all or one topic, and returns the count', () => {
      store.commitOffsets('g1', [
        { topic: 'orders', partition: 0, offset: 1 },
        { topic: 'orders', partition: 1, offset: 1 },
        { topic: 'audit', partition: 0, offset: 1 },
      ]);
      expect(store.deleteGroupOffsets('g1', 'orders')).toBe(2);
      expect(store.fetchOffsets('g1').map((o) => o.topic)).toEqual(['audit']);
      expect(store.deleteGroupOffsets('g1')).toBe(1);
      expect(store.deleteGroupOffsets('g1')).toBe(0);
      expect(store.listOffsetGroups()).toEqual([]);
    });

    it('deleting a topic deletes its committed offsets and nothing else', () => {
      store.commitOffsets('g1', [
        { topic: 'orders', partition: 0, offset: 1 },
        { topic: 'audit', partition: 0, offset: 1 },
      ]);
      store.commitOffsets('g2', [{ topic: 'orders', partition: 1, offset: 1 }]);
      expect(store.deleteTopic('orders')).toBe(true);
      expect(store.fetchOffsets('g1').map((o) => o.topic)).toEqual(['audit']);
      expect(store.fetchOffsets('g2')).toEqual([]);
      expect(store.listOffsetGroups()).toEqual(['g1']);
      // A topic re-created under the same name starts without the old offsets.
      store.createTopic(topic('orders', 3));
      expect(store.fetchOffsets('g2')).toEqual([]);
    });
  });

  it('close is idempotent and later calls throw', () => {
    store.close();
    store.close();
    expect(() => store.listTopics()).toThrow();
  });
});
