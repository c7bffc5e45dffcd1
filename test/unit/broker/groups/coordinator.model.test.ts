import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasCode, type ErrorName } from '../../../../client/protocol/errors.js';
import { GroupCoordinator, type HeartbeatResponse, type TopicPartitions } from '../../../../broker/groups/coordinator.js';
import type { MetaStore } from '../../../../broker/meta/meta-store.js';
import { openMetaStore } from '../../../../broker/meta/sqlite-meta-store.js';

/**
 * Model-based test of the coordinator (fc.commands). Simulated clients join, heartbeat, change
 * subscriptions, leave, get expired by time passing, commit (currently or with a stale epoch),
 * send stale duplicate heartbeats, and topics grow. A client behaves like a real one: it takes
 * new partitions as soon as a response gives them, but keeps consuming ("draining") a revoked
 * partition until a later heartbeat reports it released, possibly several heartbeats later.
 * After every command:
 * - no partition is held by two members (server view: assignment ∪ pending revocation), and no
 *   two live clients consume the same partition (client view: last assignment ∪ draining);
 * - what a live client consumes is still held for it by the server (nothing it uses was freed);
 * - member epochs and the group epoch never go back; clients only get subscribed topics;
 * - fenced, expired and unknown commits are refused; accepted commits are stored exactly;
 * and, on every Settle and at the end, a few heartbeat rounds assign every subscribed partition.
 */

const G = 'g';
const SESSION_TIMEOUT_MS = 30_000;
const CLIENTS = ['m0', 'm1', 'm2', 'm3'] as const;
const TOPICS = ['a', 'b', 'c'] as const;
/** Partitions in the store (the most a topic may grow to) and at the start (0: does not exist yet). */
const STORE_PARTITIONS: Record<string, number> = { a: 5, b: 2, c: 4 };
const INITIAL_PARTITIONS: Record<string, number> = { a: 3, b: 2, c: 0 };
/** Heartbeat rounds within which a stable membership must be fully assigned (see docs/groups.md). */
const SETTLE_ROUNDS = 3;

type Status = 'idle' | 'active' | 'zombie';

interface ClientModel {
  id: string;
  /** idle: not a member; active: a member; zombie: expired by the server, does not know yet. */
  status: Status;
  memberEpoch: number;
  maxEpochSeen: number;
  subscription: string[];
  assignment: TopicPartitions[];
  /** Revoked by a response, still being consumed until a heartbeat reports them released. */
  draining: string[];
  lastHeartbeatAt: number;
}

interface Model {
  now: number;
  clients: Map<string, ClientModel>;
  partitions: Map<string, number>;
  committed: Map<string, number>;
  maxGroupEpoch: number;
  nextOffset: number;
}

interface Real {
  coordinator: GroupCoordinator;
  store: MetaStore;
  partitions: Map<string, number>;
}

type Cmd = fc.Command<Model, Real>;

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

function expectError(fn: () => unknown, code: ErrorName): void {
  const err = errorOf(fn);
  expect(hasCode(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
}

function keys(list: readonly TopicPartitions[]): string[] {
  return list.flatMap(({ topic, partitions }) => partitions.map((p) => `${topic}:${p}`));
}

function client(m: Model, id: string): ClientModel {
  const c = m.clients.get(id);
  if (c === undefined) throw new Error(`no client ${id}`);
  return c;
}

/** What the client is consuming right now. */
function consuming(c: ClientModel): string[] {
  return [...new Set([...keys(c.assignment), ...c.draining])];
}

function dropEverything(c: ClientModel, status: Status): void {
  c.status = status;
  c.assignment = [];
  c.draining = [];
}

function applyResponse(m: Model, c: ClientModel, res: HeartbeatResponse): void {
  expect(res.memberId).toBe(c.id);
  const kept = new Set(keys(res.assignment));
  c.draining = consuming(c).filter((key) => !kept.has(key));
  expect(res.memberEpoch, `${c.id} epoch went back`).toBeGreaterThanOrEqual(c.maxEpochSeen);
  c.memberEpoch = res.memberEpoch;
  c.maxEpochSeen = Math.max(c.maxEpochSeen, res.memberEpoch);
  c.assignment = res.assignment;
  c.lastHeartbeatAt = m.now;
  c.status = 'active';
}

/** `release`: the client finished its revocations before this heartbeat and reports them gone. */
function heartbeatOnce(m: Model, r: Real, c: ClientModel, topics?: string[], release = true): void {
  if (release) c.draining = [];
  const owned = consuming(c).map((key) => {
    const [topic = '', partition = '0'] = key.split(':');
    return { topic, partitions: [Number(partition)] };
  });
  const res = r.coordinator.heartbeat(
    { groupId: G, memberId: c.id, memberEpoch: c.memberEpoch, ownedPartitions: owned, ...(topics ? { topics } : {}) },
    m.now,
  );
  if (topics) c.subscription = [...new Set(topics)].sort();
  applyResponse(m, c, res);
}

function activeClients(m: Model): ClientModel[] {
  return [...m.clients.values()].filter((c) => c.status === 'active');
}

function checkInvariants(m: Model, r: Real): void {
  const active = activeClients(m);
  // Client view: no two live clients consume the same partition; only subscribed topics.
  const consumer = new Map<string, string>();
  for (const c of active) {
    for (const { topic } of c.assignment) expect(c.subscription).toContain(topic);
    for (const key of consuming(c)) {
      expect(consumer.get(key), `${key} consumed by ${consumer.get(key)} and ${c.id}`).toBeUndefined();
      consumer.set(key, c.id);
    }
  }
  if (active.length === 0 && m.committed.size === 0) {
    expectError(() => r.coordinator.describe(G), 'GROUP_NOT_FOUND');
    return;
  }
  const d = r.coordinator.describe(G);
  expect(d.groupEpoch).toBeGreaterThanOrEqual(m.maxGroupEpoch);
  m.maxGroupEpoch = d.groupEpoch;
  expect(d.members.map((x) => x.memberId)).toEqual(active.map((c) => c.id).sort());
  // Server view: held = assignment ∪ pending revocation, disjoint across members.
  const holder = new Map<string, string>();
  for (const member of d.members) {
    const c = client(m, member.memberId);
    expect(member.memberEpoch).toBe(c.memberEpoch);
    expect(member.memberEpoch).toBeLessThanOrEqual(d.groupEpoch);
    const held = [...keys(member.assignment), ...keys(member.pendingRevocation)];
    for (const key of held) {
      expect(holder.get(key), `${key} held by ${holder.get(key)} and ${member.memberId}`).toBeUndefined();
      holder.set(key, member.memberId);
    }
    // What the client consumes, the server still holds for it: nothing in use was handed on.
    for (const key of consuming(c)) expect(held, `${c.id} consumes ${key}`).toContain(key);
  }
  expect(new Map(r.coordinator.fetchOffsets(G).map((o) => [`${o.topic}:${o.partition}`, o.offset]))).toEqual(m.committed);
}

/** All active clients heartbeat SETTLE_ROUNDS times; then every subscribed partition is assigned. */
function settle(m: Model, r: Real): void {
  for (let round = 0; round < SETTLE_ROUNDS; round++) {
    for (const c of activeClients(m)) heartbeatOnce(m, r, c);
  }
  const active = activeClients(m);
  const expected = new Set<string>();
  for (const topic of new Set(active.flatMap((c) => c.subscription))) {
    for (let p = 0; p < (m.partitions.get(topic) ?? 0); p++) expected.add(`${topic}:${p}`);
  }
  const assigned = active.flatMap((c) => keys(c.assignment));
  expect(new Set(assigned)).toEqual(expected);
  if (active.length > 0) expect(r.coordinator.describe(G).state).toBe('stable');
}

class Join implements Cmd {
  constructor(readonly id: string, readonly topics: string[]) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    const res = r.coordinator.heartbeat({ groupId: G, memberId: this.id, memberEpoch: 0, topics: this.topics }, m.now);
    // A (re)join always starts a new incarnation: strictly newer than anything it had.
    expect(res.memberEpoch).toBeGreaterThan(c.maxEpochSeen);
    c.subscription = [...new Set(this.topics)].sort();
    dropEverything(c, 'active'); // a client drops its partitions before it rejoins
    applyResponse(m, c, res);
    checkInvariants(m, r);
  }
  toString = () => `Join(${this.id}, [${this.topics.join(',')}])`;
}

class Heartbeat implements Cmd {
  constructor(readonly id: string, readonly topics: string[] | undefined, readonly release: boolean) {}
  check = (m: Readonly<Model>) => client(m as Model, this.id).status !== 'idle';
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    if (c.status === 'zombie') {
      expectError(() => heartbeatOnce(m, r, c, this.topics, this.release), 'UNKNOWN_MEMBER');
      dropEverything(c, 'idle'); // told it is gone
    } else {
      heartbeatOnce(m, r, c, this.topics, this.release);
    }
    checkInvariants(m, r);
  }
  toString = () => `Heartbeat(${this.id}${this.topics ? `, [${this.topics.join(',')}]` : ''}${this.release ? '' : ', still draining'})`;
}

class StaleHeartbeat implements Cmd {
  constructor(readonly id: string, readonly delta: -1 | 1) {}
  check = (m: Readonly<Model>) => {
    const c = client(m as Model, this.id);
    return c.status === 'active' && c.memberEpoch + this.delta > 0;
  };
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    expectError(
      () => r.coordinator.heartbeat({ groupId: G, memberId: c.id, memberEpoch: c.memberEpoch + this.delta, ownedPartitions: [] }, m.now),
      'FENCED_MEMBER_EPOCH',
    );
    checkInvariants(m, r);
  }
  toString = () => `StaleHeartbeat(${this.id}, ${this.delta})`;
}

class Leave implements Cmd {
  constructor(readonly id: string) {}
  check = (m: Readonly<Model>) => client(m as Model, this.id).status !== 'idle';
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    const res = r.coordinator.heartbeat({ groupId: G, memberId: c.id, memberEpoch: -1 }, m.now);
    expect(res.memberEpoch).toBe(-1);
    dropEverything(c, 'idle');
    checkInvariants(m, r);
  }
  toString = () => `Leave(${this.id})`;
}

class AdvanceTime implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    m.now += this.ms;
    const expected = activeClients(m)
      .filter((c) => m.now - c.lastHeartbeatAt > SESSION_TIMEOUT_MS)
      .map((c) => c.id)
      .sort();
    expect(r.coordinator.expireSessions(m.now).sort()).toEqual(expected);
    for (const id of expected) client(m, id).status = 'zombie';
    checkInvariants(m, r);
  }
  toString = () => `AdvanceTime(${this.ms})`;
}

class Commit implements Cmd {
  constructor(readonly id: string, readonly staleBy: 0 | 1) {}
  check = (m: Readonly<Model>) => client(m as Model, this.id).maxEpochSeen > 0;
  // After a leave or UNKNOWN_MEMBER a client has dropped its partitions; it commits nothing then
  // but is still refused: its member id is gone.
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    // Commits what it consumes, draining partitions included (commit before releasing). A zombie
    // still believes in its last assignment and epoch.
    const entries = consuming(c).map((key) => {
      const [topic = '', partition = '0'] = key.split(':');
      return { topic, partition: Number(partition), offset: m.nextOffset };
    });
    const epoch = Math.max(c.memberEpoch, c.maxEpochSeen) - this.staleBy;
    const commit = () => r.coordinator.commitOffsets({ groupId: G, memberId: c.id, memberEpoch: epoch, offsets: entries }, m.now);
    if (c.status !== 'active') {
      expectError(commit, 'UNKNOWN_MEMBER');
    } else if (this.staleBy > 0) {
      expectError(commit, 'FENCED_MEMBER_EPOCH');
    } else {
      commit();
      for (const e of entries) m.committed.set(`${e.topic}:${e.partition}`, e.offset);
      m.nextOffset++;
    }
    checkInvariants(m, r);
  }
  toString = () => `Commit(${this.id}${this.staleBy ? ', stale' : ''})`;
}

class StandaloneCommit implements Cmd {
  check = () => true;
  run(m: Model, r: Real): void {
    const commit = () => r.coordinator.commitOffsets({ groupId: G, memberEpoch: -1, offsets: [{ topic: 'b', partition: 1, offset: m.nextOffset }] }, m.now);
    if (activeClients(m).length > 0) {
      expectError(commit, 'UNKNOWN_MEMBER');
    } else {
      commit();
      m.committed.set('b:1', m.nextOffset++);
    }
    checkInvariants(m, r);
  }
  toString = () => 'StandaloneCommit';
}

class GrowTopic implements Cmd {
  constructor(readonly topic: string) {}
  check = (m: Readonly<Model>) => (m.partitions.get(this.topic) ?? 0) < (STORE_PARTITIONS[this.topic] ?? 0);
  run(m: Model, r: Real): void {
    const next = (m.partitions.get(this.topic) ?? 0) + 1;
    m.partitions.set(this.topic, next);
    r.partitions.set(this.topic, next);
    checkInvariants(m, r);
  }
  toString = () => `GrowTopic(${this.topic})`;
}

class Settle implements Cmd {
  check = () => true;
  run(m: Model, r: Real): void {
    settle(m, r);
    checkInvariants(m, r);
  }
  toString = () => 'Settle';
}

const clientArb = fc.constantFrom(...CLIENTS);
const subscriptionArb = fc.subarray([...TOPICS], { minLength: 1 });
function heartbeatArb(): fc.Arbitrary<Cmd> {
  return fc
    .tuple(clientArb, fc.option(subscriptionArb, { freq: 5, nil: undefined }), fc.boolean())
    .map(([id, topics, release]) => new Heartbeat(id, topics, release));
}

const commands = [
  fc.tuple(clientArb, subscriptionArb).map(([id, topics]) => new Join(id, topics)),
  heartbeatArb(),
  heartbeatArb(),
  fc.tuple(clientArb, fc.constantFrom(-1 as const, 1 as const)).map(([id, delta]) => new StaleHeartbeat(id, delta)),
  clientArb.map((id) => new Leave(id)),
  fc.oneof({ arbitrary: fc.integer({ min: 500, max: 10_000 }), weight: 4 }, fc.integer({ min: 10_000, max: 40_000 })).map((ms) => new AdvanceTime(ms)),
  fc.tuple(clientArb, fc.constantFrom(0 as const, 0 as const, 1 as const)).map(([id, stale]) => new Commit(id, stale)),
  fc.constant(new StandaloneCommit()),
  fc.constantFrom(...TOPICS).map((t) => new GrowTopic(t)),
  fc.constant(new Settle()),
];

describe('GroupCoordinator model', () => {
  it('keeps ownership exclusive, epochs monotonic and commits fenced under any sequence', () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 80, size: 'max' }), (cmds) => {
        const store = openMetaStore(':memory:');
        try {
          for (const [name, partitions] of Object.entries(STORE_PARTITIONS)) {
            store.createTopic({ name, partitions, config: { retentionMs: null, retentionBytes: null, segmentBytes: null }, createdAt: 0 });
          }
          const partitions = new Map(Object.entries(INITIAL_PARTITIONS).filter(([, n]) => n > 0));
          const real: Real = {
            store,
            partitions,
            coordinator: new GroupCoordinator({ store, partitionsOf: (t) => partitions.get(t), sessionTimeoutMs: SESSION_TIMEOUT_MS }),
          };
          const model: Model = {
            now: 0,
            clients: new Map(
              CLIENTS.map((id) => [id, { id, status: 'idle', memberEpoch: 0, maxEpochSeen: 0, subscription: [], assignment: [], draining: [], lastHeartbeatAt: 0 }]),
            ),
            partitions: new Map(Object.entries(INITIAL_PARTITIONS)),
            committed: new Map(),
            maxGroupEpoch: 0,
            nextOffset: 1,
          };
          fc.modelRun(() => ({ model, real }), cmds);
          settle(model, real);
          checkInvariants(model, real);
        } finally {
          store.close();
        }
      }),
      { seed: 20_848, numRuns: 200 },
    );
  });
});
