import { SluiceError } from '../../client/protocol/errors.js';
import { validateTopicName } from '../meta/topic-name.js';
import { partitionKey, type PartitionKey } from './partitions.js';

/**
 * Shape checks for what the coordinator receives. The codec has already decoded the frame; this
 * turns "a value of the right TypeScript type" into "a value the protocol allows", once, at the
 * boundary, and throws INVALID_REQUEST (INVALID_TOPIC for a bad topic name) saying what is wrong.
 */

/** Upper bound for group, member and client ids: ids are names, not payloads. */
export const MAX_ID_LENGTH = 255;

export interface HeartbeatRequest {
  groupId: string;
  /** Required unless joining (epoch 0). On a join, lets a client rejoin under its old id. */
  memberId?: string;
  /** 0 joins, -1 leaves, otherwise the epoch the member was last given. */
  memberEpoch: number;
  clientId?: string;
  /** The subscription: required on join; on later heartbeats, omitted means unchanged. */
  topics?: readonly string[];
  /** What the member consumes right now; omitted means "no news" (nothing is released). */
  ownedPartitions?: readonly { topic: string; partitions: readonly number[] }[];
}

export interface ParsedHeartbeat {
  groupId: string;
  memberId: string | undefined;
  memberEpoch: number;
  clientId: string | undefined;
  /** Sorted, without duplicates. */
  topics: string[] | undefined;
  owned: Set<PartitionKey> | undefined;
}

export function parseHeartbeat(req: HeartbeatRequest): ParsedHeartbeat {
  if (typeof req !== 'object' || req === null) throw invalid('heartbeat request must be an object');
  const groupId = parseGroupId(req.groupId);
  const memberEpoch = req.memberEpoch;
  if (!Number.isSafeInteger(memberEpoch) || memberEpoch < -1) {
    throw invalid(`memberEpoch must be 0 (join), -1 (leave) or a positive integer, got ${String(memberEpoch)}`);
  }
  const memberId = optionalId(req.memberId, 'memberId');
  if (memberId === undefined && memberEpoch !== 0) {
    throw invalid(`memberId is required unless joining with memberEpoch 0 (got memberEpoch ${memberEpoch})`);
  }
  const clientId = optionalId(req.clientId, 'clientId');
  let topics: string[] | undefined;
  if (req.topics !== undefined) {
    if (!Array.isArray(req.topics)) throw invalid('topics must be an array of topic names');
    topics = [...new Set(req.topics.map((t) => validateTopicName(t)))].sort();
  } else if (memberEpoch === 0) {
    throw invalid('topics (the subscription) is required when joining');
  }
  let owned: Set<PartitionKey> | undefined;
  if (req.ownedPartitions !== undefined) {
    if (!Array.isArray(req.ownedPartitions)) throw invalid('ownedPartitions must be an array of { topic, partitions }');
    owned = new Set();
    for (const entry of req.ownedPartitions) {
      if (typeof entry !== 'object' || entry === null || typeof entry.topic !== 'string' || !Array.isArray(entry.partitions)) {
        throw invalid('each ownedPartitions entry must be { topic: string, partitions: number[] }');
      }
      for (const partition of entry.partitions) owned.add(partitionKey(entry.topic, parsePartition(partition)));
    }
  }
  return { groupId, memberId, memberEpoch, clientId, topics, owned };
}

export interface PartitionRef {
  topic: string;
  partition: number;
}

export function parsePartitionRefs(partitions: readonly PartitionRef[]): PartitionKey[] {
  if (!Array.isArray(partitions)) throw invalid('partitions must be an array of { topic, partition }');
  return partitions.map((p) => {
    if (typeof p !== 'object' || p === null || typeof p.topic !== 'string' || p.topic.length === 0) {
      throw invalid('each partition must be { topic: string, partition: number }');
    }
    return partitionKey(p.topic, parsePartition(p.partition));
  });
}

export function parseGroupId(groupId: unknown): string {
  if (typeof groupId !== 'string' || groupId.length === 0 || groupId.length > MAX_ID_LENGTH) {
    throw invalid(`groupId must be a string of 1 to ${MAX_ID_LENGTH} characters`);
  }
  return groupId;
}

function optionalId(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw invalid(`${field} must be a string of 1 to ${MAX_ID_LENGTH} characters`);
  }
  return value;
}

function parsePartition(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw invalid(`partition must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_REQUEST', message);
}
