import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { History, HistoryFormatError, type HistoryEvent, type HistoryEventInput } from '../../../testing/history.js';
import { tempDir } from '../../helpers/temp-dir.js';

/** A clock that ticks 1 ms per call, from `start`. */
function ticking(start: number): () => number {
  let now = start;
  return () => now++;
}

const send: HistoryEventInput = { process: 'p1', f: 'send', type: 'invoke', topic: 't', value: 'v1', txn: 'x1' };
const sendOk: HistoryEventInput = { process: 'p1', f: 'send', type: 'ok', topic: 't', value: 'v1', partition: 0, offset: 3 };
const poll: HistoryEventInput = {
  process: 'c1',
  f: 'poll',
  type: 'ok',
  records: [{ topic: 't', partition: 0, offset: 3, value: 'v1' }],
};

function catchError(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

const line = (event: Record<string, unknown>): string => JSON.stringify({ index: 0, time: 1, process: 'p', ...event });

describe('History.record', () => {
  it('stamps index and time and keeps the events in order', () => {
    const history = new History({ now: ticking(100) });
    const first = history.record(send);
    history.record(sendOk);
    expect(first).toEqual({ index: 0, time: 100, ...send });
    expect(history.events().map((e) => [e.index, e.time, e.f, e.type])).toEqual([
      [0, 100, 'send', 'invoke'],
      [1, 101, 'send', 'ok'],
    ]);
  });

  it('defaults the clock to the epoch in ms, as a float', () => {
    const history = new History();
    const before = Date.now();
    const { time } = history.record(send);
    expect(time).toBeGreaterThanOrEqual(before - 50);
    expect(time).toBeLessThanOrEqual(Date.now() + 50);
  });

  it('rejects a malformed event at once', () => {
    const history = new History();
    const bad = { ...sendOk, offset: -1 } as HistoryEventInput;
    expect(() => history.record(bad)).toThrow(/offset must be a non-negative integer/);
    const extra = { ...send, offest: 3 } as HistoryEventInput;
    expect(() => history.record(extra)).toThrow(/field 'offest' is not allowed/);
    expect(history.events()).toHaveLength(0);
  });

  it('round-trips through JSON lines', () => {
    const history = new History({ now: ticking(0) });
    for (const event of [send, sendOk, poll]) history.record(event);
    history.record({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'kill', detail: 'broker 1' });
    history.record({ process: 'c1', f: 'assign', type: 'ok', partitions: [{ topic: 't', partition: 0, offset: 0 }] });
    history.record({ process: 'p1', f: 'txn', type: 'fail', txn: 'x1' });
    const text = history.toJSONLines();
    expect(text.endsWith('\n')).toBe(true);
    expect(History.parse(text)).toEqual(history.events());
  });
});

describe('History.parse', () => {
  it('names the line of invalid JSON', () => {
    const text = `${line({ f: 'fault', type: 'ok', fault: 'kill' })}\n{"index":\n${line({ f: 'poll', type: 'invoke' })}\n`;
    expect(() => History.parse(text)).toThrow(/^line 2: not valid JSON$/);
    const error = catchError(() => History.parse(text, { source: 'a.jsonl' }));
    expect(error).toBeInstanceOf(HistoryFormatError);
    expect((error as HistoryFormatError).line).toBe(2);
    expect((error as Error).message).toBe('a.jsonl: line 2: not valid JSON');
  });

  it.each([
    [{ f: 'send', type: 'ok', topic: 't', value: 'v', partition: 0, offset: 1.5 }, 'offset must be a non-negative integer'],
    [{ f: 'send', type: 'ok', topic: 't', value: 'v', partition: -1, offset: 1 }, 'partition must be a non-negative integer'],
    [{ f: 'send', type: 'ok', topic: 't', value: 'v', offset: 1 }, 'partition must be a non-negative integer'],
    [{ f: 'send', type: 'fail', topic: 't', value: 'v' }, 'error must be a string'],
    [{ f: 'send', type: 'invoke', topic: 't', value: 7 }, 'value must be a string'],
    [{ f: 'poll', type: 'ok', records: [{ topic: 't', partition: 0, offset: 0 }] }, 'records[0].value must be a string'],
    [{ f: 'poll', type: 'ok', records: {} }, 'records must be an array'],
    [{ f: 'deliver', type: 'fail', records: [], error: 'x' }, `type "fail" is not allowed for f 'deliver'`],
    [{ f: 'assign', type: 'ok', partitions: [{ topic: 't', partition: 0, offset: 0, value: 'v' }] }, 'partitions[0].value is not allowed'],
    [{ f: 'commit', type: 'ok' }, 'unknown f "commit"'],
    [{ f: 'fault', type: 'ok', fault: 'kill', extra: 1 }, `field 'extra' is not allowed in a fault ok event`],
    [{ f: 'fault', type: 'ok', fault: 'kill', time: 'soon' }, 'time must be a finite number'],
    [{ f: 'fault', type: 'ok', fault: 'kill', process: '' }, 'process must be a non-empty string'],
  ])('names the line and the problem: %j', (event, problem) => {
    const text = `${line({ f: 'poll', type: 'invoke' })}\n${line(event)}\n`;
    expect(() => History.parse(text)).toThrow(`line 2: ${problem}`);
  });

  it('drops a torn last line by default, and only that', () => {
    const good = line({ f: 'poll', type: 'invoke' });
    const torn = line({ f: 'fault', type: 'ok', fault: 'kill' }).slice(0, 20);
    expect(History.parse(`${good}\n${torn}`)).toHaveLength(1);
    expect(() => History.parse(`${good}\n${torn}`, { tolerateTornTail: false })).toThrow(/^line 2: not valid JSON$/);
    // A complete line without its newline is kept; a bad line with its newline is not torn.
    expect(History.parse(`${good}\n${good}`)).toHaveLength(2);
    expect(() => History.parse(`${good}\n${torn}\n`)).toThrow(/^line 2/);
    expect(() => History.parse(`${torn}\n${good}`)).toThrow(/^line 1/);
  });

  it('skips blank lines', () => {
    const good = line({ f: 'poll', type: 'invoke' });
    expect(History.parse(`\n${good}\n\n${good}\n`)).toHaveLength(2);
  });
});

describe('files', () => {
  const dirs: { remove(): void }[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) dir.remove();
  });
  const dir = (): string => {
    const made = tempDir('sluice-history-');
    dirs.push(made);
    return made.path;
  };

  it('appends each event as it is recorded', () => {
    const file = join(dir(), 'h.jsonl');
    const history = new History({ file, now: ticking(0) });
    history.record(send);
    expect(readFileSync(file, 'utf8')).toBe(history.toJSONLines());
    history.record(sendOk);
    history.record(poll);
    history.close();
    history.record(poll); // memory only after close
    const loaded = History.load(file);
    expect(loaded).toEqual(history.events().slice(0, 3));
  });

  it('loads a file whose last line a kill cut short', () => {
    const file = join(dir(), 'h.jsonl');
    const history = new History({ file, now: ticking(0) });
    history.record(send);
    history.close();
    writeFileSync(file, `${readFileSync(file, 'utf8')}{"index":1,"time":1,"pro`);
    expect(History.load(file)).toHaveLength(1);
  });

  it('merges several files by time, stable, renumbering the indexes', () => {
    const base = dir();
    const a = new History({ file: join(base, 'a.jsonl'), now: ticking(10) }); // 10, 11, 12
    const b = new History({ file: join(base, 'b.jsonl'), now: ticking(11) }); // 11, 12
    a.record({ ...send, process: 'a' });
    a.record({ ...sendOk, process: 'a' });
    a.record({ ...poll, process: 'a' });
    b.record({ ...send, process: 'b' });
    b.record({ ...sendOk, process: 'b' });
    a.close();
    b.close();
    const merged: HistoryEvent[] = History.load(join(base, 'a.jsonl'), join(base, 'b.jsonl'));
    expect(merged.map((e) => [e.index, e.time, e.process, e.type])).toEqual([
      [0, 10, 'a', 'invoke'],
      [1, 11, 'a', 'ok'],
      [2, 11, 'b', 'invoke'],
      [3, 12, 'a', 'ok'],
      [4, 12, 'b', 'ok'],
    ]);
    expect(() => History.load(join(base, 'missing.jsonl'))).toThrow(/ENOENT/);
  });

  it('names the file in a parse error', () => {
    const file = join(dir(), 'bad.jsonl');
    writeFileSync(file, '{}\n');
    expect(() => History.load(file)).toThrow(`${file}: line 1: index must be a non-negative integer`);
  });
});
