import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasCode, type ErrorName } from '../../../../client/protocol/errors.js';
import { GroupCoordinator, type HeartbeatResponse } from '../../../../broker/groups/coordinator.js';
import type { MetaStore } from '../../../../broker/meta/meta-store.js';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';

const NO_CONFIG = { retentionMs: null, retentionBytes: null, segmentBytes: null };
const G = 'g1';

let store: MetaStore;
let partitions: Map<string, number>;
let coordinator: GroupCoordinator;

beforeEach(() => {
  store = openMetaStore(':memory:');
  partitions = new Map([
    ['orders', 4],
    ['audit', 2],
  ]);
  for (const [name, count] of partitions) store.createTopic({ name, partitions: count, config: NO_CONFIG, createdAt: 0 });
  coordinator = new GroupCoordinator({ store, partitionsOf: (t) => partitions.get(t) });
});
afterEach(() => store.close());

function expectError(fn: () => unknown, code: ErrorName): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(hasCode(thrown, code), `expected ${code}, got ${String(thrown)}`).toBe(true);
}

function join(memberId: string, topics: string[] = ['orders'], now = 0): HeartbeatResponse {
  return coordinator.heartbeat({ groupId: G, memberId, memberEpoch: 0, topics }, now);
}

/** A well-behaved client's heartbeat: its epoch, and it owns what it was last told. */
function beat(last: HeartbeatResponse, now = 0): HeartbeatResponse {
  return coordinator.heartbeat(
    { groupId: G, memberId: last.memberId, memberEpoch: last.memberEpoch, ownedPartitions: last.assignment },
    now,
  );
}

function owned(response: HeartbeatResponse, topic = 'orders'): number[] {
  return response.assignment.find((a) => a.topic === topic)?.partitions ?? [];
}

describe('join and leave', () => {
  it('a first member gets every partition at group epoch 1', () => {
    const a = coordinator.heartbeat({ groupId: G, memberEpoch: 0, topics: ['orders', 'audit'], clientId: 'svc' }, 0);
    expect(a.memberId).toMatch(/^[0-9a-f-]{36}$/);
    expect(a).toMatchObject({ memberEpoch: 1, heartbeatIntervalMs: 3000 });
    expect(a.assignment).toEqual([
      { topic: 'audit', partitions: [0, 1] },
      { topic: 'orders', partitions: [0, 1, 2, 3] },
    ]);
    expect(coordinator.describe(G)).toMatchObject({ state: 'stable', groupEpoch: 1 });
    expect(coordinator.describe(G).members[0]).toMatchObject({ clientId: 'svc', subscription: ['audit', 'orders'] });
  });

  it('uses a client-supplied member id', () => {
    expect(join('alice').memberId).toBe('alice');
  });

  it('requires a subscription on join and a member id afterwards', () => {
    expectError(() => coordinator.heartbeat({ groupId: G, memberEpoch: 0 }, 0), 'INVALID_REQUEST');
    expectError(() => coordinator.heartbeat({ groupId: G, memberEpoch: 3 }, 0), 'INVALID_REQUEST');
    expectError(() => coordinator.heartbeat({ groupId: G, memberEpoch: -2, memberId: 'x' }, 0), 'INVALID_REQUEST');
    expectError(() => coordinator.heartbeat({ groupId: '', memberEpoch: 0, topics: [] }, 0), 'INVALID_REQUEST');
    expectError(() => coordinator.heartbeat({ groupId: G, memberEpoch: 0, topics: ['bad topic'] }, 0), 'INVALID_TOPIC');
  });

  it('leaving returns epoch -1, frees the partitions at once and bumps the group epoch', () => {
    const a = join('a');
    const b = join('b');
    const leave = coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: -1 }, 0);
    expect(leave).toEqual({ memberId: 'a', memberEpoch: -1, heartbeatIntervalMs: 3000, assignment: [] });
    expect(coordinator.describe(G).groupEpoch).toBe(3);
    // b can take a's partitions right away: nobody holds them any more.
    const b2 = beat(beat(b));
    expect(owned(b2)).toEqual([0, 1, 2, 3]);
    expect(b2.memberEpoch).toBe(3);
    expect(a.memberEpoch).toBe(1);
    // Leaving twice (or after expiry) is harmless.
    expect(coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: -1 }, 0).memberEpoch).toBe(-1);
    expect(coordinator.heartbeat({ groupId: 'other', memberId: 'a', memberEpoch: -1 }, 0).memberEpoch).toBe(-1);
  });

  it('a subscription to a topic that does not exist yet is assigned once it appears', () => {
    const a = join('a', ['later']);
    expect(a.assignment).toEqual([]);
    partitions.set('later', 2);
    const a2 = beat(a);
    expect(a2.memberEpoch).toBe(2);
    expect(a2.assignment).toEqual([{ topic: 'later', partitions: [0, 1] }]);
  });
});

describe('revoke before reassign', () => {
  it('moves a partition to a new member only after its holder confirms the release', () => {
    let a = join('a');
    expect(owned(a)).toEqual([0, 1, 2, 3]);

    let b = join('b'); // group epoch 2; b's target is two of a's partitions
    expect(b.memberEpoch).toBe(2);
    expect(owned(b)).toEqual([]); // still held by a
    const target = coordinator.describe(G).members.find((m) => m.memberId === 'b')?.targetAssignment;
    expect(target).toEqual([{ topic: 'orders', partitions: [2, 3] }]);

    // a learns of the revocation: still epoch 1, assignment without the revoked partitions.
    a = beat(a);
    expect(a.memberEpoch).toBe(1);
    expect(owned(a)).toEqual([0, 1]);
    expect(coordinator.describe(G).members.find((m) => m.memberId === 'a')?.pendingRevocation).toEqual([
      { topic: 'orders', partitions: [2, 3] },
    ]);
    expect(coordinator.describe(G).state).toBe('reconciling');

    // a has not confirmed yet: b still gets nothing.
    b = beat(b);
    expect(owned(b)).toEqual([]);

    // A heartbeat without ownedPartitions confirms nothing.
    a = coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch }, 0);
    expect(a.memberEpoch).toBe(1);

    // a confirms (its report no longer lists 2 and 3): it reaches epoch 2, and b gets them.
    a = beat(a);
    expect(a.memberEpoch).toBe(2);
    b = beat(b);
    expect(owned(b)).toEqual([2, 3]);
    expect(b.memberEpoch).toBe(2);
    expect(coordinator.describe(G).state).toBe('stable');
  });

  it('a member that still reports a revoked partition keeps holding it', () => {
    let a = join('a');
    let b = join('b');
    a = beat(a); // told to revoke 2,3
    coordinator.heartbeat(
      { groupId: G, memberId: 'a', memberEpoch: 1, ownedPartitions: [{ topic: 'orders', partitions: [0, 1, 2, 3] }] },
      0,
    );
    b = beat(b);
    expect(owned(b)).toEqual([]);
    expect(a.memberEpoch).toBe(1);
  });

  it('an expired holder releases its partitions without confirming', () => {
    join('a', ['orders'], 0);
    let b = join('b', ['orders'], 20_000);
    expect(coordinator.expireSessions(30_000)).toEqual([]);
    expect(coordinator.expireSessions(30_001)).toEqual(['a']);
    b = beat(b, 30_001);
    expect(owned(b)).toEqual([0, 1, 2, 3]);
  });

  it('a partition revoked and then targeted again stays with its holder', () => {
    let a = join('a');
    join('b');
    a = beat(a); // revoking 2,3 for b
    coordinator.heartbeat({ groupId: G, memberId: 'b', memberEpoch: -1 }, 0); // b leaves: target is all of a's again
    a = beat(a);
    expect(owned(a)).toEqual([0, 1, 2, 3]);
    expect(a.memberEpoch).toBe(3);
  });

  it('changing the subscription bumps the epoch and revokes the dropped topic', () => {
    let a = join('a', ['orders', 'audit']);
    a = coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, topics: ['audit'] }, 0);
    expect(a.memberEpoch).toBe(1);
    expect(a.assignment).toEqual([{ topic: 'audit', partitions: [0, 1] }]);
    a = beat(a);
    expect(a.memberEpoch).toBe(2);
    // Same subscription again (any order, duplicates): no bump.
    a = coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: 2, topics: ['audit', 'audit'] }, 0);
    expect(coordinator.describe(G).groupEpoch).toBe(2);
  });

  it('more partitions on a subscribed topic bump the epoch and get assigned', () => {
    let a = join('a');
    partitions.set('orders', 6);
    a = beat(a);
    expect(a.memberEpoch).toBe(2);
    expect(owned(a)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe('fencing', () => {
  it('refuses an older or newer epoch with FENCED_MEMBER_EPOCH and changes nothing', () => {
    let a = join('a');
    join('b');
    a = beat(beat(a)); // a at epoch 2
    expect(a.memberEpoch).toBe(2);
    expectError(() => coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: 1 }, 0), 'FENCED_MEMBER_EPOCH');
    expectError(() => coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: 7 }, 0), 'FENCED_MEMBER_EPOCH');
    expect(beat(a)).toEqual(a);
  });

  it('a refused heartbeat does not keep the session alive', () => {
    join('a', ['orders'], 0);
    expectError(() => coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: 5 }, 20_000), 'FENCED_MEMBER_EPOCH');
    expect(coordinator.expireSessions(30_001)).toEqual(['a']);
  });

  it('refuses unknown, left and expired members with UNKNOWN_MEMBER', () => {
    expectError(() => coordinator.heartbeat({ groupId: G, memberId: 'ghost', memberEpoch: 1 }, 0), 'UNKNOWN_MEMBER');
    const a = join('a', ['orders'], 0);
    // Expired even though no timer ran: the heartbeat itself expires overdue members first.
    expectError(() => beat(a, 30_001), 'UNKNOWN_MEMBER');
    expect(coordinator.listGroups()).toEqual([]);
    const b = join('b', ['orders'], 40_000);
    coordinator.heartbeat({ groupId: G, memberId: 'b', memberEpoch: -1 }, 40_000);
    expectError(() => beat(b, 40_000), 'UNKNOWN_MEMBER');
  });

  it('rejoining under the same id frees the old incarnation and fences it', () => {
    const old = join('a', ['orders'], 0);
    const fresh = join('a', ['orders'], 1);
    expect(fresh.memberEpoch).toBeGreaterThan(old.memberEpoch);
    expect(owned(fresh)).toEqual([0, 1, 2, 3]);
    expectError(() => beat(old, 2), 'FENCED_MEMBER_EPOCH');
    expectError(
      () => coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: old.memberEpoch, offsets: [{ topic: 'orders', partition: 0, offset: 1 }] }, 2),
      'FENCED_MEMBER_EPOCH',
    );
  });

  it('epochs never go back, even after the group empties', () => {
    const a = join('a');
    coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: -1 }, 0);
    expect(join('a').memberEpoch).toBeGreaterThan(a.memberEpoch);
  });
});

describe('commits', () => {
  const offset = (partition: number, value = 10) => ({ topic: 'orders', partition, offset: value });

  it('a member commits the partitions it holds at its current epoch', () => {
    const a = join('a');
    coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, offsets: [offset(0, 5), offset(3, 7)] }, 100);
    expect(coordinator.fetchOffsets(G).map((o) => [o.partition, o.offset, o.committedAt])).toEqual([
      [0, 5, 100],
      [3, 7, 100],
    ]);
  });

  it('refuses a stale epoch with FENCED_MEMBER_EPOCH and writes nothing', () => {
    let a = join('a');
    join('b');
    a = beat(beat(a));
    expectError(() => coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: 1, offsets: [offset(0)] }, 0), 'FENCED_MEMBER_EPOCH');
    expect(coordinator.fetchOffsets(G)).toEqual([]);
  });

  it('refuses partitions the member does not hold with NOT_ASSIGNED', () => {
    const a = join('a', ['audit']);
    expectError(() => coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, offsets: [offset(0)] }, 0), 'NOT_ASSIGNED');
    expect(coordinator.fetchOffsets(G)).toEqual([]);
  });

  it('allows committing a partition pending revocation (commit, then release)', () => {
    let a = join('a');
    join('b');
    a = beat(a); // 2 and 3 pending revocation; a still at epoch 1
    expect(owned(a)).toEqual([0, 1]);
    coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, offsets: [offset(2), offset(3)] }, 0);
    a = beat(a); // released
    expectError(() => coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, offsets: [offset(2)] }, 0), 'NOT_ASSIGNED');
  });

  it('refuses commits from unknown or expired members', () => {
    const a = join('a', ['orders'], 0);
    expectError(() => coordinator.commitOffsets({ groupId: G, memberId: 'zz', memberEpoch: 1, offsets: [offset(0)] }, 0), 'UNKNOWN_MEMBER');
    expectError(() => coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, offsets: [offset(0)] }, 30_001), 'UNKNOWN_MEMBER');
  });

  it('accepts standalone commits (no member id, epoch -1) only while the group has no members', () => {
    coordinator.commitOffsets({ groupId: G, memberEpoch: -1, offsets: [offset(1, 3)] }, 0);
    expect(coordinator.fetchOffsets(G)).toHaveLength(1);
    expectError(() => coordinator.commitOffsets({ groupId: G, memberEpoch: 0, offsets: [offset(1)] }, 0), 'INVALID_REQUEST');
    join('a');
    expectError(() => coordinator.commitOffsets({ groupId: G, memberEpoch: -1, offsets: [offset(1)] }, 0), 'UNKNOWN_MEMBER');
    coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: -1 }, 0);
    coordinator.commitOffsets({ groupId: G, memberEpoch: -1, offsets: [offset(1, 4)] }, 0);
    expect(coordinator.fetchOffsets(G, 'orders')[0]?.offset).toBe(4);
  });

  it('validateCommit checks without writing', () => {
    const a = join('a');
    coordinator.validateCommit(G, 'a', a.memberEpoch, [{ topic: 'orders', partition: 1 }], 0);
    expectError(() => coordinator.validateCommit(G, 'a', a.memberEpoch, [{ topic: 'orders', partition: -1 }], 0), 'INVALID_REQUEST');
    expect(coordinator.fetchOffsets(G)).toEqual([]);
  });

  it('surfaces store errors for unknown topics in standalone commits', () => {
    expectError(() => coordinator.commitOffsets({ groupId: G, memberEpoch: -1, offsets: [{ topic: 'nope', partition: 0, offset: 1 }] }, 0), 'TOPIC_NOT_FOUND');
  });
});

describe('resetOffsets', () => {
  it('overwrites offsets of a group without members and refuses while members are active', () => {
    coordinator.commitOffsets({ groupId: G, memberEpoch: -1, offsets: [{ topic: 'orders', partition: 0, offset: 50 }] }, 0);
    coordinator.resetOffsets(G, [{ topic: 'orders', partition: 0, offset: 0 }], 1);
    expect(coordinator.fetchOffsets(G)[0]).toMatchObject({ offset: 0, committedAt: 1 });
    const a = join('a', ['orders'], 2);
    expectError(() => coordinator.resetOffsets(G, [{ topic: 'orders', partition: 0, offset: 9 }], 3), 'GROUP_NOT_EMPTY');
    // Once the member's session is over, the reset goes through.
    coordinator.resetOffsets(G, [{ topic: 'orders', partition: 0, offset: 9 }], 2 + 30_001);
    expect(coordinator.fetchOffsets(G)[0]?.offset).toBe(9);
    expect(a.memberEpoch).toBe(1);
  });
});

describe('describe and listGroups', () => {
  it('lists groups with members or committed offsets', () => {
    expect(coordinator.listGroups()).toEqual([]);
    join('a');
    coordinator.commitOffsets({ groupId: 'offsets-only', memberEpoch: -1, offsets: [{ topic: 'audit', partition: 0, offset: 1 }] }, 0);
    expect(coordinator.listGroups()).toEqual([
      { groupId: 'g1', state: 'stable', memberCount: 1 },
      { groupId: 'offsets-only', state: 'empty', memberCount: 0 },
    ]);
  });

  it('describes members, targets and offsets; unknown groups are GROUP_NOT_FOUND', () => {
    expectError(() => coordinator.describe('nope'), 'GROUP_NOT_FOUND');
    const a = join('a', ['orders'], 5);
    coordinator.commitOffsets({ groupId: G, memberId: 'a', memberEpoch: a.memberEpoch, offsets: [{ topic: 'orders', partition: 2, offset: 8 }] }, 6);
    expect(coordinator.describe(G)).toEqual({
      groupId: G,
      state: 'stable',
      groupEpoch: 1,
      members: [
        {
          memberId: 'a',
          clientId: '',
          memberEpoch: 1,
          subscription: ['orders'],
          assignment: [{ topic: 'orders', partitions: [0, 1, 2, 3] }],
          pendingRevocation: [],
          targetAssignment: [{ topic: 'orders', partitions: [0, 1, 2, 3] }],
          lastHeartbeatAt: 5,
        },
      ],
      offsets: [{ groupId: G, topic: 'orders', partition: 2, offset: 8, metadata: null, committedAt: 6 }],
    });
    coordinator.heartbeat({ groupId: G, memberId: 'a', memberEpoch: -1 }, 7);
    expect(coordinator.describe(G)).toMatchObject({ state: 'empty', members: [], groupEpoch: 2 });
  });

  it('with `now`, expires overdue members before answering', () => {
    join('a', ['orders'], 0);
    expect(coordinator.describe(G, 30_000).members).toHaveLength(1);
    expect(coordinator.listGroups(30_000)).toHaveLength(1);
    expect(coordinator.listGroups(30_001)).toEqual([]);
    expectError(() => coordinator.describe(G, 30_001), 'GROUP_NOT_FOUND');
  });
});

describe('options', () => {
  it('validates the timeouts', () => {
    expectError(() => new GroupCoordinator({ store, partitionsOf: () => 1, sessionTimeoutMs: 0 }), 'INVALID_CONFIG');
    expectError(() => new GroupCoordinator({ store, partitionsOf: () => 1, sessionTimeoutMs: 1000, heartbeatIntervalMs: 1000 }), 'INVALID_CONFIG');
    const custom = new GroupCoordinator({ store, partitionsOf: () => 1, sessionTimeoutMs: 1000, heartbeatIntervalMs: 100 });
    expect(custom.heartbeat({ groupId: G, memberEpoch: 0, topics: ['orders'] }, 0).heartbeatIntervalMs).toBe(100);
  });
});
