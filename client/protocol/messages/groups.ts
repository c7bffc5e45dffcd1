import { bool, fields, int, list, optInt, optList, optStr, str, strItem, type Fields } from '../shape.js';
import { MAX_TOPIC_LENGTH, topicPartition, type TopicPartition } from './common.js';

/**
 * Consumer groups (docs/groups.md): server-side assignment with member epochs.
 *
 *   GroupHeartbeat (0x30) request  = { groupId, memberId?, memberEpoch, clientId?, topics?: [str],
 *                                      ownedPartitions?: [{ topic, partitions: [int] }] }
 *                         response = { memberId, memberEpoch, heartbeatIntervalMs,
 *                                      assignment: [{ topic, partitions: [int] }] }
 *       memberEpoch 0 joins (topics required), -1 leaves, anything else must equal the epoch the
 *       member was last given. `assignment` is the whole set the member may consume now.
 *   CommitOffsets  (0x31) request  = { groupId, memberId?, memberEpoch, offsets: [{ topic, partition, offset, metadata? }] }
 *                         response = { committed: int }
 *       All offsets commit in one SQLite transaction, or none do. Without memberId (a standalone
 *       consumer, memberEpoch -1) only a group with no active members accepts commits.
 *   FetchOffsets   (0x32) request  = { groupId, topic? }
 *                         response = { offsets: [{ topic, partition, offset, metadata }] }
 *   ListGroups     (0x33) request  = {}      response = { groups: [{ groupId, state, memberCount }] }
 *   DescribeGroup  (0x34) request  = { groupId }
 *                         response = { groupId, state, groupEpoch, members: [Member],
 *                                      offsets: [{ topic, partition, committed, endOffset, lag, metadata }] }
 *   ResetOffsets   (0x35) request  = { groupId, topic, to: 'earliest' | 'latest' | offset, execute: bool }
 *                         response = { executed: bool, offsets: [{ topic, partition, previous, offset }] }
 *       Only for a group without active members. execute=false previews.
 */
export interface PartitionSet {
  readonly topic: string;
  readonly partitions: readonly number[];
}

export interface GroupHeartbeatRequest {
  readonly groupId: string;
  readonly memberId?: string;
  readonly memberEpoch: number;
  readonly clientId?: string;
  readonly topics?: readonly string[];
  readonly ownedPartitions?: readonly PartitionSet[];
}

export interface GroupHeartbeatResponse {
  readonly memberId: string;
  readonly memberEpoch: number;
  readonly heartbeatIntervalMs: number;
  readonly assignment: readonly PartitionSet[];
}

export interface OffsetCommit extends TopicPartition {
  readonly offset: number;
  readonly metadata?: string | null;
}

export interface CommitOffsetsRequest {
  readonly groupId: string;
  readonly memberId?: string;
  readonly memberEpoch: number;
  readonly offsets: readonly OffsetCommit[];
}

export interface CommittedOffsetInfo extends TopicPartition {
  readonly offset: number;
  readonly metadata: string | null;
}

export interface GroupRef {
  readonly groupId: string;
  readonly topic?: string;
}

export interface GroupSummary {
  readonly groupId: string;
  readonly state: string;
  readonly memberCount: number;
}

export interface GroupMemberInfo {
  readonly memberId: string;
  readonly clientId: string;
  readonly memberEpoch: number;
  readonly subscription: readonly string[];
  readonly assignment: readonly PartitionSet[];
  readonly pendingRevocation: readonly PartitionSet[];
  readonly lastHeartbeatAt: number;
}

export interface GroupLag extends TopicPartition {
  readonly committed: number | null;
  readonly endOffset: number;
  readonly lag: number;
  readonly metadata: string | null;
}

export interface DescribeGroupResponse {
  readonly groupId: string;
  readonly state: string;
  readonly groupEpoch: number;
  readonly members: readonly GroupMemberInfo[];
  readonly offsets: readonly GroupLag[];
}

export interface ResetOffsetsRequest {
  readonly groupId: string;
  readonly topic: string;
  readonly to: 'earliest' | 'latest' | number;
  readonly execute: boolean;
}

export interface ResetOffsetsResponse {
  readonly executed: boolean;
  readonly offsets: readonly (TopicPartition & { readonly previous: number | null; readonly offset: number })[];
}

const ID = 255;

function partitionSet(v: unknown, path: string): PartitionSet {
  const o = fields(v, path);
  return { topic: str(o, 'topic', path, MAX_TOPIC_LENGTH), partitions: list(o, 'partitions', path, (p, pp) => intItem(p, pp), 100_000) };
}

function intItem(v: unknown, path: string): number {
  return int({ v }, 'v', path, { min: 0, max: 0x7fffffff });
}

function nullableStr(o: Fields, key: string, path: string): string | null {
  return o[key] === null || o[key] === undefined ? null : str(o, key, path, 4096);
}

export function parseGroupHeartbeatRequest(body: unknown): GroupHeartbeatRequest {
  const o = fields(body, 'GroupHeartbeat');
  const path = 'GroupHeartbeat';
  const memberId = optStr(o, 'memberId', path, ID);
  const clientId = optStr(o, 'clientId', path, ID);
  const topics = optList(o, 'topics', path, strItem(MAX_TOPIC_LENGTH), 10_000);
  const owned = optList(o, 'ownedPartitions', path, partitionSet, 10_000);
  return {
    groupId: str(o, 'groupId', path, ID),
    memberEpoch: int(o, 'memberEpoch', path, { min: -1, max: 0x7fffffff }),
    ...(memberId === undefined ? {} : { memberId }),
    ...(clientId === undefined ? {} : { clientId }),
    ...(topics === undefined ? {} : { topics }),
    ...(owned === undefined ? {} : { ownedPartitions: owned }),
  };
}

export function parseGroupHeartbeatResponse(body: unknown): GroupHeartbeatResponse {
  const o = fields(body, 'GroupHeartbeatResponse');
  const path = 'GroupHeartbeatResponse';
  return {
    memberId: str(o, 'memberId', path, ID),
    memberEpoch: int(o, 'memberEpoch', path, { min: -1 }),
    heartbeatIntervalMs: int(o, 'heartbeatIntervalMs', path, { min: 1 }),
    assignment: list(o, 'assignment', path, partitionSet, 10_000),
  };
}

export function parseCommitOffsetsRequest(body: unknown): CommitOffsetsRequest {
  const o = fields(body, 'CommitOffsets');
  const memberId = optStr(o, 'memberId', 'CommitOffsets', ID);
  return {
    groupId: str(o, 'groupId', 'CommitOffsets', ID),
    memberEpoch: int(o, 'memberEpoch', 'CommitOffsets', { min: -1 }),
    ...(memberId === undefined ? {} : { memberId }),
    offsets: list(o, 'offsets', 'CommitOffsets', (v, path) => {
      const p = fields(v, path);
      return { ...topicPartition(p, path), offset: int(p, 'offset', path, { min: 0 }), metadata: nullableStr(p, 'metadata', path) };
    }, 10_000),
  };
}

export function parseCommitOffsetsResponse(body: unknown): { readonly committed: number } {
  return { committed: int(fields(body, 'CommitOffsetsResponse'), 'committed', 'CommitOffsetsResponse', { min: 0 }) };
}

export function parseGroupRef(body: unknown): GroupRef {
  const o = fields(body, 'GroupRef');
  const topic = optStr(o, 'topic', 'GroupRef', MAX_TOPIC_LENGTH);
  return { groupId: str(o, 'groupId', 'GroupRef', ID), ...(topic === undefined ? {} : { topic }) };
}

export function parseFetchOffsetsResponse(body: unknown): { readonly offsets: readonly CommittedOffsetInfo[] } {
  return {
    offsets: list(fields(body, 'FetchOffsetsResponse'), 'offsets', 'FetchOffsetsResponse', (v, path) => {
      const p = fields(v, path);
      return { ...topicPartition(p, path), offset: int(p, 'offset', path), metadata: nullableStr(p, 'metadata', path) };
    }, 100_000),
  };
}

export function parseListGroupsResponse(body: unknown): { readonly groups: readonly GroupSummary[] } {
  return {
    groups: list(fields(body, 'ListGroupsResponse'), 'groups', 'ListGroupsResponse', (v, path) => {
      const g = fields(v, path);
      return { groupId: str(g, 'groupId', path, ID), state: str(g, 'state', path, 32), memberCount: int(g, 'memberCount', path, { min: 0 }) };
    }, 100_000),
  };
}

export function parseDescribeGroupResponse(body: unknown): DescribeGroupResponse {
  const o = fields(body, 'DescribeGroupResponse');
  const path = 'DescribeGroupResponse';
  return {
    groupId: str(o, 'groupId', path, ID),
    state: str(o, 'state', path, 32),
    groupEpoch: int(o, 'groupEpoch', path, { min: 0 }),
    members: list(o, 'members', path, (v, mp) => {
      const m = fields(v, mp);
      return {
        memberId: str(m, 'memberId', mp, ID),
        clientId: str(m, 'clientId', mp, ID),
        memberEpoch: int(m, 'memberEpoch', mp),
        subscription: list(m, 'subscription', mp, strItem(MAX_TOPIC_LENGTH)),
        assignment: list(m, 'assignment', mp, partitionSet),
        pendingRevocation: list(m, 'pendingRevocation', mp, partitionSet),
        lastHeartbeatAt: int(m, 'lastHeartbeatAt', mp),
      };
    }, 100_000),
    offsets: list(o, 'offsets', path, (v, lp) => {
      const l = fields(v, lp);
      return { ...topicPartition(l, lp), committed: optInt(l, 'committed', lp) ?? null, endOffset: int(l, 'endOffset', lp), lag: int(l, 'lag', lp), metadata: nullableStr(l, 'metadata', lp) };
    }, 100_000),
  };
}

export function parseResetOffsetsRequest(body: unknown): ResetOffsetsRequest {
  const o = fields(body, 'ResetOffsets');
  const to = o['to'];
  let target: ResetOffsetsRequest['to'];
  if (to === 'earliest' || to === 'latest') target = to;
  else target = int(o, 'to', 'ResetOffsets', { min: 0 });
  return { groupId: str(o, 'groupId', 'ResetOffsets', ID), topic: str(o, 'topic', 'ResetOffsets', MAX_TOPIC_LENGTH), to: target, execute: bool(o, 'execute', 'ResetOffsets', false) };
}

export function parseResetOffsetsResponse(body: unknown): ResetOffsetsResponse {
  const o = fields(body, 'ResetOffsetsResponse');
  return {
    executed: bool(o, 'executed', 'ResetOffsetsResponse', false),
    offsets: list(o, 'offsets', 'ResetOffsetsResponse', (v, path) => {
      const p = fields(v, path);
      return { ...topicPartition(p, path), previous: optInt(p, 'previous', path) ?? null, offset: int(p, 'offset', path) };
    }, 100_000),
  };
}
