import type { PartitionKey } from './partitions.js';

/**
 * One member of a group and its reconciliation towards the group's target assignment
 * (KIP-848's member state machine, simplified; docs/groups.md tells the whole protocol).
 *
 * A member "holds" a partition from the response that gives it the partition until the
 * coordinator knows the member has stopped consuming it: `assigned` ∪ `pendingRevocation`.
 * The one invariant everything here protects: no partition is held by two members at once.
 * `PartitionOwners` is the group-wide index of holders that makes it checkable in O(1).
 */
export interface MemberState {
  readonly memberId: string;
  clientId: string;
  /** Sorted, without duplicates. */
  subscription: readonly string[];
  /** Advances (never decreases) to the group epoch once the member has revoked what it must. */
  memberEpoch: number;
  lastHeartbeatAt: number;
  /** What the last response told the member it owns. */
  readonly assigned: Set<PartitionKey>;
  /** Taken out of the member's assignment, not yet confirmed released. The member still holds them. */
  readonly pendingRevocation: Set<PartitionKey>;
}

export function newMember(memberId: string, clientId: string, subscription: readonly string[], now: number): MemberState {
  return {
    memberId,
    clientId,
    subscription,
    memberEpoch: 0,
    lastHeartbeatAt: now,
    assigned: new Set(),
    pendingRevocation: new Set(),
  };
}

/** Group-wide index: partition -> the member holding it. */
export class PartitionOwners {
  readonly #owner = new Map<PartitionKey, string>();

  ownerOf(key: PartitionKey): string | undefined {
    return this.#owner.get(key);
  }

  claim(key: PartitionKey, memberId: string): void {
    const owner = this.#owner.get(key);
    // Reaching this is a coordinator bug; failing loudly beats two consumers on one partition.
    if (owner !== undefined && owner !== memberId) throw new Error(`partition ${key} is held by ${owner}, not free for ${memberId}`);
    this.#owner.set(key, memberId);
  }

  release(key: PartitionKey, memberId: string): void {
    if (this.#owner.get(key) === memberId) this.#owner.delete(key);
  }
}

/**
 * The member reported what it owns: a partition pending revocation that is no longer in the
 * report has been released and becomes free for its next owner. Only pending revocations are
 * released this way: a partition in `assigned` missing from the report may simply not have
 * been picked up yet (the response that gave it may still be on its way).
 */
export function confirmRevocations(member: MemberState, owned: ReadonlySet<PartitionKey>, owners: PartitionOwners): void {
  for (const key of member.pendingRevocation) {
    if (!owned.has(key)) {
      member.pendingRevocation.delete(key);
      owners.release(key, member.memberId);
    }
  }
}

/** Drops everything the member holds (it left, expired or rejoined). */
export function releaseAll(member: MemberState, owners: PartitionOwners): void {
  for (const key of member.assigned) owners.release(key, member.memberId);
  for (const key of member.pendingRevocation) owners.release(key, member.memberId);
  member.assigned.clear();
  member.pendingRevocation.clear();
}

/**
 * Moves the member one step towards `target` (its share of the target assignment at
 * `groupEpoch`). Revoke before reassign:
 * 1. Behind the group epoch: partitions it holds but no longer targets become pending revocation
 *    (and pending ones that are targeted again go back to assigned: it never stopped holding
 *    them). While anything is pending, the member stays at its epoch and is told its assignment
 *    without the revoked partitions.
 * 2. Nothing pending: the member's epoch becomes the group epoch, and it is given each partition
 *    of its target that no other member holds. Partitions still held elsewhere follow on a later
 *    heartbeat, once their holder has released them (same epoch: no fencing is needed to add).
 */
export function reconcile(member: MemberState, target: ReadonlySet<PartitionKey>, groupEpoch: number, owners: PartitionOwners): void {
  if (member.memberEpoch < groupEpoch) {
    for (const key of member.assigned) {
      if (!target.has(key)) {
        member.assigned.delete(key);
        member.pendingRevocation.add(key);
      }
    }
    for (const key of member.pendingRevocation) {
      if (target.has(key)) {
        member.pendingRevocation.delete(key);
        member.assigned.add(key);
      }
    }
    if (member.pendingRevocation.size > 0) return;
    member.memberEpoch = groupEpoch;
  }
  for (const key of target) {
    if (!member.assigned.has(key) && owners.ownerOf(key) === undefined) {
      owners.claim(key, member.memberId);
      member.assigned.add(key);
    }
  }
}

/** True when the member runs exactly its target at the group epoch. */
export function isReconciled(member: MemberState, target: ReadonlySet<PartitionKey>, groupEpoch: number): boolean {
  if (member.memberEpoch !== groupEpoch || member.pendingRevocation.size > 0 || member.assigned.size !== target.size) return false;
  for (const key of target) if (!member.assigned.has(key)) return false;
  return true;
}
