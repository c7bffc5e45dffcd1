import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignPartitions, type AssignorMember, type Assignment } from '../../../../broker/groups/assignor.js';

const TOPICS = ['a', 'b', 'c', 'd'] as const;
const PROPERTY = { seed: 848, numRuns: 200 };

type Previous = Map<string, Map<string, number[]>>;

const countsArb = fc
  .tuple(...TOPICS.map(() => fc.integer({ min: 0, max: 12 })))
  .map((counts) => new Map(TOPICS.map((t, i) => [t, counts[i] ?? 0])));

const membersArb = fc
  .uniqueArray(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 7 })
  .chain((ids) =>
    fc.tuple(...ids.map((id) => fc.subarray([...TOPICS], { minLength: 1 }).map((subscription) => ({ memberId: `m${id}`, subscription })))),
  );

/** Arbitrary, possibly nonsensical previous assignments: duplicates, out-of-range, strangers. */
const garbagePreviousArb: fc.Arbitrary<Previous> = fc
  .array(
    fc.tuple(
      fc.integer({ min: 0, max: 11 }).map((i) => `m${i}`),
      fc.constantFrom(...TOPICS, 'zz'),
      fc.array(fc.integer({ min: -1, max: 15 }), { maxLength: 6 }),
    ),
    { maxLength: 12 },
  )
  .map((entries) => {
    const prev: Previous = new Map();
    for (const [member, topic, partitions] of entries) {
      const topics = prev.get(member) ?? new Map<string, number[]>();
      topics.set(topic, partitions);
      prev.set(member, topics);
    }
    return prev;
  });

function subscribersOf(members: readonly AssignorMember[], topic: string): string[] {
  return members.filter((m) => m.subscription.includes(topic)).map((m) => m.memberId);
}

function partitionsOf(result: Map<string, Assignment>, memberId: string, topic: string): number[] {
  return result.get(memberId)?.get(topic) ?? [];
}

function checkCompleteExclusiveBalanced(members: readonly AssignorMember[], counts: Map<string, number>, result: Map<string, Assignment>): void {
  expect([...result.keys()].sort()).toEqual(members.map((m) => m.memberId).sort());
  for (const [memberId, assignment] of result) {
    const member = members.find((m) => m.memberId === memberId);
    for (const [topic, partitions] of assignment) {
      expect(member?.subscription, `${memberId} got ${topic} without subscribing`).toContain(topic);
      expect(partitions.length).toBeGreaterThan(0);
      expect(partitions).toEqual([...partitions].sort((x, y) => x - y));
    }
  }
  for (const topic of TOPICS) {
    const subscribers = subscribersOf(members, topic);
    const count = counts.get(topic) ?? 0;
    const owners = new Map<number, string>();
    for (const memberId of subscribers) {
      for (const p of partitionsOf(result, memberId, topic)) {
        expect(owners.has(p), `${topic}/${p} assigned twice`).toBe(false);
        owners.set(p, memberId);
      }
    }
    const expected = subscribers.length === 0 ? 0 : count;
    expect(owners.size).toBe(expected);
    for (const p of owners.keys()) expect(p >= 0 && p < count).toBe(true);
    if (subscribers.length > 0) {
      const sizes = subscribers.map((id) => partitionsOf(result, id, topic).length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  }
}

describe('assignPartitions', () => {
  it('assigns every subscribed partition exactly once, to a subscriber, balanced per topic', () => {
    fc.assert(
      fc.property(membersArb, countsArb, garbagePreviousArb, (members, counts, prev) => {
        checkCompleteExclusiveBalanced(members, counts, assignPartitions(members, counts, prev));
      }),
      PROPERTY,
    );
  });

  it('is deterministic whatever the order of members and subscriptions', () => {
    fc.assert(
      fc.property(membersArb, countsArb, garbagePreviousArb, (members, counts, prev) => {
        const shuffled = [...members].reverse().map((m) => ({ ...m, subscription: [...m.subscription].reverse() }));
        expect(assignPartitions(shuffled, counts, prev)).toEqual(assignPartitions(members, counts, prev));
      }),
      PROPERTY,
    );
  });

  it('returns an assignment unchanged when nothing changed (no movement)', () => {
    fc.assert(
      fc.property(membersArb, countsArb, garbagePreviousArb, (members, counts, prev) => {
        const first = assignPartitions(members, counts, prev);
        expect(assignPartitions(members, counts, first)).toEqual(first);
      }),
      PROPERTY,
    );
  });

  it('when members leave, the others keep everything they had', () => {
    fc.assert(
      fc.property(membersArb, countsArb, fc.integer({ min: 0, max: 6 }), (members, counts, seedLeavers) => {
        fc.pre(members.length > 1);
        const before = assignPartitions(members, counts, new Map());
        const remaining = members.filter((_, i) => i % members.length !== seedLeavers % members.length);
        const after = assignPartitions(remaining, counts, before);
        checkCompleteExclusiveBalanced(remaining, counts, after);
        for (const m of remaining) {
          for (const [topic, partitions] of before.get(m.memberId) ?? new Map<string, number[]>()) {
            for (const p of partitions) expect(partitionsOf(after, m.memberId, topic)).toContain(p);
          }
        }
      }),
      PROPERTY,
    );
  });

  it('moves the fewest partitions possible when members join', () => {
    fc.assert(
      fc.property(membersArb, membersArb, countsArb, (before, joiners, counts) => {
        const ids = new Set(before.map((m) => m.memberId));
        const after = [...before, ...joiners.filter((m) => !ids.has(m.memberId))];
        const previous = assignPartitions(before, counts, new Map());
        const next = assignPartitions(after, counts, previous);
        checkCompleteExclusiveBalanced(after, counts, next);
        for (const topic of TOPICS) {
          const subscribers = subscribersOf(after, topic);
          if (subscribers.length === 0) continue;
          const count = counts.get(topic) ?? 0;
          const base = Math.floor(count / subscribers.length);
          // Lower bound on movement: whatever a member holds beyond base+1, or beyond base for all
          // but `count % n` members, must move. Greedy: the +1 places to the largest holders.
          const held = subscribers.map((id) => partitionsOf(previous, id, topic).length).sort((x, y) => y - x);
          const mustMove = held.reduce((sum, h, rank) => sum + Math.max(0, h - (base + (rank < count % subscribers.length ? 1 : 0))), 0);
          const moved = subscribers.reduce(
            (sum, id) => sum + partitionsOf(previous, id, topic).filter((p) => !partitionsOf(next, id, topic).includes(p)).length,
            0,
          );
          expect(moved).toBe(mustMove);
        }
      }),
      PROPERTY,
    );
  });

  it('spreads many one-partition topics across members instead of piling them on one', () => {
    const topics = ['t0', 't1', 't2', 't3', 't4', 't5'];
    const members = ['x', 'y', 'z'].map((memberId) => ({ memberId, subscription: topics }));
    const result = assignPartitions(members, new Map(topics.map((t) => [t, 1])), new Map());
    expect(members.map((m) => result.get(m.memberId)?.size)).toEqual([2, 2, 2]);
  });

  it('gives nothing for topics that do not exist yet and handles no members', () => {
    const result = assignPartitions([{ memberId: 'x', subscription: ['later'] }], new Map(), new Map());
    expect(result).toEqual(new Map([['x', new Map()]]));
    expect(assignPartitions([], new Map([['a', 3]]), new Map())).toEqual(new Map());
  });
});
