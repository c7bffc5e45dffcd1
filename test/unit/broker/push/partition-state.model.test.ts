import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../../../client/protocol/errors.js';
import {
  PartitionDeliveryState,
  type Delivery,
  type Ordering,
  type PartitionStateOptions,
  type PersistedPartitionState,
} from '../../../../broker/push/partition-state.js';

/**
 * Model-based test of PartitionDeliveryState (fc.commands). The model is a naive reference: a
 * log of messages, each with its state, delivery count, holder and times, and linear scans for
 * everything. A simulated dispatcher offers from the real read position (appending new messages,
 * with gaps, when the log runs out); consumers take, ack, nack, reject and mark in progress,
 * with the current attempt, a stale one or one never made; time passes and deadlines expire;
 * consumers go away; dead letters get written; recovery marks offsets settled; the state is
 * saved (the 100 ms flush, a receipt, the save right after a dead letter); and the broker crashes:
 * the last saved snapshot is all that survives (JSON round trip), so acks and delivery counts
 * since that save are forgotten (docs/semantics.md, "what a broker crash forgets"), and every
 * in-flight delivery and backoff is forgotten too. The dead-letter topic survives: a crash
 * between appending a letter and saving the settled state is recovered as the broker does it,
 * by settling every letter written since the saved checkpoint.
 *
 * Results for unsettled offsets must match the model exactly. For settled ones the state may
 * have forgotten the settling attempt (see #settle): an ack with the settling attempt must
 * answer 'acked', other answers may be the precise error or the idempotent one. After every
 * command: stats, read position, pending dead letters, per-consumer in-flight counts and
 * nextWakeAt match; the snapshot says exactly which offsets are settled and which counts
 * matter; with ordering 'key', at most one message per key is in flight, awaiting redelivery
 * or dead, and it is the key's lowest unsettled one. At every delivery: the offset is neither
 * settled nor in flight, its attempt is one above the last one saved or made since the restart
 * (one above all before, across crashes, unless a crash forgot counts) and at most maxDeliveries.
 * No message is dead-lettered twice. At the end, draining (deliver, ack, write dead letters)
 * settles every message.
 */

/** SLUICE_MODEL_RUNS=5000 (and SLUICE_MODEL_SEED) for a longer search; the defaults keep CI fast. */
const RUNS = Number(process.env['SLUICE_MODEL_RUNS'] ?? '') || 150;
const SEED = Number(process.env['SLUICE_MODEL_SEED'] ?? '') || 0;
const TIMEOUT_MS = 30_000 + RUNS * 50;
const ACK_WAIT = 1_000;
const CONSUMERS = ['c1', 'c2', 'c3'] as const;
const KEYS = ['a', 'b', 'c', null] as const;

type MsgState = 'unoffered' | 'buffered' | 'inflight' | 'waiting' | 'dead' | 'settled';
type Op = 'ack' | 'nack' | 'reject' | 'inProgress';

interface Msg {
  readonly offset: number;
  readonly key: string | null;
  state: MsgState;
  /** Deliveries so far; survives crashes (the snapshot is taken at the crash). */
  count: number;
  consumer: string;
  deadline: number;
  notBefore: number;
  settledAttempt: number;
  settledBy: 'ack' | 'dead-letter' | undefined;
  /** Highest attempt handed out, across crashes (down to the saved count when a crash forgot some). */
  maxAttempt: number;
  /** 'dead-letter' transitions reported in this process lifetime. */
  deadReports: number;
}

/** What the last save made durable: the snapshot, and the dead-letter checkpoint read before it. */
interface Saved {
  snapshot: PersistedPartitionState | undefined;
  dlqCheckpoint: number;
  /** The model's view of the snapshot: settled offsets and delivery counts at the save. */
  settled: Set<number>;
  counts: Map<number, number>;
}

interface Model {
  readonly opts: PartitionStateOptions;
  now: number;
  /** Every message in the log, ascending. */
  readonly log: Msg[];
  /** The next offset a new message may take. */
  logEnd: number;
  readPosition: number;
  redeliveries: number;
  deadLettered: number;
  saved: Saved;
  /** The dead-letter topic: offsets whose letter was appended, in order. Survives crashes. */
  readonly dlq: number[];
}

interface Real {
  s: PartitionDeliveryState;
}

type Cmd = fc.Command<Model, Real>;

function outcome(fn: () => unknown): string {
  try {
    const value = fn();
    return typeof value === 'string' ? value : 'ok';
  } catch (err) {
    if (isSluiceError(err)) return err.code;
    throw err;
  }
}

function backoff(m: Model, attempt: number): number {
  const b = m.opts.backoffMs;
  return b.length === 0 ? 0 : (b[Math.min(attempt, b.length) - 1] as number);
}

function offered(m: Model, msg: Msg): boolean {
  return msg.offset < m.readPosition;
}

/** ordering 'key': only the key's lowest unsettled message may be handed out. */
function eligible(m: Model, msg: Msg): boolean {
  if (m.opts.ordering === 'partition' || msg.key === null) return true;
  return !m.log.some((o) => o.key === msg.key && o.offset < msg.offset && o.state !== 'settled');
}

function settle(msg: Msg, by: 'ack' | 'dead-letter'): void {
  msg.state = 'settled';
  msg.settledAttempt = msg.count;
  msg.settledBy = by;
  msg.consumer = '';
}

/** A failed delivery (nack, timeout, consumer gone): requeue or, at maxDeliveries, dead. */
function requeue(m: Model, msg: Msg, notBefore: number): 'requeued' | 'dead-letter' {
  msg.consumer = '';
  if (msg.count >= m.opts.maxDeliveries) {
    msg.state = 'dead';
    msg.deadReports++;
    return 'dead-letter';
  }
  msg.state = 'waiting';
  msg.notBefore = notBefore;
  return 'requeued';
}

function lowestUnsettledOffered(m: Model): number | undefined {
  return m.log.find((x) => offered(m, x) && x.state !== 'settled')?.offset;
}

function inRanges(ranges: ReadonlyArray<readonly [number, number]>, offset: number): boolean {
  return ranges.some(([start, end]) => offset >= start && offset < end);
}

function checkSnapshot(m: Model, r: Real): void {
  const snap = r.s.snapshot();
  const { ackFloor: floor, acked } = snap;
  expect(floor).toBe(r.s.ackFloor);
  const lowest = lowestUnsettledOffered(m);
  if (lowest !== undefined) expect(floor).toBe(lowest);
  else expect(floor).toBeGreaterThanOrEqual(m.readPosition);
  // Nothing unsettled below the floor (nothing dropped); exactly the settled offsets in ranges.
  for (const msg of m.log) {
    if (msg.offset < floor) expect(msg.state, `offset ${msg.offset} below the floor ${floor}`).toBe('settled');
    else expect(inRanges(acked, msg.offset), `offset ${msg.offset} (${msg.state}) in ${JSON.stringify(acked)}`).toBe(msg.state === 'settled');
  }
  let previousEnd = floor;
  for (const [start, end] of acked) {
    expect(start).toBeGreaterThan(previousEnd);
    expect(end).toBeGreaterThan(start);
    previousEnd = end;
  }
  const counts = m.log.filter((x) => x.state !== 'settled' && x.count > 0).map((x) => [x.offset, x.count]);
  expect(snap.deliveryCounts).toEqual(counts);
}

function checkKeyOrdering(m: Model): void {
  if (m.opts.ordering !== 'key') return;
  const active = new Map<string, number>();
  for (const msg of m.log) {
    const holds = msg.state === 'inflight' || msg.state === 'waiting' || msg.state === 'dead' || (msg.state === 'unoffered' && msg.count > 0);
    if (msg.key === null || !holds) continue;
    expect(active.get(msg.key), `key ${msg.key} held by ${active.get(msg.key)} and ${msg.offset}`).toBeUndefined();
    active.set(msg.key, msg.offset);
    expect(eligible(m, msg), `offset ${msg.offset} holds key ${msg.key} before an earlier one settled`).toBe(true);
  }
}

function checkInvariants(m: Model, r: Real): void {
  const count = (pred: (x: Msg) => boolean): number => m.log.filter(pred).length;
  expect(r.s.readPosition).toBe(m.readPosition);
  expect(r.s.stats()).toEqual({
    inFlight: count((x) => x.state === 'inflight'),
    awaitingRedelivery: count((x) => x.state === 'waiting' || (x.state === 'unoffered' && x.count > 0)),
    buffered: count((x) => x.state === 'buffered'),
    redeliveries: m.redeliveries,
    deadLettered: m.deadLettered,
    oldestUnsettled: lowestUnsettledOffered(m),
  });
  expect(r.s.buffered).toBe(count((x) => x.state === 'buffered'));
  expect(r.s.pendingDeadLetters()).toEqual(m.log.filter((x) => x.state === 'dead').map((x) => x.offset));
  for (const c of CONSUMERS) expect(r.s.inFlightOf(c)).toBe(count((x) => x.state === 'inflight' && x.consumer === c));
  const wakes = m.log.flatMap((x) => (x.state === 'inflight' ? [x.deadline] : x.state === 'waiting' && x.notBefore > m.now ? [x.notBefore] : []));
  expect(r.s.nextWakeAt()).toBe(wakes.length === 0 ? undefined : Math.min(...wakes));
  for (const msg of m.log) expect(msg.deadReports).toBeLessThanOrEqual(1);
  expect(new Set(m.dlq).size, `dead-lettered twice: ${m.dlq.join(',')}`).toBe(m.dlq.length);
  checkSnapshot(m, r);
  checkKeyOrdering(m);
}

class Offer implements Cmd {
  constructor(
    readonly n: number,
    readonly gaps: readonly number[],
    readonly keys: ReadonlyArray<string | null>,
    readonly append = true,
    /** With ordering 'partition', offer through offerRanges (what the dispatcher does) instead. */
    readonly asRanges = false,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const batch = m.log.filter((x) => x.offset >= m.readPosition).slice(0, this.n);
    for (let i = 0; this.append && batch.length < this.n; i++) {
      const offset = m.logEnd + (this.gaps[i % this.gaps.length] ?? 0);
      const msg: Msg = {
        offset,
        key: this.keys[i % this.keys.length] ?? null,
        state: 'unoffered',
        count: 0,
        consumer: '',
        deadline: 0,
        notBefore: 0,
        settledAttempt: 0,
        settledBy: undefined,
        maxAttempt: 0,
        deadReports: 0,
      };
      m.log.push(msg);
      m.logEnd = offset + 1;
      batch.push(msg);
    }
    if (batch.length === 0) return;
    if (this.asRanges && m.opts.ordering === 'partition') {
      const ranges: Array<[number, number]> = [];
      for (const { offset } of batch) {
        const tail = ranges[ranges.length - 1];
        if (tail !== undefined && tail[1] === offset) tail[1] = offset + 1;
        else ranges.push([offset, offset + 1]);
      }
      r.s.offerRanges(ranges);
    } else r.s.offer(batch.map(({ offset, key }) => ({ offset, key })));
    for (const msg of batch) {
      if (msg.state !== 'unoffered') continue; // settled (skipped) or dead (stays dead)
      if (msg.count === 0) msg.state = 'buffered';
      else {
        msg.state = 'waiting';
        msg.notBefore = -Infinity;
      }
    }
    const last = (batch[batch.length - 1] as Msg).offset;
    // The read position may jump further, over offsets the snapshot said were settled.
    expect(r.s.readPosition).toBeGreaterThanOrEqual(last + 1);
    for (const msg of m.log) if (msg.offset > last && msg.offset < r.s.readPosition) expect(msg.state).toBe('settled');
    m.readPosition = r.s.readPosition;
    checkInvariants(m, r);
  }
  toString = () => `Offer(${this.n}, gaps [${this.gaps.join(',')}], keys [${this.keys.join(',')}]${this.append ? '' : ', no append'}${this.asRanges ? ', as ranges' : ''})`;
}

class Take implements Cmd {
  constructor(readonly consumer: string, readonly max: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const due = m.log.filter((x) => offered(m, x) && x.state === 'waiting' && x.notBefore <= m.now && eligible(m, x));
    const fresh = m.log.filter((x) => offered(m, x) && x.state === 'buffered' && eligible(m, x));
    const chosen = [...due, ...fresh].slice(0, Math.max(0, this.max));
    const expected: Delivery[] = [];
    for (const msg of chosen) {
      const attempt = msg.count + 1;
      expect(attempt).toBeGreaterThan(msg.maxAttempt);
      expect(attempt).toBeLessThanOrEqual(m.opts.maxDeliveries);
      if (msg.count > 0) m.redeliveries++;
      msg.count = attempt;
      msg.maxAttempt = attempt;
      msg.state = 'inflight';
      msg.consumer = this.consumer;
      msg.deadline = m.now + ACK_WAIT;
      expected.push({ offset: msg.offset, attempt, redelivered: attempt > 1, consumerId: this.consumer });
    }
    expect(r.s.take(this.max, this.consumer, m.now)).toEqual(expected);
    checkInvariants(m, r);
  }
  toString = () => `Take(${this.consumer}, ${this.max})`;
}

/** ack / nack / reject / inProgress of a picked offset, with its current attempt moved by `delta`. */
class Settle implements Cmd {
  constructor(
    readonly op: Op,
    readonly index: number,
    readonly delivered: boolean,
    readonly delta: number,
    readonly delayMs: number | undefined,
  ) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const pool = this.delivered ? m.log.filter((x) => x.count > 0 || x.state === 'settled') : m.log;
    const pick = this.index % (pool.length + 1);
    const msg = pool[pick];
    const offset = msg?.offset ?? m.logEnd + 3; // the extra pick: an offset never read
    const attempt = (msg === undefined ? 1 : msg.state === 'settled' ? msg.settledAttempt : msg.count) + this.delta;
    const got = outcome(() => this.#apply(r.s, offset, attempt, m.now));
    if (msg?.state === 'settled' && attempt >= 1) {
      expect(settledAnswers(this.op, msg, attempt)).toContain(got);
    } else {
      expect(got).toBe(this.#expect(m, msg, attempt));
    }
    checkInvariants(m, r);
  }

  #apply(s: PartitionDeliveryState, offset: number, attempt: number, now: number): unknown {
    switch (this.op) {
      case 'ack':
        return s.ack(offset, attempt);
      case 'nack':
        return s.nack(offset, attempt, now, this.delayMs);
      case 'reject':
        return s.reject(offset, attempt);
      case 'inProgress':
        return s.inProgress(offset, attempt, now);
    }
  }

  /** The exact answer for an unsettled (or unknown) offset, applied to the model. */
  #expect(m: Model, msg: Msg | undefined, attempt: number): string {
    if (msg === undefined || attempt < 1 || attempt > msg.count) return 'UNKNOWN_DELIVERY';
    if (attempt < msg.count) return 'STALE_ACK';
    switch (this.op) {
      case 'ack':
        settle(msg, 'ack');
        return 'acked';
      case 'nack':
        if (msg.state === 'inflight') return requeue(m, msg, m.now + Math.max(0, this.delayMs ?? backoff(m, msg.count)));
        return msg.state === 'dead' ? 'dead-letter' : 'requeued';
      case 'reject':
        if (msg.state !== 'dead') {
          msg.state = 'dead';
          msg.consumer = '';
          msg.deadReports++;
        }
        return 'dead-letter';
      case 'inProgress':
        if (msg.state === 'inflight') msg.deadline = m.now + ACK_WAIT;
        return 'ok';
    }
  }

  toString = () => `${this.op}(#${this.index}${this.delivered ? ' delivered' : ''}, attempt ${this.delta >= 0 ? '+' : ''}${this.delta}${this.delayMs === undefined ? '' : `, delay ${this.delayMs}`})`;
}

/** What may answer an operation on a settled offset: its settling attempt may have been forgotten. */
function settledAnswers(op: Op, msg: Msg, attempt: number): string[] {
  const s = msg.settledAttempt;
  const mismatch = attempt < s ? 'STALE_ACK' : 'UNKNOWN_DELIVERY';
  switch (op) {
    case 'ack':
      return attempt === s ? ['acked'] : ['acked', mismatch];
    case 'inProgress':
      return attempt === s ? ['ok'] : ['ok', mismatch];
    default:
      if (attempt !== s) return ['STALE_ACK', mismatch];
      return msg.settledBy === 'dead-letter' ? ['dead-letter', 'STALE_ACK'] : ['STALE_ACK'];
  }
}

class AdvanceTime implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  run(m: Model, r: Real): void {
    m.now += this.ms;
    const expired = m.log.filter((x) => x.state === 'inflight' && x.deadline <= m.now).sort((a, b) => a.deadline - b.deadline || a.offset - b.offset);
    const expected = expired.map((msg) => {
      const { offset, count: attempt, consumer: consumerId } = msg;
      return { offset, attempt, consumerId, outcome: requeue(m, msg, m.now + backoff(m, attempt)) };
    });
    expect(r.s.expire(m.now)).toEqual(expected);
    checkInvariants(m, r);
  }
  toString = () => `AdvanceTime(${this.ms})`;
}

class Release implements Cmd {
  constructor(readonly consumer: string) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const held = m.log.filter((x) => x.state === 'inflight' && x.consumer === this.consumer);
    const expected = held.map((msg) => ({ offset: msg.offset, outcome: requeue(m, msg, m.now) }));
    expect(r.s.release(this.consumer, m.now)).toEqual(expected);
    checkInvariants(m, r);
  }
  toString = () => `Release(${this.consumer})`;
}

/**
 * The dispatcher wrote a dead letter, marked it settled and saved at once (or, for anything else,
 * calls deadLettered by mistake, which writes nothing).
 */
class DeadLettered implements Cmd {
  constructor(readonly index: number, readonly pendingOnly: boolean) {}
  check = () => true;
  run(m: Model, r: Real): void {
    const pool = this.pendingOnly ? m.log.filter((x) => x.state === 'dead') : m.log;
    const msg = pool[this.index % Math.max(1, pool.length)];
    if (msg === undefined) return;
    const knownToState = msg.state !== 'settled' && !(msg.state === 'unoffered' && msg.count === 0);
    if (msg.state === 'dead') {
      m.dlq.push(msg.offset);
      r.s.deadLettered(msg.offset);
      settle(msg, 'dead-letter');
      m.deadLettered++;
      save(m, r);
    } else if (knownToState) {
      expect(() => r.s.deadLettered(msg.offset)).toThrow(/not waiting to be dead-lettered/);
    } else {
      r.s.deadLettered(msg.offset); // settled or never read: nothing
    }
    checkInvariants(m, r);
  }
  toString = () => `DeadLettered(#${this.index}${this.pendingOnly ? ' pending' : ''})`;
}

/** Recovery found the offset in the dead-letter topic. */
class MarkSettled implements Cmd {
  constructor(readonly index: number) {}
  check = (m: Readonly<Model>) => m.log.length > 0;
  run(m: Model, r: Real): void {
    const msg = m.log[this.index % m.log.length] as Msg;
    r.s.markSettled(msg.offset);
    if (msg.state !== 'settled') settle(msg, 'dead-letter');
    checkInvariants(m, r);
  }
  toString = () => `MarkSettled(#${this.index})`;
}

/** A durable save of the snapshot (the flush, a receipt); the dead-letter checkpoint is read first, as the broker does. */
function save(m: Model, r: Real): void {
  const dlqCheckpoint = m.dlq.length;
  const snapshot = JSON.parse(JSON.stringify(r.s.snapshot())) as PersistedPartitionState;
  m.saved = {
    snapshot,
    dlqCheckpoint,
    settled: new Set(m.log.filter((x) => x.state === 'settled').map((x) => x.offset)),
    counts: new Map(m.log.map((x) => [x.offset, x.count])),
  };
}

class Save implements Cmd {
  check = () => true;
  run(m: Model, r: Real): void {
    save(m, r);
    checkInvariants(m, r);
  }
  toString = () => 'Save';
}

/**
 * A crash. `saveFirst`: the state had just been saved (a receipt); otherwise the last save is what
 * comes back, and whatever happened since is forgotten: acks (those messages are delivered
 * again), delivery counts (attempt numbers are handed out again), settlements by dead letter
 * (unless recovery finds the letter). In-flight deliveries and backoffs are forgotten; counts
 * kept. Then recovery settles the offsets of letters written since the saved checkpoint.
 */
function crash(m: Model, r: Real, saveFirst: boolean): void {
  if (saveFirst) save(m, r);
  const { snapshot, settled, counts, dlqCheckpoint } = m.saved;
  r.s = new PartitionDeliveryState(m.opts, snapshot);
  expect(r.s.readPosition).toBe(snapshot?.ackFloor ?? 0);
  for (const msg of m.log) {
    msg.deadReports = 0;
    if (settled.has(msg.offset)) {
      expect(msg.state).toBe('settled');
      continue;
    }
    msg.consumer = '';
    msg.settledAttempt = 0;
    msg.settledBy = undefined;
    msg.count = counts.get(msg.offset) ?? 0;
    msg.maxAttempt = msg.count;
    // Delivered maxDeliveries times: dead-lettered at once. A rejected message with fewer
    // deliveries is redelivered: the snapshot does not say it was rejected.
    msg.state = msg.count >= m.opts.maxDeliveries ? 'dead' : 'unoffered';
  }
  m.readPosition = r.s.readPosition;
  m.redeliveries = 0;
  m.deadLettered = 0;
  // Recovery (PushService: writtenSince, then settleRecovered, then a save).
  const recovered = m.dlq.slice(dlqCheckpoint);
  for (const offset of recovered) {
    r.s.markSettled(offset);
    const msg = m.log.find((x) => x.offset === offset) as Msg;
    if (msg.state !== 'settled') settle(msg, 'dead-letter');
  }
  if (recovered.length > 0) save(m, r);
  m.readPosition = r.s.readPosition;
  checkInvariants(m, r);
}

class Crash implements Cmd {
  constructor(readonly saveFirst: boolean) {}
  check = () => true;
  run(m: Model, r: Real): void {
    crash(m, r, this.saveFirst);
  }
  toString = () => (this.saveFirst ? 'Save+Crash' : 'Crash');
}

/** The dispatcher appended a dead letter and the broker crashed before it saved the settled state. */
class DeadLetterThenCrash implements Cmd {
  constructor(readonly index: number) {}
  check = (m: Readonly<Model>) => m.log.some((x) => x.state === 'dead');
  run(m: Model, r: Real): void {
    const dead = m.log.filter((x) => x.state === 'dead');
    const msg = dead[this.index % dead.length] as Msg;
    m.dlq.push(msg.offset);
    crash(m, r, false);
    expect(msg.state, 'recovery settles a message whose letter was written').toBe('settled');
  }
  toString = () => `DeadLetterThenCrash(#${this.index})`;
}

/** Offers the whole log, lets every deadline and backoff pass, delivers, acks and writes dead letters until all is settled. */
function drain(m: Model, r: Real): void {
  for (let round = 0; round < 500 && (m.readPosition < m.logEnd || m.log.some((x) => x.state !== 'settled')); round++) {
    new Offer(1_000, [0], [null], false).run(m, r);
    new AdvanceTime(10 * ACK_WAIT).run(m, r);
    new Take('c1', 1_000).run(m, r);
    for (const msg of m.log.filter((x) => x.state === 'inflight')) {
      expect(r.s.ack(msg.offset, msg.count)).toBe('acked');
      settle(msg, 'ack');
    }
    while (m.log.some((x) => x.state === 'dead')) new DeadLettered(0, true).run(m, r);
  }
  for (const msg of m.log) expect(msg.state).toBe('settled');
  expect(r.s.readPosition).toBe(m.logEnd);
  expect(r.s.snapshot()).toEqual({ ackFloor: m.logEnd, acked: [], deliveryCounts: [] });
}

const consumerArb = fc.constantFrom(...CONSUMERS);
const indexArb = fc.nat({ max: 1_000 });
const deltaArb = fc.constantFrom(0, 0, 0, -1, 1);
function settleArb(op: Op): fc.Arbitrary<Cmd> {
  return fc
    .tuple(indexArb, fc.boolean(), deltaArb, fc.option(fc.constantFrom(0, 200, 1_500), { nil: undefined }))
    .map(([index, delivered, delta, delay]) => new Settle(op, index, delivered, delta, delay));
}

const commands: Array<fc.Arbitrary<Cmd>> = [
  fc
    .tuple(fc.integer({ min: 1, max: 5 }), fc.array(fc.constantFrom(0, 0, 0, 1, 2), { minLength: 1, maxLength: 5 }), fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 5 }), fc.boolean())
    .map(([n, gaps, keys, asRanges]) => new Offer(n, gaps, keys, true, asRanges)),
  fc.tuple(consumerArb, fc.integer({ min: 0, max: 4 })).map(([c, max]) => new Take(c, max)),
  fc.tuple(consumerArb, fc.integer({ min: 0, max: 4 })).map(([c, max]) => new Take(c, max)),
  settleArb('ack'),
  settleArb('ack'),
  settleArb('nack'),
  settleArb('reject'),
  settleArb('inProgress'),
  fc.constantFrom(100, 400, 999, 1_000, 1_500, 3_000).map((ms) => new AdvanceTime(ms)),
  consumerArb.map((c) => new Release(c)),
  fc.tuple(indexArb, fc.boolean()).map(([i, pendingOnly]) => new DeadLettered(i, pendingOnly)),
  indexArb.map((i) => new MarkSettled(i)),
  fc.constant(new Save()),
  fc.oneof(fc.constant(new Crash(true)), fc.constant(new Crash(false)), indexArb.map((i) => new DeadLetterThenCrash(i))),
];

const optionsArb = fc.record({
  maxDeliveries: fc.constantFrom(1, 2, 3),
  backoffMs: fc.constantFrom<number[]>([], [300], [100, 2_000]),
});

function runModel(ordering: Ordering, seed: number): void {
  fc.assert(
    fc.property(optionsArb, fc.commands(commands, { maxCommands: 60, size: 'max' }), ({ maxDeliveries, backoffMs }, cmds) => {
      const opts: PartitionStateOptions = { ackWaitMs: ACK_WAIT, maxDeliveries, backoffMs, ordering };
      const model: Model = {
        opts,
        now: 0,
        log: [],
        logEnd: 0,
        readPosition: 0,
        redeliveries: 0,
        deadLettered: 0,
        saved: { snapshot: undefined, dlqCheckpoint: 0, settled: new Set(), counts: new Map() },
        dlq: [],
      };
      const real: Real = { s: new PartitionDeliveryState(opts) };
      fc.modelRun(() => ({ model, real }), cmds);
      drain(model, real);
    }),
    { seed: seed + SEED, numRuns: RUNS },
  );
}

describe('PartitionDeliveryState model', () => {
  it('keeps deliveries, attempts, settlements and snapshots right under any sequence (partition ordering)', () => {
    runModel('partition', 4_242);
  }, TIMEOUT_MS);

  it('keeps deliveries, attempts, settlements, snapshots and key order right under any sequence (key ordering)', () => {
    runModel('key', 2_424);
  }, TIMEOUT_MS);
});
