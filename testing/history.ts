/**
 * The history of a test run: what every client asked the broker and what it got back, as
 * JSON lines (one event per line), recorded while the run happens and checked afterwards by
 * `checkHistory` (checker.ts).
 *
 * Line format, one JSON object per line:
 *   { index, time, process, type, f, ...fields }
 *   index    0-based order in its recorder (renumbered by `History.load` when merging files)
 *   time     ms since the epoch, float (`performance.timeOrigin + performance.now()`)
 *   process  a client, consumer or producer name; a restarted consumer takes a new name
 *   type     'invoke' | 'ok' | 'fail' | 'unknown' (unknown: the request may or may not have
 *            taken effect, e.g. a timeout or a connection cut after it was sent)
 *   f        'send' | 'poll' | 'deliver' | 'ack' | 'txn' | 'assign' | 'fault'
 * The fields each (f, type) pair carries are the `SHAPES` table below; unknown keys are
 * rejected so a misspelt field fails loudly instead of being ignored by the checker.
 */
import { Buffer } from 'node:buffer';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** A topic-partition. */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** A position in a partition's log. */
export interface PartitionOffset extends TopicPartition {
  readonly offset: number;
}

/** One record as a consumer saw it: where it was and the value it held. */
export interface RecordRef extends PartitionOffset {
  readonly value: string;
}

/** The outcome of an operation: asked, done, definitely not done, or not known. */
export type EventType = 'invoke' | 'ok' | 'fail' | 'unknown';

interface Stamp {
  readonly index: number;
  readonly time: number;
  readonly process: string;
}

interface SendFields {
  readonly f: 'send';
  readonly topic: string;
  /** Unique per send: the checker follows messages by value. */
  readonly value: string;
  readonly txn?: string;
}

/** A produce of one message; `ok` says where it was written. */
export type SendEvent = Stamp &
  SendFields &
  (
    | { readonly type: 'invoke' }
    | { readonly type: 'ok'; readonly partition: number; readonly offset: number }
    | { readonly type: 'fail' | 'unknown'; readonly error: string }
  );

/** A long-poll consumer's fetch; `ok` carries the records it returned, in order. */
export type PollEvent = Stamp & { readonly f: 'poll' } & (
    | { readonly type: 'invoke' }
    | { readonly type: 'ok'; readonly records: readonly RecordRef[] }
    | { readonly type: 'fail' | 'unknown'; readonly error: string }
  );

/** A push consumer received messages. An observation only: delivery is not consumption. */
export type DeliverEvent = Stamp & {
  readonly f: 'deliver';
  readonly type: 'ok';
  readonly records: readonly RecordRef[];
};

/** A push consumer acknowledged messages: processed, whatever the ack's outcome (checker.ts). */
export type AckEvent = Stamp & { readonly f: 'ack'; readonly records: readonly RecordRef[] } & (
    | { readonly type: 'invoke' | 'ok' }
    | { readonly type: 'fail' | 'unknown'; readonly error: string }
  );

/** The end of a transaction: `ok` committed, `fail` aborted, `unknown` either. */
export type TxnEvent = Stamp & { readonly f: 'txn'; readonly txn: string } & (
    | { readonly type: 'invoke' | 'ok' }
    | { readonly type: 'fail' | 'unknown'; readonly error?: string }
  );

/**
 * A poll consumer was (re)positioned: `offset` is the next offset it will read. Resets the
 * checker's monotonicity tracking for those partitions of that process.
 */
export type AssignEvent = Stamp & {
  readonly f: 'assign';
  readonly type: 'ok';
  readonly partitions: readonly PartitionOffset[];
};

/** The nemesis did something (kill, pause, power-cut, cut...). Ignored by the checks. */
export type FaultEvent = Stamp & {
  readonly f: 'fault';
  readonly type: 'ok';
  readonly fault: string;
  readonly detail?: string;
};

/** One line of a history. */
export type HistoryEvent =
  | SendEvent
  | PollEvent
  | DeliverEvent
  | AckEvent
  | TxnEvent
  | AssignEvent
  | FaultEvent;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What a caller passes to `History.record`: an event before it is stamped. */
export type HistoryEventInput = DistributiveOmit<HistoryEvent, 'index' | 'time'>;

/** A history line (or recorded event) that does not have the expected shape. */
export class HistoryFormatError extends Error {
  override readonly name = 'HistoryFormatError';
  /** 1-based line number, when the event came from text. */
  readonly line: number | undefined;
  constructor(message: string, line?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.line = line;
  }
}

type FieldKind = 'string' | 'nat' | 'records' | 'partitions';
interface Shape {
  readonly required: Readonly<Record<string, FieldKind>>;
  readonly optional?: Readonly<Record<string, FieldKind>>;
}

const SEND = { topic: 'string', value: 'string' } as const;
const TXN = { txn: 'string' } as const;
const ERROR = { error: 'string' } as const;
const RECORDS = { records: 'records' } as const;

/** The fields each (f, type) pair carries, beyond index, time, process, type and f. */
const SHAPES: Readonly<Record<HistoryEvent['f'], Partial<Record<EventType, Shape>>>> = {
  send: {
    invoke: { required: SEND, optional: TXN },
    ok: { required: { ...SEND, partition: 'nat', offset: 'nat' }, optional: TXN },
    fail: { required: { ...SEND, ...ERROR }, optional: TXN },
    unknown: { required: { ...SEND, ...ERROR }, optional: TXN },
  },
  poll: {
    invoke: { required: {} },
    ok: { required: RECORDS },
    fail: { required: ERROR },
    unknown: { required: ERROR },
  },
  deliver: { ok: { required: RECORDS } },
  ack: {
    invoke: { required: RECORDS },
    ok: { required: RECORDS },
    fail: { required: { ...RECORDS, ...ERROR } },
    unknown: { required: { ...RECORDS, ...ERROR } },
  },
  txn: {
    invoke: { required: TXN },
    ok: { required: TXN },
    fail: { required: TXN, optional: ERROR },
    unknown: { required: TXN, optional: ERROR },
  },
  assign: { ok: { required: { partitions: 'partitions' } } },
  fault: { ok: { required: { fault: 'string' }, optional: { detail: 'string' } } },
};

const STAMP_KEYS = new Set(['index', 'time', 'process', 'type', 'f']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNat(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Checks one position object: exact keys, string topic, natural partition and offset. */
function checkPosition(value: unknown, withValue: boolean, path: string): string | undefined {
  if (!isRecord(value)) return `${path} must be an object`;
  const keys = withValue ? ['topic', 'partition', 'offset', 'value'] : ['topic', 'partition', 'offset'];
  for (const key of Object.keys(value)) if (!keys.includes(key)) return `${path}.${key} is not allowed`;
  if (typeof value['topic'] !== 'string') return `${path}.topic must be a string`;
  if (!isNat(value['partition'])) return `${path}.partition must be a non-negative integer`;
  if (!isNat(value['offset'])) return `${path}.offset must be a non-negative integer`;
  if (withValue && typeof value['value'] !== 'string') return `${path}.value must be a string`;
  return undefined;
}

function checkField(value: unknown, kind: FieldKind, path: string): string | undefined {
  switch (kind) {
    case 'string':
      return typeof value === 'string' ? undefined : `${path} must be a string`;
    case 'nat':
      return isNat(value) ? undefined : `${path} must be a non-negative integer`;
    case 'records':
    case 'partitions': {
      if (!Array.isArray(value)) return `${path} must be an array`;
      for (let i = 0; i < value.length; i++) {
        const problem = checkPosition(value[i], kind === 'records', `${path}[${i}]`);
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
  }
}

/** Why `value` is not a valid `HistoryEvent`, or undefined when it is. */
function eventProblem(value: unknown): string | undefined {
  if (!isRecord(value)) return 'an event must be a JSON object';
  if (!isNat(value['index'])) return 'index must be a non-negative integer';
  if (typeof value['time'] !== 'number' || !Number.isFinite(value['time'])) return 'time must be a finite number';
  if (typeof value['process'] !== 'string' || value['process'] === '') return 'process must be a non-empty string';
  const f = value['f'];
  if (typeof f !== 'string' || !Object.hasOwn(SHAPES, f)) return `unknown f ${JSON.stringify(f)}`;
  const type = value['type'];
  const shapes = SHAPES[f as HistoryEvent['f']];
  const shape = typeof type === 'string' && Object.hasOwn(shapes, type) ? shapes[type as EventType] : undefined;
  if (shape === undefined) return `type ${JSON.stringify(type)} is not allowed for f '${f}'`;
  for (const [key, kind] of Object.entries(shape.required)) {
    const problem = checkField(value[key], kind, key);
    if (problem !== undefined) return problem;
  }
  for (const key of Object.keys(value)) {
    if (STAMP_KEYS.has(key) || Object.hasOwn(shape.required, key)) continue;
    const kind = shape.optional?.[key];
    if (kind === undefined) return `field '${key}' is not allowed in a ${f} ${type as string} event`;
    const problem = checkField(value[key], kind, key);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** Options for `new History()`. */
export interface HistoryOptions {
  /** Append each event to this file as a JSON line, synchronously, as it is recorded. */
  readonly file?: string;
  /** The clock, in ms; defaults to `performance.timeOrigin + performance.now()`. */
  readonly now?: () => number;
}

/** Options for `History.parse`. */
export interface ParseOptions {
  /**
   * Drop a last line that is not valid JSON and has no newline after it: the line a process
   * killed mid-write leaves behind. Default true. Any other bad line is an error.
   */
  readonly tolerateTornTail?: boolean;
  /** A name for error messages, e.g. the file the text came from. */
  readonly source?: string;
}

const defaultNow = (): number => performance.timeOrigin + performance.now();

/**
 * Records a history in memory and, with `file`, on disk as it goes. Each line is written with
 * one synchronous write, so a recorder killed with SIGKILL loses at most the line in flight;
 * `History.parse` drops that torn line.
 */
export class History {
  readonly #events: HistoryEvent[] = [];
  readonly #now: () => number;
  #fd: number | undefined;

  constructor(options: HistoryOptions = {}) {
    this.#now = options.now ?? defaultNow;
    if (options.file !== undefined) this.#fd = openSync(options.file, 'a');
  }

  /** Stamps `event` with the next index and the current time, keeps it and appends it to the file. */
  record(event: HistoryEventInput): HistoryEvent {
    // index and time first in each line, for people reading the file.
    const stamped: Record<string, unknown> = { index: 0, time: 0, ...event };
    stamped['index'] = this.#events.length;
    stamped['time'] = this.#now();
    const problem = eventProblem(stamped);
    if (problem !== undefined) throw new HistoryFormatError(`bad event: ${problem}`);
    const recorded = stamped as unknown as HistoryEvent;
    this.#events.push(recorded);
    if (this.#fd !== undefined) writeAll(this.#fd, `${JSON.stringify(recorded)}\n`);
    return recorded;
  }

  /** The events recorded so far, in order. */
  events(): readonly HistoryEvent[] {
    return this.#events;
  }

  /** The events as JSON lines, each ending with a newline. */
  toJSONLines(): string {
    return this.#events.map((event) => `${JSON.stringify(event)}\n`).join('');
  }

  /** Closes the file, if any; later events are kept in memory only. */
  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** Parses JSON lines into events, checking each line's shape; errors name the line number. */
  static parse(text: string, options: ParseOptions = {}): HistoryEvent[] {
    const tolerate = options.tolerateTornTail ?? true;
    const where = options.source === undefined ? 'line' : `${options.source}: line`;
    const lines = text.split('\n');
    const events: HistoryEvent[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? '';
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (error) {
        // The last line with no newline after it is the one a kill can cut short.
        if (tolerate && i === lines.length - 1) break;
        throw new HistoryFormatError(`${where} ${i + 1}: not valid JSON`, i + 1, { cause: error });
      }
      const problem = eventProblem(parsed);
      if (problem !== undefined) throw new HistoryFormatError(`${where} ${i + 1}: ${problem}`, i + 1);
      events.push(parsed as HistoryEvent);
    }
    return events;
  }

  /**
   * Reads the histories several processes wrote and merges them by time (stable: file order,
   * then line order, breaks ties). Indexes are renumbered to the merged order so they stay unique.
   */
  static load(...files: string[]): HistoryEvent[] {
    const merged = files.flatMap((file) => History.parse(readFileSync(file, 'utf8'), { source: file }));
    merged.sort((a, b) => a.time - b.time); // Array.prototype.sort is stable.
    return merged.map((event, index) => ({ ...event, index }));
  }
}

function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  let written = 0;
  while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
}
