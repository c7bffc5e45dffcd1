import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ErrorName, isSluiceError } from '../../../../client/protocol/errors.js';
import { type ProducerBatch, ProducerStateTable, RECENT_BATCHES } from '../../../../broker/txn/producer-state.js';
import { MAX_SEQUENCE, addSequence, isBehind, lastSequenceOf } from '../../../../broker/txn/sequence.js';

/**
 * Model-based test of the producer state (fc.commands). Producers send batches with the next
 * sequence, retries of earlier batches (recent or not), gaps, stale and new epochs, some
 * starting near the int32 wrap. The model keeps every batch ever written and states the rules
 * over that full history; the table keeps five per producer. After every command:
 * - the table's answer (append, duplicate with which offsets, which error) is the model's;
 * - the log never holds one (producer, epoch, sequence) twice, and per producer and epoch its
 *   sequences are contiguous from the first batch on;
 * and at any point the state survives a snapshot round trip and a rebuild from the log alone.
 */

interface Written {
  producerId: number;
  epoch: number;
  first: number;
  last: number;
  baseOffset: number;
  lastOffset: number;
}

interface ModelProducer {
  epoch: number;
  lastSeq: number;
  /** Batches of the current epoch, oldest first, all of them. */
  history: Written[];
}

interface Model {
  producers: Map<number, ModelProducer>;
  log: Written[];
  /** Every producer/epoch/first sequence in the log, and the last sequence per producer/epoch. */
  seen: Set<string>;
  lastOf: Map<string, number>;
}

interface Real {
  table: ProducerStateTable;
}

type Outcome = { kind: 'append' } | { kind: 'duplicate'; baseOffset: number; lastOffset: number } | { kind: 'error'; code: ErrorName };

type SeqChoice = { kind: 'next' } | { kind: 'retry'; back: number } | { kind: 'gap'; by: number } | { kind: 'old'; by: number };

const PRODUCERS = [0, 1, 2];
const FAR = 1_000; // further back than any retry a test makes

function expected(model: Model, b: ProducerBatch): Outcome {
  const p = model.producers.get(b.producerId);
  if (p === undefined) return { kind: 'append' };
  if (b.producerEpoch < p.epoch) return { kind: 'error', code: 'PRODUCER_FENCED' };
  if (b.producerEpoch > p.epoch) return b.baseSequence === 0 ? { kind: 'append' } : { kind: 'error', code: 'OUT_OF_ORDER_SEQUENCE' };
  const next = addSequence(p.lastSeq, 1);
  if (b.baseSequence === next) return { kind: 'append' };
  const last = lastSequenceOf(b.baseSequence, b.lastOffsetDelta);
  const hit = p.history.slice(-RECENT_BATCHES).find((w) => w.first === b.baseSequence && w.last === last);
  if (hit) return { kind: 'duplicate', baseOffset: hit.baseOffset, lastOffset: hit.lastOffset };
  if (p.lastSeq >= 0 && isBehind(b.baseSequence, next)) return { kind: 'error', code: 'DUPLICATE_SEQUENCE' };
  return { kind: 'error', code: 'OUT_OF_ORDER_SEQUENCE' };
}

function run(table: ProducerStateTable, b: ProducerBatch, end: number): Outcome {
  try {
    const d = table.check(b);
    if (d.kind === 'duplicate') return { kind: 'duplicate', baseOffset: d.baseOffset, lastOffset: d.lastOffset };
    table.apply(b, { baseOffset: end, lastOffset: end + b.lastOffsetDelta }, { now: 0 });
    return { kind: 'append' };
  } catch (err) {
    if (isSluiceError(err)) return { kind: 'error', code: err.code };
    throw err;
  }
}

/** The log invariants, checked as each batch is written (the model's log only grows). */
function checkWritten(model: Model, w: Written): void {
  const key = `${w.producerId}/${w.epoch}`;
  if (model.seen.has(`${key}/${w.first}`)) throw new Error(`sequence ${w.first} of ${key} written twice`);
  model.seen.add(`${key}/${w.first}`);
  const prev = model.lastOf.get(key);
  if (prev !== undefined && w.first !== addSequence(prev, 1)) throw new Error(`${key}: ${w.first} does not follow ${prev}`);
  model.lastOf.set(key, w.last);
}

class Send implements fc.Command<Model, Real> {
  constructor(
    readonly producerId: number,
    readonly epochDelta: -1 | 0 | 1,
    readonly seq: SeqChoice,
    readonly count: number,
    readonly start: number,
  ) {}

  check(): boolean {
    return true;
  }

  #batch(model: Model): ProducerBatch {
    const p = model.producers.get(this.producerId);
    const epoch = Math.max(0, (p?.epoch ?? 1) + this.epochDelta);
    let count = this.count;
    let base: number;
    const next = p === undefined ? this.start : epoch > p.epoch ? 0 : addSequence(p.lastSeq, 1);
    const earlier = p?.history[p.history.length - 1 - (this.seq.kind === 'retry' ? this.seq.back : 0)];
    if (this.seq.kind === 'retry' && earlier !== undefined) {
      base = earlier.first;
      count = earlier.lastOffset - earlier.baseOffset + 1;
    } else if (this.seq.kind === 'gap') base = addSequence(next, this.seq.by);
    else if (this.seq.kind === 'old') base = addSequence(next, 2 ** 31 - this.seq.by);
    else base = next;
    return { producerId: this.producerId, producerEpoch: epoch, baseSequence: base, lastOffsetDelta: count - 1, attributes: 0, maxTimestamp: 0 };
  }

  run(model: Model, real: Real): void {
    const b = this.#batch(model);
    const end = model.log.length === 0 ? 0 : model.log[model.log.length - 1]!.lastOffset + 1;
    const want = expected(model, b);
    expect(run(real.table, b, end)).toEqual(want);
    if (want.kind === 'append') {
      const w: Written = { producerId: b.producerId, epoch: b.producerEpoch, first: b.baseSequence, last: lastSequenceOf(b.baseSequence, b.lastOffsetDelta), baseOffset: end, lastOffset: end + b.lastOffsetDelta };
      checkWritten(model, w);
      model.log.push(w);
      const p = model.producers.get(b.producerId);
      if (p === undefined || b.producerEpoch > p.epoch) model.producers.set(b.producerId, { epoch: b.producerEpoch, lastSeq: w.last, history: [w] });
      else {
        p.lastSeq = w.last;
        p.history.push(w);
      }
    }
  }

  toString(): string {
    return `send(p${this.producerId}, epoch${this.epochDelta >= 0 ? '+' : ''}${this.epochDelta}, ${JSON.stringify(this.seq)}, n=${this.count}, start=${this.start})`;
  }
}

/** The state as the snapshot stores it, read back. */
class SnapshotRoundTrip implements fc.Command<Model, Real> {
  check(): boolean {
    return true;
  }
  run(_model: Model, real: Real): void {
    const data = real.table.toData();
    real.table = ProducerStateTable.fromData(JSON.parse(JSON.stringify(data)));
    expect(real.table.toData()).toEqual(data);
  }
  toString(): string {
    return 'snapshot';
  }
}

/** The state rebuilt from the log's batch headers alone, as after a crash without a snapshot. */
class RebuildFromLog implements fc.Command<Model, Real> {
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const rebuilt = new ProducerStateTable();
    for (const w of model.log) {
      rebuilt.apply(
        { producerId: w.producerId, producerEpoch: w.epoch, baseSequence: w.first, lastOffsetDelta: w.lastOffset - w.baseOffset, attributes: 0, maxTimestamp: 0 },
        { baseOffset: w.baseOffset, lastOffset: w.lastOffset },
        { now: 0 },
      );
    }
    expect(rebuilt.toData()).toEqual(real.table.toData());
    real.table = rebuilt;
  }
  toString(): string {
    return 'rebuild';
  }
}

const seqChoice: fc.Arbitrary<SeqChoice> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: 'next' as const }) },
  { weight: 3, arbitrary: fc.nat({ max: RECENT_BATCHES + 2 }).map((back) => ({ kind: 'retry' as const, back })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((by) => ({ kind: 'gap' as const, by })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: FAR }).map((by) => ({ kind: 'old' as const, by })) },
);

const send = fc
    .tuple(
      fc.constantFrom(...PRODUCERS),
      fc.oneof({ weight: 8, arbitrary: fc.constant(0 as const) }, { weight: 1, arbitrary: fc.constantFrom(-1 as const, 1 as const) }),
      seqChoice,
      fc.integer({ min: 1, max: 3 }),
      fc.constantFrom(0, 7, MAX_SEQUENCE - 3, MAX_SEQUENCE),
    )
    .map(([p, e, s, n, start]) => new Send(p, e, s, n, start));

// Mostly sends: a producer needs more than RECENT_BATCHES batches in one epoch to test the window.
const commands = [
  send,
  send,
  send,
  send,
  fc.constant(new SnapshotRoundTrip()),
  fc.constant(new RebuildFromLog()),
];

describe('ProducerStateTable against a model', () => {
  it('answers every batch as the full-history model does, and never writes a sequence twice', () => {
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 150, size: 'large' }), (cmds) => {
        fc.modelRun(() => ({ model: { producers: new Map(), log: [], seen: new Set<string>(), lastOf: new Map<string, number>() }, real: { table: new ProducerStateTable() } }), cmds);
      }),
      { numRuns: 150, seed: 0x1de5 },
    );
  });
});
