import type { Connection } from './connection.js';
import { GroupMembership, keyOf, type TopicPartitionKey } from './internal/group-membership.js';
import { SluiceError, hasCode, isSluiceError } from './protocol/errors.js';
import type { OffsetSpec } from './protocol/messages/common.js';
import type { ResponseOf } from './protocol/messages/index.js';
import { fromErrorBody } from './protocol/messages/error.js';
import { ISOLATION_LEVELS, type IsolationLevel } from './protocol/messages/fetch.js';
import { decodeBatches } from './protocol/record-batch.js';
import { toMessage, type Message } from './value-codec.js';

export interface PollConsumerOptions {
  /** Topics to consume. */
  topics: readonly string[];
  /** Consumer group: partitions are shared among its members and progress is committed. Omit to read every partition alone. */
  group?: string;
  /**
   * Where to start a partition with no committed offset: 'earliest', 'latest' (the default, as in
   * Kafka), an exact `{ offset }` or the first message at or after `{ timestamp }` (ms). A position
   * that falls out of the log (retention) restarts from 'earliest', or 'latest' if that was asked.
   */
  from?: StartFrom;
  /** Commit processed messages every `autoCommitIntervalMs`, before giving partitions up, and on close. Default true with a group. */
  autoCommit?: boolean;
  autoCommitIntervalMs?: number;
  /** Long-poll wait per fetch. Default 500 ms. */
  maxWaitMs?: number;
  /** Bytes per fetch response (at least one batch is always returned). Default 4 MiB. */
  maxBytes?: number;
  /** Bytes per partition per fetch. Default 1 MiB. */
  maxPartitionBytes?: number;
  /**
   * 'read_committed' (the default): only messages of committed transactions, in offset order,
   * none of an aborted or still open transaction (a partition's messages wait behind the oldest
   * open transaction, its last stable offset). 'read_uncommitted': everything written, aborted
   * transactions included. Messages written outside transactions are read the same way by both.
   */
  isolation?: IsolationLevel;
  /** Closes the consumer when aborted. */
  signal?: AbortSignal;
}

/** The consumer's membership in its group, as a transactional offset commit names it. */
export interface GroupMemberInfo {
  readonly groupId: string;
  readonly memberId: string | undefined;
  readonly memberEpoch: number;
}

export type StartFrom = 'earliest' | 'latest' | { readonly offset: number } | { readonly timestamp: number };

interface Config {
  readonly topics: readonly string[];
  readonly group: string | undefined;
  readonly from: StartFrom;
  readonly autoCommit: boolean;
  readonly autoCommitIntervalMs: number;
  readonly maxWaitMs: number;
  readonly maxBytes: number;
  readonly maxPartitionBytes: number;
  readonly isolation: IsolationLevel;
}

interface PartitionState extends TopicPartitionKey {
  /** Where the partition started when it was assigned: its committed offset, else the `from` position. */
  readonly start: number;
  /** Next offset to fetch. */
  position: number;
  /** Everything below this offset has been processed (the offset a commit stores). */
  processed: number;
  /** What the group last committed for it, to skip no-op commits. */
  committed: number;
  paused: boolean;
}

/**
 * A Kafka-style consumer: long-polls its partitions and yields messages in offset order per
 * partition. At-least-once: a yielded message counts as processed when the iterator is asked
 * for the next one (or `commit()` is called), never earlier, so a crash or a throw inside the
 * loop body leads to redelivery, not loss. Reads read_committed by default: messages of
 * transactions only once committed, never those of aborted ones (docs/semantics.md).
 */
export class PollConsumer implements AsyncIterable<Message> {
  readonly #conn: Connection;
  readonly #config: Config;
  readonly #partitions = new Map<string, PartitionState>();
  #buffer: Message[] = [];
  /** Messages handed out (the last yielded one, or the last fetch()'s batch), not yet known processed. */
  #outstanding: Message[] = [];
  /** Rotates which partition leads each fetch, so later partitions are not starved. */
  #rotation = 0;
  #membership: GroupMembership | undefined;
  #started: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #assignmentChanges = 0;
  /** The tail of the assignment changes and seeks to committed offsets, which run one at a time. */
  #positioning: Promise<void> = Promise.resolve();
  #commitTimer: NodeJS.Timeout | undefined;
  readonly #stop = new AbortController();

  constructor(connection: Connection, options: PollConsumerOptions) {
    this.#conn = connection;
    this.#config = parseOptions(options);
    options.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  /** The partitions this consumer currently reads. */
  assignment(): TopicPartitionKey[] {
    return [...this.#partitions.values()].map(({ topic, partition }) => ({ topic, partition }));
  }

  /** The consumer group, if any. */
  get group(): string | undefined {
    return this.#config.group;
  }

  get isolation(): IsolationLevel {
    return this.#config.isolation;
  }

  /**
   * Counts changes of the assignment (partitions given or taken). A partition given to the
   * consumer starts at the group's committed offset as read at that moment, so code that commits
   * offsets in transactions compares this before and after one: a change in between may have
   * positioned a partition from offsets the transaction was about to replace.
   */
  get assignmentChanges(): number {
    return this.#assignmentChanges;
  }

  /** Whether the consumer commits on its own (a timer, rebalances, close). */
  get autoCommit(): boolean {
    return this.#config.autoCommit;
  }

  /**
   * The group member this consumer is now (id and epoch), for `tx.commitOffsets(groupId, offsets,
   * consumer.groupMember())`; undefined without a group or before it joined.
   */
  groupMember(): GroupMemberInfo | undefined {
    const group = this.#config.group;
    const membership = this.#membership;
    // Epoch 0: fenced or never joined, rejoining; its commits would be refused.
    if (group === undefined || membership === undefined || membership.memberId === undefined || membership.memberEpoch <= 0) return undefined;
    return { groupId: group, memberId: membership.memberId, memberEpoch: membership.memberEpoch };
  }

  /** Joins the group (or assigns every partition) and positions each partition. Idempotent. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    await this.start();
    let finished = false;
    try {
      for (;;) {
        this.#markProcessed();
        const message = this.#buffer.shift() ?? (await this.#refill());
        if (message === undefined) {
          finished = true;
          return;
        }
        this.#outstanding = [message];
        yield message;
      }
    } finally {
      // Left early (break, return or a throw in the loop body): the last message may not have
      // been processed, so rewind to it. It comes again rather than being lost.
      if (!finished) this.#rewindOutstanding();
    }
  }

  /**
   * One long poll: the messages available now (or after up to maxWaitMs). Calling it again
   * marks the previous result processed. `maxMessages` caps the result (the rest stay buffered
   * for the next call); `signal` ends the wait early with whatever is buffered (possibly nothing).
   */
  async fetch(options: { maxMessages?: number; signal?: AbortSignal } = {}): Promise<Message[]> {
    const { maxMessages, signal } = options;
    if (maxMessages !== undefined && (!Number.isInteger(maxMessages) || maxMessages < 1)) {
      throw new SluiceError('INVALID_CONFIG', `fetch maxMessages must be a positive integer, got ${String(maxMessages)}`);
    }
    await this.start();
    this.#markProcessed();
    if (this.#buffer.length === 0 && signal?.aborted !== true) await this.#fill(signal);
    let out = this.#buffer;
    if (maxMessages !== undefined && out.length > maxMessages) {
      this.#buffer = out.slice(maxMessages);
      out = out.slice(0, maxMessages);
    } else this.#buffer = [];
    // The whole batch is in the caller's hands until the next fetch() or commit().
    this.#outstanding = out;
    return out;
  }

  /** Moves a partition's position; buffered messages of it are dropped. */
  seek(topic: string, partition: number, offset: number): void {
    const state = this.#partitions.get(keyOf(topic, partition));
    if (state === undefined) throw new SluiceError('NOT_ASSIGNED', `${topic}/${partition} is not assigned to this consumer`);
    state.position = offset;
    state.processed = offset;
    this.#dropBuffered((m) => m.topic === topic && m.partition === partition);
    this.#outstanding = this.#outstanding.filter((m) => m.topic !== topic || m.partition !== partition);
  }

  /**
   * Moves every assigned partition back to the group's committed offset (where it started, if
   * the group has none for it), dropping what is buffered or outstanding: what was read since is
   * read again. After an aborted transaction, this makes its input come again
   * (client/exactly-once.ts). Needs a group.
   */
  async seekToCommitted(): Promise<void> {
    const group = this.#config.group;
    if (group === undefined) throw new SluiceError('INVALID_CONFIG', 'seekToCommitted needs a consumer group: pass `group` to the consumer');
    await this.start();
    // After any assignment in progress, which would otherwise set positions from older offsets.
    await this.#serially(() => this.#seekToCommitted(group));
  }

  /**
   * The group's committed offsets. While a transaction holding offsets of the group is still
   * finishing, the broker answers UNSTABLE_OFFSETS: wait and ask again, so a position is never
   * taken from offsets that commit is about to move.
   */
  async #fetchCommitted(group: string): Promise<ResponseOf<'FetchOffsets'>> {
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await this.#conn.request('FetchOffsets', { groupId: group });
      } catch (err) {
        if (!hasCode(err, 'UNSTABLE_OFFSETS') || this.#closed) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async #seekToCommitted(group: string): Promise<void> {
    const res = await this.#fetchCommitted(group);
    const committed = new Map(res.offsets.map((o) => [keyOf(o.topic, o.partition), o.offset]));
    this.#outstanding = [];
    for (const state of this.#partitions.values()) {
      const offset = committed.get(keyOf(state.topic, state.partition)) ?? state.start;
      state.position = offset;
      state.processed = offset;
      if (committed.has(keyOf(state.topic, state.partition))) state.committed = offset;
    }
    this.#buffer = [];
  }

  pause(partitions: readonly TopicPartitionKey[]): void {
    this.#setPaused(partitions, true);
  }

  resume(partitions: readonly TopicPartitionKey[]): void {
    this.#setPaused(partitions, false);
  }

  /**
   * Commits progress: by default everything yielded so far (call it after processing), or the
   * given offsets (each the next offset to read).
   */
  async commit(offsets?: readonly { topic: string; partition: number; offset: number }[]): Promise<void> {
    if (offsets === undefined) this.#markProcessed();
    const list = offsets ?? [...this.#partitions.values()].filter((p) => p.processed > p.committed).map(({ topic, partition, processed }) => ({ topic, partition, offset: processed }));
    await this.#commit(list);
  }

  /** Stops fetching, commits what was processed (with autoCommit), and leaves the group. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    clearInterval(this.#commitTimer);
    try {
      await this.#started;
    } catch {
      // A consumer that never started has nothing to commit.
    }
    if (this.#config.autoCommit && this.#membership !== undefined) await this.#commitProcessed().catch(() => undefined);
    await this.#membership?.leave();
    this.#partitions.clear();
    this.#buffer = [];
  }

  async #start(): Promise<void> {
    const { group, topics } = this.#config;
    if (group === undefined) {
      const all: TopicPartitionKey[] = [];
      for (const topic of topics) {
        const described = await this.#conn.request('DescribeTopic', { topic });
        for (const p of described.partitions) all.push({ topic, partition: p.partition });
      }
      await this.#assign(all);
      return;
    }
    this.#membership = new GroupMembership(this.#conn, group, topics, {
      assigned: (tps) => this.#serially(() => this.#assign(tps)),
      revoked: (tps, fenced) => this.#serially(() => this.#revoke(tps, fenced)),
      error: () => undefined, // heartbeats retry on their own; the next success catches up
    });
    await this.#membership.start();
    if (this.#config.autoCommit) {
      this.#commitTimer = setInterval(() => void this.#commitProcessed().catch(() => undefined), this.#config.autoCommitIntervalMs);
      this.#commitTimer.unref();
    }
  }

  /** Runs `fn` after every earlier assignment change or seekToCommitted has finished. */
  #serially(fn: () => Promise<void>): Promise<void> {
    const run = this.#positioning.then(fn);
    this.#positioning = run.catch(() => undefined);
    return run;
  }

  async #assign(tps: readonly TopicPartitionKey[]): Promise<void> {
    this.#assignmentChanges++;
    const committed = new Map<string, number>();
    if (this.#config.group !== undefined) {
      const res = await this.#fetchCommitted(this.#config.group);
      for (const o of res.offsets) committed.set(keyOf(o.topic, o.partition), o.offset);
    }
    const missing = tps.filter((tp) => !committed.has(keyOf(tp.topic, tp.partition)));
    const starts = await this.#resolve(missing, this.#config.from);
    for (const tp of tps) {
      const key = keyOf(tp.topic, tp.partition);
      const c = committed.get(key);
      const position = c ?? starts.get(key) ?? 0;
      this.#partitions.set(key, { ...tp, start: position, position, processed: position, committed: c ?? -1, paused: false });
    }
  }

  async #revoke(tps: readonly TopicPartitionKey[], fenced: boolean): Promise<void> {
    this.#assignmentChanges++;
    const keys = new Set(tps.map((tp) => keyOf(tp.topic, tp.partition)));
    this.#dropBuffered((m) => keys.has(keyOf(m.topic, m.partition)));
    if (!fenced && this.#config.autoCommit) {
      const revoked = tps.map((tp) => this.#partitions.get(keyOf(tp.topic, tp.partition))).filter((p): p is PartitionState => p !== undefined);
      const offsets = revoked.filter((p) => p.processed > p.committed).map(({ topic, partition, processed }) => ({ topic, partition, offset: processed }));
      await this.#commit(offsets).catch(() => undefined);
    }
    for (const key of keys) this.#partitions.delete(key);
  }

  /** Resolves a starting point to an offset per partition. */
  async #resolve(tps: readonly TopicPartitionKey[], from: StartFrom): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (tps.length === 0) return out;
    if (typeof from === 'object' && 'offset' in from) {
      for (const tp of tps) out.set(keyOf(tp.topic, tp.partition), from.offset);
      return out;
    }
    const at: OffsetSpec = typeof from === 'object' ? from.timestamp : from;
    const isolation = this.#config.isolation;
    const res = await this.#conn.request('ListOffsets', { ...(isolation === 'read_committed' ? { isolation } : {}), partitions: tps.map((tp) => ({ ...tp, at })) });
    for (const p of res.partitions) {
      if (p.error !== undefined) throw fromErrorBody(p.error);
      out.set(keyOf(p.topic, p.partition), p.offset);
    }
    return out;
  }

  async #refill(): Promise<Message | undefined> {
    while (!this.#closed) {
      await this.#fill();
      const next = this.#buffer.shift();
      if (next !== undefined) return next;
    }
    return undefined;
  }

  /** One long poll over every unpaused partition; appends what arrives to the buffer. */
  async #fill(signal?: AbortSignal): Promise<void> {
    const all = [...this.#partitions.values()].filter((p) => !p.paused);
    const lead = all.length === 0 ? 0 : this.#rotation++ % all.length;
    const fetchable = [...all.slice(lead), ...all.slice(0, lead)];
    // What each partition was asked from: a seek, pause or revocation while the poll is out
    // makes its answer for that partition stale.
    const asked = new Map(fetchable.map((p) => [p, p.position]));
    if (fetchable.length === 0) {
      await new Promise((r) => setTimeout(r, Math.min(this.#config.maxWaitMs, 100)));
      return;
    }
    const { maxWaitMs, maxBytes, maxPartitionBytes, isolation } = this.#config;
    let res;
    try {
      res = await this.#conn.request(
        'Fetch',
        {
          maxWaitMs,
          minBytes: 1,
          maxBytes,
          ...(isolation === 'read_committed' ? { isolation } : {}),
          partitions: fetchable.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.position, maxBytes: maxPartitionBytes })),
        },
        { timeoutMs: maxWaitMs + 30_000, signal: signal === undefined ? this.#stop.signal : AbortSignal.any([this.#stop.signal, signal]) },
      );
    } catch (err) {
      if (this.#closed || hasCode(err, 'ABORTED')) return;
      // A connection that will not come back (closed, or reconnect off) ends the iteration.
      if (isSluiceError(err) && err.retriable && this.#conn.state !== 'closed') {
        await new Promise((r) => setTimeout(r, 100));
        return;
      }
      throw err;
    }
    const reset: PartitionState[] = [];
    for (const fetched of res.partitions) {
      const state = this.#partitions.get(keyOf(fetched.topic, fetched.partition));
      // Revoked, moved or paused while the poll was out: what it returned is not ours to yield.
      if (state === undefined || state.paused || asked.get(state) !== state.position) continue;
      if (fetched.error !== undefined) {
        if (fetched.error.name === 'OFFSET_OUT_OF_RANGE') reset.push(state);
        else throw fromErrorBody(fetched.error);
        continue;
      }
      for (const record of decodeBatches(fetched.records)) {
        if (record.offset < state.position) continue; // a batch may start before the position
        this.#buffer.push(toMessage(fetched.topic, fetched.partition, record));
        state.position = record.offset + 1;
      }
      // Past what the broker examined and left out (transaction markers, aborted transactions
      // under read_committed), so that a partition of left-out batches does not stall.
      if (fetched.nextOffset > state.position) state.position = fetched.nextOffset;
    }
    if (reset.length > 0) {
      const policy = this.#config.from === 'latest' ? 'latest' : 'earliest';
      const starts = await this.#resolve(reset, policy);
      for (const state of reset) state.position = state.processed = starts.get(keyOf(state.topic, state.partition)) ?? state.position;
    }
  }

  #markProcessed(): void {
    for (const m of this.#outstanding) this.#advanceProcessed(m);
    this.#outstanding = [];
  }

  /** Forgets the outstanding messages without marking them, and fetches them again. */
  #rewindOutstanding(): void {
    const outstanding = this.#outstanding;
    this.#outstanding = [];
    for (const m of outstanding) {
      const state = this.#partitions.get(keyOf(m.topic, m.partition));
      if (state !== undefined && m.offset < state.position) {
        state.position = m.offset;
        this.#dropBuffered((b) => b.topic === m.topic && b.partition === m.partition);
      }
    }
  }

  #advanceProcessed(m: Message): void {
    const state = this.#partitions.get(keyOf(m.topic, m.partition));
    if (state !== undefined && m.offset + 1 > state.processed) state.processed = m.offset + 1;
  }

  async #commitProcessed(): Promise<void> {
    const offsets = [...this.#partitions.values()].filter((p) => p.processed > p.committed).map(({ topic, partition, processed }) => ({ topic, partition, offset: processed }));
    await this.#commit(offsets);
  }

  async #commit(offsets: readonly { topic: string; partition: number; offset: number }[]): Promise<void> {
    const group = this.#config.group;
    if (group === undefined) throw new SluiceError('INVALID_CONFIG', 'commit needs a consumer group: pass `group` to the consumer');
    if (offsets.length === 0) return;
    const membership = this.#membership;
    await this.#conn.request('CommitOffsets', {
      groupId: group,
      memberEpoch: membership?.memberEpoch ?? -1,
      ...(membership?.memberId === undefined ? {} : { memberId: membership.memberId }),
      offsets,
    });
    for (const o of offsets) {
      const state = this.#partitions.get(keyOf(o.topic, o.partition));
      if (state !== undefined && o.offset > state.committed) state.committed = o.offset;
    }
  }

  #dropBuffered(match: (m: Message) => boolean): void {
    const dropped = this.#buffer.filter(match);
    this.#buffer = this.#buffer.filter((m) => !match(m));
    // Rewind so the dropped messages are fetched again if the partition stays ours.
    for (const m of dropped) {
      const state = this.#partitions.get(keyOf(m.topic, m.partition));
      if (state !== undefined && m.offset < state.position) state.position = m.offset;
    }
  }

  #setPaused(partitions: readonly TopicPartitionKey[], paused: boolean): void {
    for (const tp of partitions) {
      const state = this.#partitions.get(keyOf(tp.topic, tp.partition));
      if (state === undefined) throw new SluiceError('NOT_ASSIGNED', `${tp.topic}/${tp.partition} is not assigned to this consumer`);
      state.paused = paused;
      if (paused) this.#dropBuffered((m) => m.topic === tp.topic && m.partition === tp.partition);
    }
  }
}

function parseOptions(o: PollConsumerOptions): Config {
  if (!Array.isArray(o.topics) || o.topics.length === 0 || o.topics.some((t) => typeof t !== 'string')) {
    throw new SluiceError('INVALID_CONFIG', 'consumer option topics must be a non-empty array of topic names');
  }
  const positive = (v: number | undefined, fallback: number, name: string): number => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v <= 0) throw new SluiceError('INVALID_CONFIG', `consumer option ${name} must be a positive integer, got ${v}`);
    return v;
  };
  return Object.freeze({
    topics: [...o.topics],
    group: o.group,
    from: parseStartFrom(o.from),
    autoCommit: o.group !== undefined && (o.autoCommit ?? true),
    autoCommitIntervalMs: positive(o.autoCommitIntervalMs, 1_000, 'autoCommitIntervalMs'),
    maxWaitMs: positive(o.maxWaitMs, 500, 'maxWaitMs'),
    maxBytes: positive(o.maxBytes, 4 << 20, 'maxBytes'),
    maxPartitionBytes: positive(o.maxPartitionBytes, 1 << 20, 'maxPartitionBytes'),
    isolation: parseIsolation(o.isolation),
  });
}

function parseIsolation(isolation: IsolationLevel | undefined): IsolationLevel {
  if (isolation === undefined) return 'read_committed';
  if (!ISOLATION_LEVELS.includes(isolation)) {
    throw new SluiceError('INVALID_CONFIG', `consumer option isolation must be 'read_committed' or 'read_uncommitted', got ${JSON.stringify(isolation)}`);
  }
  return isolation;
}

function parseStartFrom(from: StartFrom | undefined): StartFrom {
  if (from === undefined) return 'latest';
  if (from === 'earliest' || from === 'latest') return from;
  const n = typeof from === 'object' && from !== null ? ('offset' in from ? from.offset : 'timestamp' in from ? from.timestamp : NaN) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new SluiceError('INVALID_CONFIG', "consumer option from must be 'earliest', 'latest', { offset } or { timestamp } with a non-negative integer");
  }
  return from;
}
