/** A partition list as it appears on the wire and in descriptions: one entry per topic. */
export interface TopicPartitions {
  topic: string;
  partitions: number[];
}

/**
 * `topic:partition`, the key the coordinator uses to track who holds what. ':' cannot appear in
 * a valid topic name (broker/meta/topic-name.ts), so the key is unambiguous.
 */
export type PartitionKey = string;

export function partitionKey(topic: string, partition: number): PartitionKey {
  return `${topic}:${partition}`;
}

export function parsePartitionKey(key: PartitionKey): { topic: string; partition: number } {
  const colon = key.lastIndexOf(':');
  return { topic: key.slice(0, colon), partition: Number(key.slice(colon + 1)) };
}

export function keysOfAssignment(assignment: ReadonlyMap<string, readonly number[]>): Set<PartitionKey> {
  const keys = new Set<PartitionKey>();
  for (const [topic, partitions] of assignment) for (const p of partitions) keys.add(partitionKey(topic, p));
  return keys;
}

/** Groups keys by topic, topics and partitions sorted: the canonical form of every response. */
export function toTopicPartitions(keys: Iterable<PartitionKey>): TopicPartitions[] {
  const byTopic = new Map<string, number[]>();
  for (const key of keys) {
    const { topic, partition } = parsePartitionKey(key);
    let list = byTopic.get(topic);
    if (list === undefined) byTopic.set(topic, (list = []));
    list.push(partition);
  }
  return [...byTopic.keys()]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((topic) => ({ topic, partitions: (byTopic.get(topic) ?? []).sort((a, b) => a - b) }));
}
