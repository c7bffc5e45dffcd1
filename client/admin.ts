import type { Connection, RequestOptions } from './connection.js';
import { fromErrorBody } from './protocol/messages/error.js';
import type { OffsetSpec, TopicPartition } from './protocol/messages/common.js';
import type { DescribeGroupResponse, GroupSummary, ResetOffsetsResponse } from './protocol/messages/groups.js';
import type { DescribeTopicResponse, TopicSettings, TopicSummary } from './protocol/messages/topics.js';

export type { DescribeGroupResponse, GroupSummary, ResetOffsetsResponse, DescribeTopicResponse, TopicSettings, TopicSummary, OffsetSpec };

export interface CreateTopicOptions {
  /** Default: the broker's default (1 unless configured). */
  partitions?: number;
  /** Delete closed segments older than this. Default: keep forever. */
  retentionMs?: number;
  /** Delete the oldest closed segments while a partition holds more than this. Default: no limit. */
  retentionBytes?: number;
  /** Roll to a new segment past this size. Default: the broker's. */
  segmentBytes?: number;
}

export interface PartitionOffset extends TopicPartition {
  readonly offset: number;
}

export interface ResetGroupOffsetsOptions {
  /** false (the default) previews the new offsets without writing them, like a dry run. */
  execute?: boolean;
}

/**
 * Topic and group administration: one request each, results typed by the wire messages.
 * Errors are the broker's SluiceErrors (TOPIC_NOT_FOUND, INVALID_TOPIC, GROUP_NOT_EMPTY, ...).
 */
export class Admin {
  readonly #connection: Connection;

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  createTopic(topic: string, options: CreateTopicOptions = {}, request?: RequestOptions): Promise<TopicSummary> {
    const { partitions, retentionMs, retentionBytes, segmentBytes } = options;
    const body = {
      topic,
      ...(partitions === undefined ? {} : { partitions }),
      ...(retentionMs === undefined ? {} : { retentionMs }),
      ...(retentionBytes === undefined ? {} : { retentionBytes }),
      ...(segmentBytes === undefined ? {} : { segmentBytes }),
    };
    return this.#connection.request('CreateTopic', body, request);
  }

  async deleteTopic(topic: string, request?: RequestOptions): Promise<void> {
    await this.#connection.request('DeleteTopic', { topic }, request);
  }

  async listTopics(request?: RequestOptions): Promise<readonly TopicSummary[]> {
    return (await this.#connection.request('ListTopics', {}, request)).topics;
  }

  describeTopic(topic: string, request?: RequestOptions): Promise<DescribeTopicResponse> {
    return this.#connection.request('DescribeTopic', { topic }, request);
  }

  /**
   * The offset of every partition of `topic` at `at`: `earliest` (first offset still in the log),
   * `latest` (the next offset to be written) or a timestamp (first offset at or after it, else
   * latest). Throws the first per-partition error.
   */
  async listOffsets(topic: string, at: OffsetSpec, request?: RequestOptions): Promise<PartitionOffset[]> {
    const { partitions } = await this.describeTopic(topic, request);
    const res = await this.#connection.request('ListOffsets', { partitions: partitions.map(({ partition }) => ({ topic, partition, at })) }, request);
    const failed = res.partitions.find((p) => p.error !== undefined);
    if (failed?.error !== undefined) throw fromErrorBody(failed.error);
    return res.partitions.map(({ topic: t, partition, offset }) => ({ topic: t, partition, offset })).sort((a, b) => a.partition - b.partition);
  }

  async listGroups(request?: RequestOptions): Promise<readonly GroupSummary[]> {
    return (await this.#connection.request('ListGroups', {}, request)).groups;
  }

  describeGroup(groupId: string, request?: RequestOptions): Promise<DescribeGroupResponse> {
    return this.#connection.request('DescribeGroup', { groupId }, request);
  }

  /** Moves a group's committed offsets on `topic`; only for a group without active members. */
  resetGroupOffsets(groupId: string, topic: string, to: 'earliest' | 'latest' | number, options: ResetGroupOffsetsOptions = {}, request?: RequestOptions): Promise<ResetOffsetsResponse> {
    return this.#connection.request('ResetOffsets', { groupId, topic, to, execute: options.execute ?? false }, request);
  }
}
