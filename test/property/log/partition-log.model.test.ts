/**
 * Model-based test (fc.commands) of PartitionLog against an in-memory array of batches:
 * appends (single and grouped), reads, rolls (small segments), retention, close + reopen,
 * power cuts (CrashFS) with and without appends in flight, with the newest batches answered from
 * memory or not (recentBatchBytes). fsync=always, so the model's rule
 * after a crash is: every acknowledged batch is there, plus a prefix of the in-flight ones.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasCode } from '../../../client/protocol/errors.js';
import { decodeBatches, encodeRecordBatch, readBatchHeader } from '../../../client/protocol/record-batch.js';
import { CrashFS } from '../../../broker/log/crash-fs.js';
import { PartitionLog } from '../../../broker/log/partition-log.js';
import type { LogSink, PartitionLogOptions } from '../../../broker/log/options.js';

interface ModelBatch {
  base: number;
  values: string[];
  timestamp: number;
}

interface Model {
  batches: ModelBatch[];
  start: number;
  end: number;
  clock: number;
  seq: number;
}

interface Real {
  io: CrashFS;
  log: PartitionLog;
  options: PartitionLogOptions;
  clock: { now: number };
}

const RETENTION_MS = 10_000;
const silent: LogSink = { info: () => {}, warn: () => {} };

function batchFor(model: Model, count: number, valueBytes: number): { buf: Buffer; values: string[] } {
  const values = Array.from({ length: count }, (_, i) => `m${model.seq}:${i}`.padEnd(valueBytes, '.'));
  model.seq++;
  const buf = encodeRecordBatch(values.map((v) => ({ value: Buffer.from(v), timestamp: model.clock })));
  return { buf, values };
}

function check(model: Model, real: Real): void {
  expect(real.log.startOffset).toBe(model.start);
  expect(real.log.endOffset).toBe(model.end);
  expect(real.log.highWatermark).toBe(model.end);
}

class AppendCommand implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly sizes: readonly { count: number; valueBytes: number }[],
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const made = this.sizes.map((s) => batchFor(model, s.count, s.valueBytes));
    // All in one tick: one group commit.
    const results = await Promise.all(made.map((m) => real.log.append(m.buf)));
    for (const [i, m] of made.entries()) {
      expect(results[i]).toEqual({ baseOffset: model.end, lastOffset: model.end + m.values.length - 1 });
      model.batches.push({ base: model.end, values: m.values, timestamp: model.clock });
      model.end += m.values.length;
    }
    check(model, real);
  }
  toString = () => `append(${this.sizes.map((s) => s.count).join(',')})`;
}

class ReadCommand implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly where: number,
    readonly maxBytes: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const span = model.end - model.start;
    const offset = model.start + Math.floor(this.where * (span + 1));
    const buf = await real.log.read(offset, this.maxBytes);
    if (offset === model.end) {
      expect(buf.length).toBe(0);
    } else {
      const first = model.batches.findIndex((b) => b.base <= offset && offset < b.base + b.values.length);
      expect(first).toBeGreaterThanOrEqual(0);
      const records = decodeBatches(buf);
      let batches = 0;
      for (let pos = 0; pos < buf.length; batches++) pos += readBatchHeader(buf, pos).batchLength + 12;
      if (batches > 1) expect(buf.length).toBeLessThanOrEqual(this.maxBytes);
      const want = model.batches.slice(first, first + batches);
      expect(want.length).toBe(batches);
      expect(records.map((r) => r.value!.toString())).toEqual(want.flatMap((b) => b.values));
      expect(records[0]!.offset).toBe(model.batches[first]!.base);
    }
    if (model.start > 0) expect(hasCode(await real.log.read(model.start - 1, 10).catch((e: unknown) => e), 'OFFSET_OUT_OF_RANGE')).toBe(true);
    expect(hasCode(await real.log.read(model.end + 1, 10).catch((e: unknown) => e), 'OFFSET_OUT_OF_RANGE')).toBe(true);
  }
  toString = () => `read(${this.where.toFixed(2)}, ${this.maxBytes})`;
}

class RetentionCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly advanceMs: number) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    model.clock += this.advanceMs;
    real.clock.now = model.clock;
    await real.log.enforceRetention();
    const start = real.log.startOffset;
    expect(start).toBeGreaterThanOrEqual(model.start);
    if (start > model.start) {
      // Only whole batches went, all past retention, and never the newest batch's segment.
      const keep = model.batches.findIndex((b) => b.base === start);
      expect(keep).toBeGreaterThan(0);
      for (const b of model.batches.slice(0, keep)) expect(b.timestamp).toBeLessThan(model.clock - RETENTION_MS);
      model.batches = model.batches.slice(keep);
      model.start = start;
    }
    check(model, real);
  }
  toString = () => `retention(+${this.advanceMs}ms)`;
}

class ReopenCommand implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    await real.log.close();
    real.log = await PartitionLog.open(real.options);
    check(model, real);
  }
  toString = () => 'close+reopen';
}

class CrashCommand implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly inFlight: readonly number[],
    readonly ticks: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const made = this.inFlight.map((count) => batchFor(model, count, 20));
    const acked: number[] = [];
    for (const m of made) {
      real.log.append(m.buf).then(
        (r) => acked.push(r.lastOffset),
        () => {},
      );
    }
    for (let t = 0; t < this.ticks; t++) await new Promise((r) => setImmediate(r));
    const ackedAtCrash = [...acked];
    real.io = real.io.crash();
    real.options = { ...real.options, io: real.io };
    real.log = await PartitionLog.open(real.options);
    const end = real.log.endOffset;
    for (const last of ackedAtCrash) expect(last).toBeLessThan(end);
    // The survivors are a prefix of the in-flight batches, with the same content.
    let next = model.end;
    for (const m of made) {
      if (next >= end) break;
      const records = decodeBatches(await real.log.read(next, 1));
      expect(records.map((r) => r.value!.toString())).toEqual(m.values);
      model.batches.push({ base: next, values: m.values, timestamp: model.clock });
      next += m.values.length;
    }
    expect(next).toBe(end);
    model.end = end;
    check(model, real);
  }
  toString = () => `crash(inFlight=${this.inFlight.join(',')}, ticks=${this.ticks})`;
}

const commands = [
  fc
    .array(fc.record({ count: fc.integer({ min: 1, max: 5 }), valueBytes: fc.integer({ min: 1, max: 120 }) }), { minLength: 1, maxLength: 4 })
    .map((sizes) => new AppendCommand(sizes)),
  fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 1500 })).map(([w, m]) => new ReadCommand(w / 1000, m)),
  fc.integer({ min: 0, max: 15_000 }).map((ms) => new RetentionCommand(ms)),
  fc.constant(new ReopenCommand()),
  fc.tuple(fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 5 }), fc.integer({ min: 0, max: 4 })).map(([f, t]) => new CrashCommand(f, t)),
];

describe('PartitionLog against a model', () => {
  it('behaves like an array of batches through appends, reads, rolls, retention, reopens and crashes', async () => {
    await fc.assert(
      // Budgets for the batches kept in memory: none, a few (reads older than them go to the file), all.
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: 'medium' }), fc.constantFrom(0, 150, 600, 256 * 1024), async (cmds, recentBatchBytes) => {
        const io = new CrashFS();
        const clock = { now: 0 };
        const options: PartitionLogOptions = {
          dir: '/data/topics/t/0',
          io,
          segmentBytes: 700,
          indexIntervalBytes: 150,
          retentionMs: RETENTION_MS,
          now: () => clock.now,
          logger: silent,
          recentBatchBytes,
        };
        const real: Real = { io, log: await PartitionLog.open(options), options, clock };
        const model: Model = { batches: [], start: 0, end: 0, clock: 0, seq: 0 };
        await fc.asyncModelRun(() => ({ model, real }), cmds);
        await real.log.close();
      }),
      { numRuns: 80, seed: 20240611, interruptAfterTimeLimit: 15_000, markInterruptAsFailure: false },
    );
  });
});
