import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkHistory, formatCheck, type CheckResult } from '../../../testing/checker.js';
import type { HistoryEvent, HistoryEventInput, RecordRef } from '../../../testing/history.js';
import { seededRandom } from '../../helpers/random.js';

/** A seeded integer in [0, n) for the choices that need no shrinking. */
function random(seed: number): (n: number) => number {
  const next = seededRandom(seed);
  return (n) => Math.floor(next() * n);
}

/**
 * A random log that a correct broker could have produced, consumers that read it in order
 * (with a crash and restart), and one random fault injected into the history afterwards: the
 * clean history must check valid and the faulty one must show the matching anomaly.
 */

/** What a log slot holds: committed or plain data, aborted data, unresolved data, or a marker. */
type Kind = 'acked' | 'ackedTxn' | 'aborted' | 'unknown' | 'txnUnknown' | 'marker';

const MUTATIONS = [
  'none',
  'drop-read',
  'duplicate',
  'reorder',
  'read-aborted',
  'read-failed',
  'unexpected',
  'inconsistent',
  'skip',
  'unread-partition',
] as const;
type Mutation = (typeof MUTATIONS)[number];

interface Scenario {
  readonly logs: readonly (readonly Kind[])[];
  readonly failedSends: number;
  readonly seed: number;
  readonly mutation: Mutation;
  readonly pick: number;
}

interface Slot {
  readonly kind: Kind;
  readonly ref: RecordRef | undefined;
  readonly visible: boolean;
}

/** A poll event under construction: its records stay mutable until the history is stamped. */
interface Poll {
  readonly process: string;
  records: RecordRef[];
}

type Step = HistoryEventInput | Poll;

const topicOf = (i: number): { topic: string; partition: number } => ({ topic: `t${i % 2}`, partition: Math.floor(i / 2) });

interface Built {
  readonly steps: Step[];
  readonly partitions: readonly (readonly Slot[])[];
  readonly polls: Poll[];
}

function build(scenario: Scenario): Built {
  const rnd = random(scenario.seed);
  const steps: Step[] = [];
  const partitions = scenario.logs.map((kinds, i) => {
    const { topic, partition } = topicOf(i);
    return kinds.map((kind, offset): Slot => {
      if (kind === 'marker') return { kind, ref: undefined, visible: false };
      const value = `v${i}-${offset}`;
      const txn = kind === 'ackedTxn' || kind === 'aborted' || kind === 'txnUnknown' ? `tx${i}-${offset}` : undefined;
      const base = { process: `p${i}`, f: 'send', topic, value, ...(txn === undefined ? {} : { txn }) } as const;
      steps.push({ ...base, type: 'invoke' });
      if (kind === 'unknown') steps.push({ ...base, type: 'unknown', error: 'TIMEOUT' });
      else steps.push({ ...base, type: 'ok', partition, offset });
      if (txn !== undefined) {
        const end = kind === 'aborted' ? 'fail' : kind === 'ackedTxn' ? 'ok' : 'unknown';
        steps.push({ process: `p${i}`, f: 'txn', type: 'invoke', txn }, { process: `p${i}`, f: 'txn', type: end, txn });
      }
      // An unresolved transaction may have committed (and is read) or aborted (and is not).
      const visible = kind === 'acked' || kind === 'ackedTxn' || kind === 'unknown' || (kind === 'txnUnknown' && rnd(2) === 0);
      return { kind, ref: { topic, partition, offset, value }, visible };
    });
  });
  for (let k = 0; k < scenario.failedSends; k++) {
    const base = { process: 'pf', f: 'send', topic: 't0', value: `f${k}` } as const;
    steps.push({ ...base, type: 'invoke' }, { ...base, type: 'fail', error: 'NOT_LEADER' });
  }
  steps.push({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'kill', detail: 'c1' });

  // c1 reads a prefix of each partition in chunks; c2 takes over from a committed position at or
  // before where c1 stopped, so some records are read twice, by different processes.
  const polls: Poll[] = [];
  const visibleOf = partitions.map((slots) => slots.filter((s) => s.visible).map((s) => s.ref as RecordRef));
  const stopAt = visibleOf.map((refs) => rnd(refs.length + 1));
  const resumeAt = stopAt.map((stop) => stop - rnd(Math.min(stop, 2) + 1));
  const consume = (process: string, ranges: readonly (readonly RecordRef[])[]): void => {
    const positions = partitions.map((_, i) => ({ ...topicOf(i), offset: 0 }));
    if (process === 'c2') {
      positions.forEach((position, i) => {
        const next = visibleOf[i]?.[resumeAt[i] ?? 0];
        position.offset = next?.offset ?? partitions[i]?.length ?? 0;
      });
    }
    steps.push({ process, f: 'assign', type: 'ok', partitions: positions });
    const cursors = ranges.map(() => 0);
    while (cursors.some((c, i) => c < (ranges[i]?.length ?? 0))) {
      const records: RecordRef[] = [];
      ranges.forEach((range, i) => {
        const size = 1 + rnd(3);
        records.push(...range.slice(cursors[i], (cursors[i] ?? 0) + size));
        cursors[i] = (cursors[i] ?? 0) + size;
      });
      const poll: Poll = { process, records };
      polls.push(poll);
      steps.push(poll);
    }
  };
  consume('c1', visibleOf.map((refs, i) => refs.slice(0, stopAt[i])));
  consume('c2', visibleOf.map((refs, i) => refs.slice(resumeAt[i])));

  // A push consumer sees partition 0 once more, with a redelivery, and acks it.
  const pushed = visibleOf[0] ?? [];
  if (pushed.length > 0) {
    steps.push({ process: 's1', f: 'deliver', type: 'ok', records: pushed });
    steps.push({ process: 's1', f: 'deliver', type: 'ok', records: pushed.slice(0, 1) });
    steps.push({ process: 's1', f: 'ack', type: 'ok', records: pushed });
  }
  return { steps, partitions, polls };
}

const isPoll = (step: Step): step is Poll => !('f' in step);

function stamp(steps: readonly Step[]): HistoryEvent[] {
  return steps.map((step, index): HistoryEvent => {
    const event: HistoryEventInput = isPoll(step) ? { process: step.process, f: 'poll', type: 'ok', records: step.records } : step;
    return { ...event, index, time: index } as HistoryEvent;
  });
}

type Anomaly = 'lost' | 'unexpected' | 'duplicated' | 'inconsistentOffsets' | 'nonMonotonicPolls' | 'skippedOffsets' | 'abortedReads';
const ANOMALIES: readonly Anomaly[] = ['lost', 'unexpected', 'duplicated', 'inconsistentOffsets', 'nonMonotonicPolls', 'skippedOffsets', 'abortedReads'];

/** What a mutated history must show: the anomalies it may cause, and a check of the one it must. */
interface Expectation {
  readonly allowed: readonly Anomaly[];
  readonly check: (result: CheckResult) => void;
}

/** Applies the scenario's mutation; returns what the result must show, or undefined if none applies. */
function mutate(built: Built, scenario: Scenario): Expectation | undefined {
  const { steps, partitions, polls } = built;
  const choose = <T>(items: readonly T[]): T | undefined => items[scenario.pick % Math.max(items.length, 1)];
  const slots = partitions.flat();
  const rogue = (...records: RecordRef[]): void => {
    const poll: Poll = { process: 'rogue', records };
    polls.push(poll);
    steps.push(poll);
  };

  switch (scenario.mutation) {
    case 'none':
      return undefined;
    case 'drop-read': {
      const target = choose(slots.filter((s) => s.kind === 'acked' || s.kind === 'ackedTxn'))?.ref;
      if (target === undefined) return undefined;
      for (const poll of polls) poll.records = poll.records.filter((r) => r.value !== target.value);
      for (const [i, step] of steps.entries()) {
        if (!isPoll(step) && (step.f === 'deliver' || step.f === 'ack')) {
          steps[i] = { ...step, records: step.records.filter((r) => r.value !== target.value) };
        }
      }
      return { allowed: ['lost', 'skippedOffsets'], check: (result) => expect(result.lost.map((l) => l.value)).toContain(target.value) };
    }
    case 'duplicate': {
      const target = choose(slots.filter((s) => s.visible))?.ref;
      if (target === undefined) return undefined;
      rogue({ ...target, offset: target.offset + 1000 }); // past any generated log's end
      return { allowed: ['duplicated'], check: (result) => expect(result.duplicated.map((d) => d.value)).toContain(target.value) };
    }
    case 'reorder': {
      // Two neighbouring reads of one partition by one process, swapped.
      const candidates: { first: [Poll, number]; second: [Poll, number] }[] = [];
      for (const process of ['c1', 'c2']) {
        const last = new Map<string, [Poll, number]>();
        for (const poll of polls.filter((p) => p.process === process)) {
          poll.records.forEach((r, i) => {
            const key = `${r.topic}/${r.partition}`;
            const previous = last.get(key);
            if (previous !== undefined) candidates.push({ first: previous, second: [poll, i] });
            last.set(key, [poll, i]);
          });
        }
      }
      const pair = choose(candidates);
      if (pair === undefined) return undefined;
      const [p1, i1] = pair.first;
      const [p2, i2] = pair.second;
      const a = p1.records[i1] as RecordRef;
      p1.records[i1] = p2.records[i2] as RecordRef;
      p2.records[i2] = a;
      return { allowed: ['nonMonotonicPolls', 'skippedOffsets'], check: (result) => expect(result.nonMonotonicPolls.map((n) => n.process)).toContain(p1.process) };
    }
    case 'read-aborted': {
      const target = choose(slots.filter((s) => s.kind === 'aborted'))?.ref;
      if (target === undefined) return undefined;
      rogue(target);
      return { allowed: ['abortedReads'], check: (result) => expect(result.abortedReads.map((r) => [r.value, r.reason])).toContainEqual([target.value, 'txn-aborted']) };
    }
    case 'read-failed': {
      if (scenario.failedSends === 0) return undefined;
      rogue({ topic: 't0', partition: 0, offset: 5000, value: 'f0' });
      return { allowed: ['abortedReads'], check: (result) => expect(result.abortedReads.map((r) => [r.value, r.reason])).toContainEqual(['f0', 'send-failed']) };
    }
    case 'unexpected':
      rogue({ topic: 't0', partition: 0, offset: 5000, value: 'ghost' });
      return { allowed: ['unexpected'], check: (result) => expect(result.unexpected.map((r) => r.value)).toEqual(['ghost']) };
    case 'inconsistent': {
      // Someone reads a sent, not aborted, value at another sent value's offset.
      const sent = slots.flatMap((s) => (s.ref === undefined ? [] : [s.ref]));
      const readable = slots.flatMap((s) => (s.ref === undefined || s.kind === 'aborted' ? [] : [s.ref]));
      const pairs = readable.flatMap((a) => sent.filter((b) => b !== a && b.topic === a.topic && b.partition === a.partition).map((b) => [a, b] as const));
      const pair = choose(pairs);
      if (pair === undefined) return undefined;
      const [a, b] = pair;
      rogue({ ...b, value: a.value });
      return { allowed: ['inconsistentOffsets', 'duplicated', 'skippedOffsets'], check: (result) => expect(result.inconsistentOffsets.map((i) => [i.topic, i.partition, i.offset])).toContainEqual([b.topic, b.partition, b.offset]) };
    }
    case 'skip': {
      // A consumer misses a visible record that is not its last in that partition; another reads it.
      const candidates: { poll: Poll; index: number }[] = [];
      for (const process of ['c1', 'c2']) {
        const mine = polls.filter((p) => p.process === process);
        mine.forEach((poll, n) =>
          poll.records.forEach((r, index) => {
            const later = [poll.records.slice(index + 1), ...mine.slice(n + 1).map((p) => p.records)].flat();
            if (later.some((l) => l.topic === r.topic && l.partition === r.partition)) candidates.push({ poll, index });
          }),
        );
      }
      const hit = choose(candidates);
      if (hit === undefined) return undefined;
      const [missed] = hit.poll.records.splice(hit.index, 1) as [RecordRef];
      rogue(missed);
      const check = (result: CheckResult): void => {
        const mine = result.skippedOffsets.filter((s) => s.process === hit.poll.process && s.topic === missed.topic && s.partition === missed.partition);
        expect(mine.flatMap((s) => s.skipped)).toContain(missed.offset);
      };
      return { allowed: ['skippedOffsets'], check };
    }
    case 'unread-partition': {
      const base = { process: 'px', f: 'send', topic: 'lonely', value: 'lonely-0' } as const;
      steps.push({ ...base, type: 'invoke' }, { ...base, type: 'ok', partition: 3, offset: 0 });
      const check = (result: CheckResult): void => {
        expect(result.lost).toContainEqual(expect.objectContaining({ value: 'lonely-0', region: 'postfix' }));
        expect(result.unreadPartitions).toEqual([{ topic: 'lonely', partition: 3 }]);
      };
      return { allowed: ['lost'], check };
    }
  }
}

const kind = fc.constantFrom<Kind>('acked', 'acked', 'acked', 'ackedTxn', 'aborted', 'unknown', 'txnUnknown', 'marker');
const scenario: fc.Arbitrary<Scenario> = fc.record({
  logs: fc.array(fc.array(kind, { maxLength: 12 }), { minLength: 1, maxLength: 4 }),
  failedSends: fc.nat({ max: 2 }),
  seed: fc.integer(),
  mutation: fc.constantFrom(...MUTATIONS),
  pick: fc.nat(),
});

describe('checkHistory on generated histories', () => {
  it('passes a correct history and reports each injected fault', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const clean = build(s);
        const result = checkHistory(stamp(clean.steps));
        expect(result.valid, formatCheck(result)).toBe(true);
        const built = build(s);
        const expectation = mutate(built, s);
        if (expectation !== undefined) {
          const mutated = checkHistory(stamp(built.steps));
          expect(mutated.valid, formatCheck(mutated)).toBe(false);
          expectation.check(mutated);
          for (const anomaly of ANOMALIES) {
            if (!expectation.allowed.includes(anomaly)) expect(mutated[anomaly], formatCheck(mutated)).toEqual([]);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
