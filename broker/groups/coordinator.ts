import { randomUUID } from 'node:crypto';
import { SluiceError } from '../../client/protocol/errors.js';
import type { CommittedOffset, MetaStore, OffsetToCommit } from '../meta/meta-store.js';
import { ConsumerGroup, type GroupState } from './group.js';
import type { MemberState } from './member-state.js';
import { toTopicPartitions, type TopicPartitions } from './partitions.js';
import {
  parseGroupId,
  parseHeartbeat,
  parsePartitionRefs,
  type HeartbeatRequest,
  type ParsedHeartbeat,
  type PartitionRef,
} from './requests.js';

export type { HeartbeatRequest, PartitionRef } from './requests.js';
export type { TopicPartitions } from './partitions.js';
export type { GroupState } from './group.js';

/**
 * The consumer-group coordinator: KIP-848-style server-side assignment with member epochs,
 * revoke-before-reassign and commit fencing. docs/groups.md is the protocol; the comments here
 * point at its rules.
 *
 * Pure: no sockets, no timers. Time comes in as `now` (ms); the broker calls expireSessions on a
 * timer, and every request also expires its own group's overdue members first, so a late timer
 * never lets a dead member keep its partitions or commit. Only committed offsets are durable (via
 * the MetaStore); membership lives in memory and is rebuilt by heartbeats after a restart.
 */
export interface GroupCoordinatorOptions {
  store: MetaStore;
  /** Partition count of a topic, or undefined if it does not exist (counts as 0 partitions). */
  partitionsOf: (topic: string) => number | undefined;
  /** A member not heard from for longer than this is removed. Default 30 000. */
  sessionTimeoutMs?: number;
  /** Told to members: how often to heartbeat. Default 3 000; must be below the session timeout. */
  heartbeatIntervalMs?: number;
}

export interface HeartbeatResponse {
  memberId: string;
  /** -1 after a leave. */
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** The full set the member may consume now (not a delta), topics and partitions sorted. */
  assignment: TopicPartitions[];
}

export interface CommitRequest {
  groupId: string;
  /** Omitted for a standalone consumer (then memberEpoch must be -1). */
  memberId?: string;
  memberEpoch: number;
  offsets: readonly OffsetToCommit[];
}

export interface MemberDescription {
  memberId: string;
  clientId: string;
  memberEpoch: number;
  subscription: string[];
  /** What the member was last told it owns. */
  assignment: TopicPartitions[];
  /** Revoked but not yet confirmed released: the member still holds these. */
  pendingRevocation: TopicPartitions[];
  /** Where the member is heading at the current group epoch. */
  targetAssignment: TopicPartitions[];
  lastHeartbeatAt: number;
}

export interface GroupDescription {
  groupId: string;
  state: GroupState;
  groupEpoch: number;
  members: MemberDescription[];
  offsets: CommittedOffset[];
}

export interface GroupListing {
  groupId: string;
  state: GroupState;
  memberCount: number;
}

export class GroupCoordinator {
  readonly #store: MetaStore;
  readonly #partitionsOf: (topic: string) => number | undefined;
  readonly #sessionTimeoutMs: number;
  readonly #heartbeatIntervalMs: number;
  /**
   * Groups are kept after their last member leaves: the group epoch must never go back, or a
   * member rejoining under an old id could be handed an epoch a zombie of it still carries.
   * One small object per group id ever used.
   */
  readonly #groups = new Map<string, ConsumerGroup>();

  constructor(options: GroupCoordinatorOptions) {
    const sessionTimeoutMs = options.sessionTimeoutMs ?? 30_000;
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 3_000;
    if (!Number.isSafeInteger(sessionTimeoutMs) || sessionTimeoutMs <= 0) {
      throw new SluiceError('INVALID_CONFIG', `sessionTimeoutMs must be a positive integer, got ${String(sessionTimeoutMs)}`);
    }
    if (!Number.isSafeInteger(heartbeatIntervalMs) || heartbeatIntervalMs <= 0 || heartbeatIntervalMs >= sessionTimeoutMs) {
      throw new SluiceError(
        'INVALID_CONFIG',
        `heartbeatIntervalMs must be a positive integer below sessionTimeoutMs (${sessionTimeoutMs}), got ${String(heartbeatIntervalMs)}`,
      );
    }
    this.#store = options.store;
    this.#partitionsOf = options.partitionsOf;
    this.#sessionTimeoutMs = sessionTimeoutMs;
    this.#heartbeatIntervalMs = heartbeatIntervalMs;
  }

  /**
   * Join (epoch 0), leave (epoch -1) or heartbeat. Throws UNKNOWN_MEMBER for a member the group
   * does not have (never joined, left, or expired) and FENCED_MEMBER_EPOCH for an epoch other
   * than the member's current one; either way the client must drop its partitions and rejoin
   * with epoch 0. A refused heartbeat changes nothing, not even the session deadline.
   */
  heartbeat(req: HeartbeatRequest, now: number): HeartbeatResponse {
    const parsed = parseHeartbeat(req);
    if (parsed.memberEpoch === -1) return this.#leave(parsed, now);
    if (parsed.memberEpoch === 0) return this.#join(parsed, now);

    const group = this.#groups.get(parsed.groupId);
    if (group !== undefined) this.#expire(group, now);
    const member = this.#activeMember(group, parsed.groupId, parsed.memberId as string);
    if (parsed.memberEpoch !== member.memberEpoch) throw fenced(parsed.groupId, member.memberId, parsed.memberEpoch, member.memberEpoch);
    member.lastHeartbeatAt = now;
    if (parsed.clientId !== undefined) member.clientId = parsed.clientId;

    let bump = false;
    if (parsed.topics !== undefined && !sameList(parsed.topics, member.subscription)) {
      member.subscription = parsed.topics;
      bump = true;
    }
    const owningGroup = group as ConsumerGroup;
    if (bump || owningGroup.topicsChanged(this.#partitionsOf)) owningGroup.bumpEpoch(this.#partitionsOf);
    owningGroup.reconcileMember(member, parsed.owned);
    return this.#response(member);
  }

  /**
   * Checks that the sender may commit offsets for `partitions` in the group now (the rules in
   * docs/groups.md, "Commit fencing"); throws if not. Separate from commitOffsets so that a
   * transactional commit can validate here and write in its own transaction.
   */
  validateCommit(groupId: string, memberId: string | undefined, memberEpoch: number, partitions: readonly PartitionRef[], now: number): void {
    parseGroupId(groupId);
    const keys = parsePartitionRefs(partitions);
    const group = this.#groups.get(groupId);
    if (group !== undefined) this.#expire(group, now);

    if (memberId === undefined) {
      if (memberEpoch !== -1) {
        throw new SluiceError('INVALID_REQUEST', `a commit without memberId (standalone consumer) must use memberEpoch -1, got ${memberEpoch}`);
      }
      const active = group?.members.size ?? 0;
      if (active > 0) {
        throw new SluiceError(
          'UNKNOWN_MEMBER',
          `group ${JSON.stringify(groupId)} has ${active} active member(s); only they may commit (send memberId and memberEpoch)`,
          { details: { groupId } },
        );
      }
      return;
    }

    const member = this.#activeMember(group, groupId, memberId);
    if (memberEpoch !== member.memberEpoch) throw fenced(groupId, memberId, memberEpoch, member.memberEpoch);
    const owningGroup = group as ConsumerGroup;
    const notHeld = keys.filter((key) => !owningGroup.holds(member, key));
    if (notHeld.length > 0) {
      const list = toTopicPartitions(notHeld);
      throw new SluiceError(
        'NOT_ASSIGNED',
        `member ${JSON.stringify(memberId)} of group ${JSON.stringify(groupId)} does not own ${formatPartitions(list)}; ` +
          'a member may commit only partitions it holds',
        { details: { groupId, memberId, partitions: list } },
      );
    }
  }

  /** validateCommit, then one atomic, durable write through the store. */
  commitOffsets(req: CommitRequest, now: number): void {
    this.validateCommit(req.groupId, req.memberId, req.memberEpoch, req.offsets, now);
    this.#store.commitOffsets(req.groupId, req.offsets, now);
  }

  fetchOffsets(groupId: string, topic?: string): CommittedOffset[] {
    return this.#store.fetchOffsets(groupId, topic);
  }

  /**
   * Overwrites committed offsets (the broker resolves earliest/latest to numbers first). Only
   * for a group without active members, like Kafka: a running member would overwrite the reset
   * with its next commit. Throws GROUP_NOT_EMPTY otherwise.
   */
  resetOffsets(groupId: string, offsets: readonly OffsetToCommit[], now: number): void {
    parseGroupId(groupId);
    const group = this.#groups.get(groupId);
    if (group !== undefined) this.#expire(group, now);
    const active = group?.members.size ?? 0;
    if (active > 0) {
      throw new SluiceError(
        'GROUP_NOT_EMPTY',
        `cannot reset offsets of group ${JSON.stringify(groupId)}: it has ${active} active member(s); ` +
          'stop them (or wait for their sessions to expire) first',
        { details: { groupId, activeMembers: active } },
      );
    }
    this.#store.commitOffsets(groupId, offsets, now);
  }

  /** Removes every member not heard from for more than sessionTimeoutMs; returns their ids. */
  expireSessions(now: number): string[] {
    const expired: string[] = [];
    for (const group of this.#groups.values()) expired.push(...this.#expire(group, now));
    return expired;
  }

  /**
   * Throws GROUP_NOT_FOUND for a group with neither members nor committed offsets. With `now`,
   * overdue members are expired first, so the answer does not depend on the expiry timer.
   */
  describe(groupId: string, now?: number): GroupDescription {
    const group = this.#groups.get(groupId);
    if (group !== undefined && now !== undefined) this.#expire(group, now);
    const offsets = this.#store.fetchOffsets(groupId);
    if ((group === undefined || group.members.size === 0) && offsets.length === 0) {
      throw new SluiceError('GROUP_NOT_FOUND', `no group ${JSON.stringify(groupId)}: it has no members and no committed offsets`, {
        details: { groupId },
      });
    }
    const members = group === undefined ? [] : [...group.members.values()].sort((a, b) => compare(a.memberId, b.memberId));
    return {
      groupId,
      state: group?.state ?? 'empty',
      groupEpoch: group?.epoch ?? 0,
      members: members.map((m) => ({
        memberId: m.memberId,
        clientId: m.clientId,
        memberEpoch: m.memberEpoch,
        subscription: [...m.subscription],
        assignment: toTopicPartitions(m.assigned),
        pendingRevocation: toTopicPartitions(m.pendingRevocation),
        targetAssignment: toTopicPartitions((group as ConsumerGroup).targetOf(m.memberId)),
        lastHeartbeatAt: m.lastHeartbeatAt,
      })),
      offsets,
    };
  }

  /** Groups with members or committed offsets, sorted by id. `now`: as in describe. */
  listGroups(now?: number): GroupListing[] {
    if (now !== undefined) this.expireSessions(now);
    const ids = new Set(this.#store.listOffsetGroups());
    for (const group of this.#groups.values()) if (group.members.size > 0) ids.add(group.groupId);
    return [...ids].sort(compare).map((groupId) => {
      const group = this.#groups.get(groupId);
      return { groupId, state: group?.state ?? 'empty', memberCount: group?.members.size ?? 0 };
    });
  }

  #join(req: ParsedHeartbeat, now: number): HeartbeatResponse {
    let group = this.#groups.get(req.groupId);
    if (group === undefined) this.#groups.set(req.groupId, (group = new ConsumerGroup(req.groupId)));
    this.#expire(group, now);
    const memberId = req.memberId ?? randomUUID();
    // A join under an id the group still has is a new incarnation of that member: it owns
    // nothing (a client drops its partitions before rejoining), so the old incarnation's
    // partitions are freed, and the epoch bump below fences whatever the old one still sends.
    group.removeMember(memberId);
    const member = group.addMember(memberId, req.clientId ?? '', req.topics ?? [], now);
    group.bumpEpoch(this.#partitionsOf);
    // ownedPartitions on a join are ignored: a joining member owns nothing by definition.
    group.reconcileMember(member, undefined);
    return this.#response(member);
  }

  #leave(req: ParsedHeartbeat, now: number): HeartbeatResponse {
    const memberId = req.memberId as string;
    const group = this.#groups.get(req.groupId);
    if (group !== undefined) {
      this.#expire(group, now);
      // Leaving is idempotent: a member that already expired or left gets the same answer.
      if (group.members.has(memberId)) {
        group.removeMember(memberId);
        group.bumpEpoch(this.#partitionsOf);
      }
    }
    return { memberId, memberEpoch: -1, heartbeatIntervalMs: this.#heartbeatIntervalMs, assignment: [] };
  }

  #expire(group: ConsumerGroup, now: number): string[] {
    const expired = group.expiredMembers(now, this.#sessionTimeoutMs);
    if (expired.length === 0) return expired;
    for (const memberId of expired) group.removeMember(memberId);
    group.bumpEpoch(this.#partitionsOf);
    return expired;
  }

  #activeMember(group: ConsumerGroup | undefined, groupId: string, memberId: string): MemberState {
    const member = group?.members.get(memberId);
    if (member === undefined) {
      throw new SluiceError(
        'UNKNOWN_MEMBER',
        `group ${JSON.stringify(groupId)} has no member ${JSON.stringify(memberId)} (never joined, left, or its session expired); rejoin with memberEpoch 0`,
        { details: { groupId, memberId } },
      );
    }
    return member;
  }

  #response(member: MemberState): HeartbeatResponse {
    return {
      memberId: member.memberId,
      memberEpoch: member.memberEpoch,
      heartbeatIntervalMs: this.#heartbeatIntervalMs,
      assignment: toTopicPartitions(member.assigned),
    };
  }
}

function fenced(groupId: string, memberId: string, received: number, current: number): SluiceError {
  const relation = received > current ? 'newer' : 'older';
  return new SluiceError(
    'FENCED_MEMBER_EPOCH',
    `member ${JSON.stringify(memberId)} of group ${JSON.stringify(groupId)} sent epoch ${received}, ${relation} than its current one; ` +
      'drop all partitions and rejoin with memberEpoch 0',
    { details: { groupId, memberId, memberEpoch: received } },
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

function formatPartitions(list: readonly TopicPartitions[]): string {
  return list.map(({ topic, partitions }) => `${topic}[${partitions.join(',')}]`).join(', ');
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
