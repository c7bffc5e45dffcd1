import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
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
 * - member epochs and the group epoch never go back (within a broker lifetime); clients only get
 *   subscribed topics; a join is answered at the group epoch;
 * - fenced, expired and unknown commits are refused; accepted commits are stored exactly;
 * - a late commit from a client's previous incarnation (sent before it left, was told it is gone,
 *   or rejoined) is refused;
 * - listGroups agrees with describe;
 * and, on every Settle and at the end, a few heartbeat rounds assign every subscribed partition,
 * balanced per topic among its subscribers.
 *
 * The broker also crashes (Crash): the coordinator is thrown away and a new one is built over a new
 * handle on the same SQLite file (the real MetaStore, on tmpfs when there is one). What the code
 * persists is what the model keeps: committed offsets only. Membership, epochs and assignments
 * are gone (docs/groups.md, "What is durable"), so every member becomes a zombie that believes it
 * still holds its partitions: its heartbeats and commits get UNKNOWN_MEMBER until it rejoins, the
 * group epoch starts again from 0 (member epochs are monotonic only within one broker lifetime),
 * and members joining after the restart are assigned everything again, exclusively among
 * themselves, and resume from the committed offsets.
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

/** SLUICE_MODEL_RUNS=5000 (and SLUICE_MODEL_SEED) for a longer search; the defaults keep CI fast. */
const RUNS = Number(process.env['SLUICE_MODEL_RUNS'] ?? '') || 150;
const SEED = Number(process.env['SLUICE_MODEL_SEED'] ?? '') || 20_848;
/** The stores live here: tmpfs when there is one (synchronous=FULL fsyncs every commit). */
const STORE_ROOT = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'sluice-coordinator-model-'));
afterAll(() => rmSync(STORE_ROOT, { recursive: true, force: true }));
let storeCount = 0;

/** An incarnation the client has given up (left, told it is gone, or rejoined over). */
interface Incarnation {
  epoch: number;
  consumed: string[];
  boot: number;
}

interface ClientModel {
  id: string;
  /** idle: not a member; active: a member; zombie: expired by the server (or lost in a crash), does not know yet. */
  status: Status;
  memberEpoch: number;
  /** Highest epoch seen in broker lifetime `boot` (epochs start again after a crash). */
  maxEpochSeen: number;
  boot: number;
  previous: Incarnation | undefined;
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
  /** Broker lifetimes so far: Crash starts a new one. */
  boot: number;
}

interface Real {
  coordinator: GroupCoordinator;
  store: MetaStore;
  partitions: Map<string, number>;
  /** The SQLite file: what survives a crash. */
  path: string;
  /** Every handle opened, crashed ones included; closed at the end of the run. */
  handles: MetaStore[];
}

function newCoordinator(store: MetaStore, partitions: Map<string, number>): GroupCoordinator {
  return new GroupCoordinator({ store, partitionsOf: (t) => partitions.get(t), sessionTimeoutMs: SESSION_TIMEOUT_MS });
}

function openReal(): Real {
  const path = join(STORE_ROOT, `run-${storeCount++}.db`);
  const store = openMetaStore(path);
  for (const [name, partitions] of Object.entries(STORE_PARTITIONS)) {
    store.createTopic({ name, partitions, config: { retentionMs: null, retentionBytes: null, segmentBytes: null }, createdAt: 0 });
  }
  const partitions = new Map(Object.entries(INITIAL_PARTITIONS).filter(([, n]) => n > 0));
  return { store, partitions, path, handles: [store], coordinator: newCoordinator(store, partitions) };
}

/**
 * A broker crash: the coordinator (all membership) is lost and the store handle abandoned without
 * a clean close; the restarted broker opens the file again and builds a new coordinator over it.
 * Topics (the partition counts) are durable metadata and stay.
 */
function crashReal(r: Real): void {
  const store = openMetaStore(r.path);
  r.handles.push(store);
  r.store = store;
  r.coordinator = newCoordinator(store, r.partitions);
}

function closeReal(r: Real): void {
  for (const handle of r.handles) handle.close();
  for (const suffix of ['', '-wal', '-shm']) rmSync(r.path + suffix, { force: true });
}

function newModel(): Model {
  return {
    now: 0,
    clients: new Map(
      CLIENTS.map((id) => [
        id,
        { id, status: 'idle', memberEpoch: 0, maxEpochSeen: 0, boot: 0, previous: undefined, subscription: [], assignment: [], draining: [], lastHeartbeatAt: 0 },
      ]),
    ),
    partitions: new Map(Object.entries(INITIAL_PARTITIONS)),
    committed: new Map(),
    maxGroupEpoch: 0,
    nextOffset: 1,
    boot: 0,
  };
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
  // The incarnation that ends here may still have requests on their way (LateCommit).
  if (c.status !== 'idle') c.previous = { epoch: c.memberEpoch, consumed: consuming(c), boot: c.boot };
  c.status = status;
  c.assignment = [];
  c.draining = [];
}

function applyResponse(m: Model, c: ClientModel, res: HeartbeatResponse): void {
  expect(res.memberId).toBe(c.id);
  if (c.boot !== m.boot) {
    // First response from a restarted broker: epochs start again.
    c.boot = m.boot;
    c.maxEpochSeen = 0;
  }
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
    expect(r.coordinator.listGroups()).toEqual([]);
    return;
  }
  const d = r.coordinator.describe(G);
  expect(r.coordinator.listGroups()).toEqual([{ groupId: G, state: d.state, memberCount: active.length }]);
  if (active.length === 0) expect(d.state).toBe('empty');
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
  // Balanced per topic: among a topic's subscribers, counts differ by at most one.
  for (const topic of TOPICS) {
    const counts = active
      .filter((c) => c.subscription.includes(topic))
      .map((c) => c.assignment.find((a) => a.topic === topic)?.partitions.length ?? 0);
    if (counts.length > 0) expect(Math.max(...counts) - Math.min(...counts), `${topic} split ${counts.join('/')}`).toBeLessThanOrEqual(1);
  }
}

class Join implements Cmd {
  constructor(readonly id: string, readonly topics: string[]) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    const res = r.coordinator.heartbeat({ groupId: G, memberId: this.id, memberEpoch: 0, topics: this.topics }, m.now);
    // A (re)join always starts a new incarnation: strictly newer than anything it had in this
    // broker lifetime, and at the group epoch (a joining member has nothing to revoke).
    if (c.boot === m.boot) expect(res.memberEpoch).toBeGreaterThan(c.maxEpochSeen);
    expect(res.memberEpoch).toBe(r.coordinator.describe(G).groupEpoch);
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

/** Time passes to `now` and the broker's expiry timer runs. */
function advanceTo(m: Model, r: Real, now: number): void {
  m.now = now;
  const expected = activeClients(m)
    .filter((c) => m.now - c.lastHeartbeatAt > SESSION_TIMEOUT_MS)
    .map((c) => c.id)
    .sort();
  expect(r.coordinator.expireSessions(m.now).sort()).toEqual(expected);
  for (const id of expected) client(m, id).status = 'zombie';
  checkInvariants(m, r);
}

class AdvanceTime implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    advanceTo(m, r, m.now + this.ms);
  }
  toString = () => `AdvanceTime(${this.ms})`;
}

/** Time moves to the edge of a member's session: exactly sessionTimeoutMs since its last heartbeat (kept), or 1 ms more (expired). */
class AdvanceToSessionEdge implements Cmd {
  constructor(readonly id: string, readonly past: 0 | 1) {}
  check = (m: Readonly<Model>) => {
    const c = client(m as Model, this.id);
    return c.status === 'active' && c.lastHeartbeatAt + SESSION_TIMEOUT_MS + this.past >= m.now;
  };
  run(m: Model, r: Real): void {
    advanceTo(m, r, client(m, this.id).lastHeartbeatAt + SESSION_TIMEOUT_MS + this.past);
  }
  toString = () => `AdvanceToSessionEdge(${this.id}${this.past ? ', past' : ''})`;
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

/**
 * A commit the client's previous incarnation sent before it ended (left, was told it is gone, or
 * rejoined), arriving now: refused, with FENCED_MEMBER_EPOCH if the member id has a newer
 * incarnation, else UNKNOWN_MEMBER. Only within one broker lifetime: after a restart epochs
 * start again (documented), so an old epoch is not told apart from a new one; requests of a
 * connection the crash cut do not arrive late.
 */
class LateCommit implements Cmd {
  constructor(readonly id: string) {}
  check = (m: Readonly<Model>) => client(m as Model, this.id).previous?.boot === m.boot;
  run(m: Model, r: Real): void {
    const c = client(m, this.id);
    const previous = c.previous as Incarnation;
    const entries = previous.consumed.map((key) => {
      const [topic = '', partition = '0'] = key.split(':');
      return { topic, partition: Number(partition), offset: m.nextOffset };
    });
    const commit = () => r.coordinator.commitOffsets({ groupId: G, memberId: c.id, memberEpoch: previous.epoch, offsets: entries }, m.now);
    if (c.status === 'active') {
      expect(previous.epoch, 'a new incarnation has a newer epoch').toBeLessThan(c.memberEpoch);
      expectError(commit, 'FENCED_MEMBER_EPOCH');
    } else {
      expectError(commit, 'UNKNOWN_MEMBER');
    }
    checkInvariants(m, r);
  }
  toString = () => `LateCommit(${this.id})`;
}

/** An admin resets the group's offsets: refused while the group has members (zombies do not count). */
class ResetOffsets implements Cmd {
  constructor(readonly partition: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const reset = () => r.coordinator.resetOffsets(G, [{ topic: 'a', partition: this.partition, offset: 0 }], m.now);
    if (activeClients(m).length > 0) {
      expectError(reset, 'GROUP_NOT_EMPTY');
    } else {
      reset();
      m.committed.set(`a:${this.partition}`, 0);
    }
    checkInvariants(m, r);
  }
  toString = () => `ResetOffsets(a:${this.partition})`;
}

/**
 * The broker crashes and restarts. Committed offsets survive; membership does not: every member
 * becomes a zombie that still consumes what it had until a heartbeat tells it UNKNOWN_MEMBER.
 */
class Crash implements Cmd {
  check = () => true;
  run(m: Model, r: Real): void {
    crashReal(r);
    m.boot++;
    m.maxGroupEpoch = 0;
    for (const c of m.clients.values()) if (c.status === 'active') c.status = 'zombie';
    if (m.committed.size > 0) {
      const d = r.coordinator.describe(G, m.now);
      expect(d).toMatchObject({ state: 'empty', groupEpoch: 0, members: [] });
    }
    expect(r.coordinator.expireSessions(m.now)).toEqual([]);
    checkInvariants(m, r);
  }
  toString = () => 'Crash';
}

/** The commonest way to lose something in a crash: a commit, then at once the crash. */
class CommitThenCrash implements Cmd {
  readonly #commit: Commit;
  constructor(readonly id: string) {
    this.#commit = new Commit(id, 0);
  }
  check = (m: Readonly<Model>) => client(m as Model, this.id).status === 'active';
  run(m: Model, r: Real): void {
    this.#commit.run(m, r);
    new Crash().run(m, r);
  }
  toString = () => `CommitThenCrash(${this.id})`;
}

/**
 * After a restart (or expiries): every zombie heartbeats, is told UNKNOWN_MEMBER, drops its
 * partitions and rejoins with its subscription; then the group settles (fully assigned, balanced)
 * and every member resumes from the offsets committed before.
 */
class Recover implements Cmd {
  check = (m: Readonly<Model>) => [...m.clients.values()].some((c) => c.status === 'zombie');
  run(m: Model, r: Real): void {
    for (const c of [...m.clients.values()].filter((x) => x.status === 'zombie')) {
      expectError(() => heartbeatOnce(m, r, c), 'UNKNOWN_MEMBER');
      const subscription = c.subscription;
      dropEverything(c, 'idle');
      new Join(c.id, subscription).run(m, r);
    }
    settle(m, r);
    const committed = new Map(r.coordinator.fetchOffsets(G).map((o) => [`${o.topic}:${o.partition}`, o.offset]));
    for (const c of activeClients(m)) {
      for (const key of keys(c.assignment)) expect(committed.get(key)).toBe(m.committed.get(key));
    }
    checkInvariants(m, r);
  }
  toString = () => 'Recover';
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

const joinArb = fc.tuple(clientArb, subscriptionArb).map(([id, topics]) => new Join(id, topics));
const commitArb = fc.tuple(clientArb, fc.constantFrom(0 as const, 0 as const, 1 as const)).map(([id, stale]) => new Commit(id, stale));

/** fc.commands picks each entry equally often: repeated entries are the common commands, grouped ones the rare. */
const commands = [
  joinArb,
  joinArb,
  heartbeatArb(),
  heartbeatArb(),
  heartbeatArb(),
  fc.tuple(clientArb, fc.constantFrom(-1 as const, 1 as const)).map(([id, delta]) => new StaleHeartbeat(id, delta)),
  clientArb.map((id) => new Leave(id)),
  fc.oneof({ arbitrary: fc.integer({ min: 500, max: 10_000 }), weight: 4 }, fc.integer({ min: 10_000, max: 40_000 })).map((ms) => new AdvanceTime(ms)),
  fc.tuple(clientArb, fc.constantFrom(0 as const, 1 as const)).map(([id, past]) => new AdvanceToSessionEdge(id, past)),
  commitArb,
  commitArb,
  clientArb.map((id) => new LateCommit(id)),
  fc.oneof(fc.constant(new StandaloneCommit()), fc.nat({ max: 4 }).map((p) => new ResetOffsets(p))),
  fc.oneof(fc.constant(new Crash()), clientArb.map((id) => new CommitThenCrash(id))),
  fc.constant(new Recover()),
  fc.constantFrom(...TOPICS).map((t) => new GrowTopic(t)),
  fc.constant(new Settle()),
];

/** `every`: each command must apply (a fixed sequence), instead of skipping those whose check fails. */
function runModel(cmds: Iterable<Cmd>, every = false): void {
  const real = openReal();
  try {
    const model = newModel();
    if (every) {
      for (const cmd of cmds) {
        expect(cmd.check(model), `${cmd.toString()} applies`).toBe(true);
        cmd.run(model, real);
      }
    } else fc.modelRun(() => ({ model, real }), cmds);
    settle(model, real);
    checkInvariants(model, real);
  } finally {
    closeReal(real);
  }
}

describe('GroupCoordinator model', () => {
  it('keeps ownership exclusive, epochs monotonic and commits fenced under any sequence, crashes included', () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 80, size: 'max' }), (cmds) => runModel(cmds)),
      { seed: SEED, numRuns: RUNS },
    );
  }, 30_000 + RUNS * 50);
});

/** Fixed sequences through the crash paths, run through the same model and checks. */
describe('GroupCoordinator model: crash and restart, by example', () => {
  it('offsets committed just before a crash survive; the old member is unknown until it rejoins at epoch 1 and resumes from them', () => {
    runModel([
      new Join('m0', ['a', 'b']),
      new Join('m1', ['a']),
      new Settle(),
      new CommitThenCrash('m0'),
      new Commit('m1', 0), // a zombie: UNKNOWN_MEMBER
      new Heartbeat('m1', undefined, true), // told it is gone
      new Join('m2', ['a']), // gets everything: the zombie m0 is not a member
      new Recover(), // m0 rejoins; balanced again
      new Commit('m0', 0),
      new Commit('m0', 1),
      new Leave('m0'),
      new LateCommit('m0'), // UNKNOWN_MEMBER: it left
    ], true);
  });

  it('sessions do not survive a restart, and sessions begun after it expire on their own deadline', () => {
    runModel([
      new Join('m0', ['a']),
      new AdvanceTime(29_000),
      new Crash(),
      new AdvanceTime(2_000), // m0's old session would be over; nothing to expire
      new Join('m1', ['a']),
      new AdvanceToSessionEdge('m1', 0),
      new AdvanceToSessionEdge('m1', 1), // m1 expires
      new Heartbeat('m0', undefined, false), // UNKNOWN_MEMBER
      new Heartbeat('m1', undefined, true), // UNKNOWN_MEMBER
      new StandaloneCommit(), // no members after both are gone
      new ResetOffsets(2),
    ], true);
  });
});
