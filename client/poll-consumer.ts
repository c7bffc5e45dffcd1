import type { Connection } from './connection.js';
import { GroupMembership, keyOf, type TopicPartitionKey } from './internal/group-membership.js';
import { requestFetch, takeFetched } from './internal/poll-fetch.js';
import { parsePollConsumerOptions, type PollConsumerConfig } from './internal/poll-options.js';
import { advanceProcessed, fetchCommitted, recordCommitted, resolveStart, uncommittedOffsets, type PartitionState } from './internal/poll-partitions.js';
import { SluiceError } from './protocol/errors.js';
import type { IsolationLevel } from './protocol/messages/fetch.js';
import type { Message } from './value-codec.js';

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
  /**
   * Called whenever partitions are (re)positioned: assigned (at the committed offset or the
   * start), reset after a position fell out of the log, moved by `seek`/`seekToCommitted`, or
   * rewound to an unprocessed message. The next message read from each is at or after `offset`;
   * what came before may be read again (at-least-once), which is how a history recorder
   * (sluice/testing) tells a legitimate re-read from an out-of-order one. Runs synchronously;
   * an exception it throws is reported as a process warning and otherwise ignored.
   */
  onPosition?: (changes: readonly PositionChange[]) => void;
}

/** A partition's new read position, and why it moved (PollConsumerOptions.onPosition). */
export interface PositionChange {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly reason: 'assigned' | 'reset' | 'seek' | 'rewind';
}

/** The consumer's membership in its group, as a transactional offset commit names it. */
export interface GroupMemberInfo {
  readonly groupId: string;
  readonly memberId: string | undefined;
  readonly memberEpoch: number;
}

export type StartFrom = 'earliest' | 'latest' | { readonly offset: number } | { readonly timestamp: number };

/**
 * A Kafka-style consumer: long-polls its partitions and yields messages in offset order per
 * partition. At-least-once: a yielded message counts as processed when the iterator is asked
 * for the next one (or `commit()` is called), never earlier, so a crash or a throw inside the
 * loop body leads to redelivery, not loss. Reads read_committed by default: messages of
 * transactions only once committed, never those of aborted ones (docs/semantics.md).
 */
export class PollConsumer implements AsyncIterable<Message> {
  readonly #conn: Connection;
  readonly #config: PollConsumerConfig;
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
    this.#config = parsePollConsumerOptions(options);
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
    // Drop first: dropping rewinds the position to the first dropped message, undoing a forward seek.
    this.#dropBuffered((m) => m.topic === topic && m.partition === partition);
    state.position = offset;
    state.processed = offset;
    this.#outstanding = this.#outstanding.filter((m) => m.topic !== topic || m.partition !== partition);
    this.#positioned([state], 'seek');
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

  async #seekToCommitted(group: string): Promise<void> {
    const res = await fetchCommitted(this.#conn, group, () => this.#closed);
    const committed = new Map(res.offsets.map((o) => [keyOf(o.topic, o.partition), o.offset]));
    this.#outstanding = [];
    for (const state of this.#partitions.values()) {
      const offset = committed.get(keyOf(state.topic, state.partition)) ?? state.start;
      state.position = offset;
      state.processed = offset;
      if (committed.has(keyOf(state.topic, state.partition))) state.committed = offset;
    }
    this.#buffer = [];
    this.#positioned([...this.#partitions.values()], 'seek');
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
    await this.#commit(offsets ?? uncommittedOffsets(this.#partitions.values()));
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
      const res = await fetchCommitted(this.#conn, this.#config.group, () => this.#closed);
      for (const o of res.offsets) committed.set(keyOf(o.topic, o.partition), o.offset);
    }
    const missing = tps.filter((tp) => !committed.has(keyOf(tp.topic, tp.partition)));
    const starts = await resolveStart(this.#conn, missing, this.#config.from, this.#config.isolation);
    for (const tp of tps) {
      const key = keyOf(tp.topic, tp.partition);
      const c = committed.get(key);
      const position = c ?? starts.get(key) ?? 0;
      this.#partitions.set(key, { ...tp, start: position, position, processed: position, committed: c ?? -1, paused: false });
    }
    this.#positioned(tps.map((tp) => this.#partitions.get(keyOf(tp.topic, tp.partition))).filter((p): p is PartitionState => p !== undefined), 'assigned');
  }

  async #revoke(tps: readonly TopicPartitionKey[], fenced: boolean): Promise<void> {
    this.#assignmentChanges++;
    const keys = new Set(tps.map((tp) => keyOf(tp.topic, tp.partition)));
    this.#dropBuffered((m) => keys.has(keyOf(m.topic, m.partition)));
    if (!fenced && this.#config.autoCommit) {
      const revoked = tps.map((tp) => this.#partitions.get(keyOf(tp.topic, tp.partition))).filter((p): p is PartitionState => p !== undefined);
      await this.#commit(uncommittedOffsets(revoked)).catch(() => undefined);
    }
    for (const key of keys) this.#partitions.delete(key);
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
    const stop = signal === undefined ? this.#stop.signal : AbortSignal.any([this.#stop.signal, signal]);
    const res = await requestFetch(this.#conn, this.#config, fetchable, stop, () => this.#closed);
    if (res === undefined) return;
    const reset = takeFetched(res, this.#partitions, asked, this.#buffer);
    if (reset.length > 0) {
      const policy = this.#config.from === 'latest' ? 'latest' : 'earliest';
      const starts = await resolveStart(this.#conn, reset, policy, this.#config.isolation);
      for (const state of reset) state.position = state.processed = starts.get(keyOf(state.topic, state.partition)) ?? state.position;
      this.#positioned(reset, 'reset');
    }
  }

  #markProcessed(): void {
    for (const m of this.#outstanding) advanceProcessed(this.#partitions, m);
    this.#outstanding = [];
  }

  /** Forgets the outstanding messages without marking them, and fetches them again. */
  #rewindOutstanding(): void {
    const outstanding = this.#outstanding;
    this.#outstanding = [];
    const rewound = new Set<PartitionState>();
    for (const m of outstanding) {
      const state = this.#partitions.get(keyOf(m.topic, m.partition));
      if (state !== undefined && m.offset < state.position) {
        state.position = m.offset;
        rewound.add(state);
        this.#dropBuffered((b) => b.topic === m.topic && b.partition === m.partition);
      }
    }
    this.#positioned([...rewound], 'rewind');
  }

  #positioned(states: readonly PartitionState[], reason: PositionChange['reason']): void {
    if (this.#config.onPosition === undefined || states.length === 0) return;
    try {
      this.#config.onPosition(states.map((s) => ({ topic: s.topic, partition: s.partition, offset: s.position, reason })));
    } catch (err) {
      // A throwing callback must not leave an assignment or a fetch half done.
      process.emitWarning(`PollConsumer onPosition threw: ${String(err)}`);
    }
  }

  async #commitProcessed(): Promise<void> {
    await this.#commit(uncommittedOffsets(this.#partitions.values()));
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
    recordCommitted(this.#partitions, offsets);
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
