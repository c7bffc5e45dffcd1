import { assignPartitions, type Assignment } from './assignor.js';
import {
  PartitionOwners,
  confirmRevocations,
  isReconciled,
  newMember,
  reconcile,
  releaseAll,
  type MemberState,
} from './member-state.js';
import { keysOfAssignment, type PartitionKey } from './partitions.js';

export type GroupState = 'empty' | 'stable' | 'reconciling';

/**
 * The in-memory state of one consumer group: members, the group epoch, the target assignment
 * computed at that epoch, and who holds which partition. It enforces no request rules (that is
 * coordinator.ts); it applies membership changes and keeps the target assignment current.
 *
 * The group epoch is bumped, and a new target computed, whenever the input of the assignor
 * changes: a member joins, leaves or expires, a subscription changes, or a subscribed topic's
 * partition count changes. The target is always the one for the current epoch (the assignor is
 * synchronous), so the KIP-848 "assignment epoch" is the group epoch here.
 */
export class ConsumerGroup {
  readonly groupId: string;
  readonly members = new Map<string, MemberState>();
  readonly owners = new PartitionOwners();
  #epoch = 0;
  #target = new Map<string, Assignment>();
  #targetKeys = new Map<string, Set<PartitionKey>>();
  /** Partition counts of the subscribed topics the current target was computed with. */
  #partitionCounts = new Map<string, number>();

  constructor(groupId: string) {
    this.groupId = groupId;
  }

  get epoch(): number {
    return this.#epoch;
  }

  targetOf(memberId: string): ReadonlySet<PartitionKey> {
    return this.#targetKeys.get(memberId) ?? EMPTY;
  }

  get state(): GroupState {
    if (this.members.size === 0) return 'empty';
    for (const member of this.members.values()) {
      if (!isReconciled(member, this.targetOf(member.memberId), this.#epoch)) return 'reconciling';
    }
    return 'stable';
  }

  /** Adds a member with nothing assigned. The caller bumps the epoch. */
  addMember(memberId: string, clientId: string, subscription: readonly string[], now: number): MemberState {
    const member = newMember(memberId, clientId, subscription, now);
    this.members.set(memberId, member);
    return member;
  }

  /** Removes a member and frees everything it held. The caller bumps the epoch. */
  removeMember(memberId: string): void {
    const member = this.members.get(memberId);
    if (member === undefined) return;
    releaseAll(member, this.owners);
    this.members.delete(memberId);
  }

  /** Members whose last heartbeat is more than `sessionTimeoutMs` before `now`. */
  expiredMembers(now: number, sessionTimeoutMs: number): string[] {
    const expired: string[] = [];
    for (const member of this.members.values()) {
      if (now - member.lastHeartbeatAt > sessionTimeoutMs) expired.push(member.memberId);
    }
    return expired;
  }

  /** True if a subscribed topic's partition count differs from the one the target was computed with. */
  topicsChanged(partitionsOf: (topic: string) => number | undefined): boolean {
    // The keys are the subscribed topics: every subscription change bumps the epoch, which
    // recomputes them, so checking the counts is enough (one lookup per topic, not per member).
    for (const [topic, count] of this.#partitionCounts) {
      if (Math.max(0, partitionsOf(topic) ?? 0) !== count) return true;
    }
    return false;
  }

  /** Starts a new group epoch: recomputes the target from the current members and topics. */
  bumpEpoch(partitionsOf: (topic: string) => number | undefined): void {
    this.#epoch++;
    this.#partitionCounts = this.#subscribedCounts(partitionsOf);
    const members = [...this.members.values()].map((m) => ({ memberId: m.memberId, subscription: m.subscription }));
    // Sticky against the previous target, not against what members hold right now: the target
    // is where the group is heading, and members mid-revocation should not pull it back.
    this.#target = assignPartitions(members, this.#partitionCounts, this.#target);
    this.#targetKeys = new Map([...this.#target].map(([id, assignment]) => [id, keysOfAssignment(assignment)]));
  }

  /** Applies one member's heartbeat to its reconciliation: confirmed releases, then one step. */
  reconcileMember(member: MemberState, owned: ReadonlySet<PartitionKey> | undefined): void {
    if (owned !== undefined) confirmRevocations(member, owned, this.owners);
    reconcile(member, this.targetOf(member.memberId), this.#epoch, this.owners);
  }

  /** Partitions the member holds: assigned, or revoked but not yet released. */
  holds(member: MemberState, key: PartitionKey): boolean {
    return member.assigned.has(key) || member.pendingRevocation.has(key);
  }

  #subscribedCounts(partitionsOf: (topic: string) => number | undefined): Map<string, number> {
    const counts = new Map<string, number>();
    for (const member of this.members.values()) {
      for (const topic of member.subscription) {
        if (!counts.has(topic)) counts.set(topic, Math.max(0, partitionsOf(topic) ?? 0));
      }
    }
    return counts;
  }
}

const EMPTY: ReadonlySet<PartitionKey> = new Set();
