import { fields, int, list, optInt, str, type Fields } from '../shape.js';
import { MAX_TOPIC_LENGTH } from './common.js';

/**
 * Topic administration.
 *
 *   CreateTopic   (0x10) request  = { topic: str, partitions?: int (default 1),
 *                                     retentionMs?: int|nil, retentionBytes?: int|nil, segmentBytes?: int|nil }
 *                        response = { topic: str, partitions: int }
 *   DeleteTopic   (0x11) request  = { topic: str }                response = { topic: str }
 *   ListTopics    (0x12) request  = {}                            response = { topics: [{ topic, partitions }] }
 *   DescribeTopic (0x13) request  = { topic: str }
 *                        response = { topic, createdAt, config: { retentionMs, retentionBytes, segmentBytes },
 *                                     partitions: [{ partition, startOffset, endOffset }] }
 *
 * Retention and segment sizes of nil mean "broker default" (retention: keep forever).
 */
export interface TopicSettings {
  readonly retentionMs: number | null;
  readonly retentionBytes: number | null;
  readonly segmentBytes: number | null;
}

export interface CreateTopicRequest extends Partial<TopicSettings> {
  readonly topic: string;
  readonly partitions?: number;
}

export interface TopicSummary {
  readonly topic: string;
  readonly partitions: number;
}

export interface TopicRef {
  readonly topic: string;
}

export interface ListTopicsResponse {
  readonly topics: readonly TopicSummary[];
}

export interface PartitionInfo {
  readonly partition: number;
  /** First offset still in the log. */
  readonly startOffset: number;
  /** Offset the next message will get; only offsets below it are readable. */
  readonly endOffset: number;
}

export interface DescribeTopicResponse {
  readonly topic: string;
  readonly createdAt: number;
  readonly config: TopicSettings;
  readonly partitions: readonly PartitionInfo[];
}

const nullableInt = (o: Fields, key: string, path: string): number | null | undefined =>
  o[key] === null ? null : optInt(o, key, path, { min: 1 });

export function parseCreateTopicRequest(body: unknown): CreateTopicRequest {
  const o = fields(body, 'CreateTopic');
  const out: { -readonly [K in keyof CreateTopicRequest]: CreateTopicRequest[K] } = { topic: str(o, 'topic', 'CreateTopic', MAX_TOPIC_LENGTH) };
  const partitions = optInt(o, 'partitions', 'CreateTopic', { min: 1, max: 10_000 });
  if (partitions !== undefined) out.partitions = partitions;
  for (const key of ['retentionMs', 'retentionBytes', 'segmentBytes'] as const) {
    const v = nullableInt(o, key, 'CreateTopic');
    if (v !== undefined) out[key] = v;
  }
  return out;
}

export function parseTopicSummary(body: unknown): TopicSummary {
  const o = fields(body, 'TopicSummary');
  return { topic: str(o, 'topic', 'TopicSummary', MAX_TOPIC_LENGTH), partitions: int(o, 'partitions', 'TopicSummary', { min: 0 }) };
}

export function parseTopicRef(body: unknown): TopicRef {
  return { topic: str(fields(body, 'TopicRef'), 'topic', 'TopicRef', MAX_TOPIC_LENGTH) };
}

export function parseEmpty(): Record<string, never> {
  return {};
}

export function parseListTopicsResponse(body: unknown): ListTopicsResponse {
  return { topics: list(fields(body, 'ListTopics'), 'topics', 'ListTopics', parseTopicSummary, 100_000) };
}

export function parseDescribeTopicResponse(body: unknown): DescribeTopicResponse {
  const o = fields(body, 'DescribeTopic');
  const c = fields(o['config'], 'DescribeTopic.config');
  const setting = (key: keyof TopicSettings): number | null => (c[key] === null || c[key] === undefined ? null : int(c, key, 'DescribeTopic.config'));
  return {
    topic: str(o, 'topic', 'DescribeTopic', MAX_TOPIC_LENGTH),
    createdAt: int(o, 'createdAt', 'DescribeTopic'),
    config: { retentionMs: setting('retentionMs'), retentionBytes: setting('retentionBytes'), segmentBytes: setting('segmentBytes') },
    partitions: list(o, 'partitions', 'DescribeTopic', (v, path) => {
      const p = fields(v, path);
      return { partition: int(p, 'partition', path, { min: 0 }), startOffset: int(p, 'startOffset', path), endOffset: int(p, 'endOffset', path) };
    }),
  };
}
