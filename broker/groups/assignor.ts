/**
 * The server-side assignor: a pure function from (members, their subscriptions, partition
 * counts, the current target assignment) to the next target assignment. No clocks, no I/O.
 *
 * Guarantees (test/unit/broker/groups/assignor.test.ts checks each as a property):
 * 1. Complete and exclusive: every partition of every topic with at least one subscriber is
 *    assigned to exactly one member, and only to a member subscribed to its topic.
 * 2. Balanced per topic: among the subscribers of a topic, partition counts differ by at most 1.
 *    Per topic rather than overall, because with different subscriptions an overall bound does
 *    not exist in general, while per topic it always does and is easy to reason about. To keep
 *    the total spread even too (many one-partition topics must not all land on one member), the
 *    "+1" places of each topic go first to the members with the fewest partitions so far.
 * 3. Sticky: a member keeps every partition it currently has, up to its new per-topic quota.
 *    The "+1" places go first to the members that already hold the most, so an assignment that
 *    is already balanced is returned unchanged, and a member leaving moves only its partitions.
 * 4. Deterministic: the result depends only on the input, not on iteration order of the input.
 */

export interface AssignorMember {
  memberId: string;
  /** Topic names; duplicates are ignored. */
  subscription: readonly string[];
}

/** topic -> partitions (sorted ascending). */
export type Assignment = Map<string, number[]>;

export function assignPartitions(
  members: readonly AssignorMember[],
  partitionCounts: ReadonlyMap<string, number>,
  current: ReadonlyMap<string, ReadonlyMap<string, readonly number[]>>,
): Map<string, Assignment> {
  const sorted = [...members].sort((a, b) => compareStrings(a.memberId, b.memberId));
  const subscriptions = new Map(sorted.map((m) => [m.memberId, new Set(m.subscription)]));
  const result = new Map<string, Assignment>(sorted.map((m) => [m.memberId, new Map()]));
  const load = new Map<string, number>(sorted.map((m) => [m.memberId, 0]));

  const topics = [...new Set(sorted.flatMap((m) => m.subscription))].sort(compareStrings);
  for (const topic of topics) {
    const count = partitionCounts.get(topic) ?? 0;
    if (count <= 0) continue;
    const subscribers = sorted.map((m) => m.memberId).filter((id) => subscriptions.get(id)?.has(topic) === true);
    const assigned = assignTopic(subscribers, count, topic, current, load);
    for (const [memberId, partitions] of assigned) {
      if (partitions.length === 0) continue;
      result.get(memberId)?.set(topic, partitions);
      load.set(memberId, (load.get(memberId) ?? 0) + partitions.length);
    }
  }
  return result;
}

/** Assigns partitions 0..count-1 of one topic among `subscribers` (sorted by id, non-empty). */
function assignTopic(
  subscribers: readonly string[],
  count: number,
  topic: string,
  current: ReadonlyMap<string, ReadonlyMap<string, readonly number[]>>,
  load: ReadonlyMap<string, number>,
): Map<string, number[]> {
  // What each subscriber holds now and may keep. A partition claimed twice in a malformed
  // `current` goes to the first claimant in id order; partitions past `count` are dropped.
  const claimed = new Set<number>();
  const held = new Map<string, number[]>();
  for (const memberId of subscribers) {
    const mine: number[] = [];
    const previous = [...(current.get(memberId)?.get(topic) ?? [])].sort((a, b) => a - b);
    for (const partition of previous) {
      if (Number.isInteger(partition) && partition >= 0 && partition < count && !claimed.has(partition)) {
        claimed.add(partition);
        mine.push(partition);
      }
    }
    held.set(memberId, mine);
  }

  const base = Math.floor(count / subscribers.length);
  const extra = count % subscribers.length;
  // Who gets the `extra` places of base+1: most held first (stickiness), then least loaded
  // overall (spread), then id (determinism).
  const byPriority = [...subscribers].sort(
    (a, b) =>
      (held.get(b)?.length ?? 0) - (held.get(a)?.length ?? 0) ||
      (load.get(a) ?? 0) - (load.get(b) ?? 0) ||
      compareStrings(a, b),
  );

  const result = new Map<string, number[]>();
  const kept = new Set<number>();
  byPriority.forEach((memberId, rank) => {
    const quota = base + (rank < extra ? 1 : 0);
    const keep = (held.get(memberId) ?? []).slice(0, quota);
    for (const partition of keep) kept.add(partition);
    result.set(memberId, keep);
  });

  // Hand out the rest, lowest partition first, to members below their quota in priority order.
  // The free partitions are exactly the sum of the shortfalls, so everything is placed.
  let next = 0;
  byPriority.forEach((memberId, rank) => {
    const quota = base + (rank < extra ? 1 : 0);
    const mine = result.get(memberId) ?? [];
    while (mine.length < quota) {
      while (kept.has(next)) next++;
      mine.push(next++);
    }
    mine.sort((a, b) => a - b);
  });
  return result;
}

/** Code-unit order, independent of locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
