/**
 * Transactions, the SDK side: what `producer.transaction(fn)` does (docs/semantics.md,
 * "Transactions"; the wire contract is client/protocol/messages/transactions.ts).
 *
 *   1. The producer's identity for its transactional id (InitProducer, once; it fences older
 *      instances and aborts what they left open).
 *   2. `fn(tx)` runs. Its sends are TRANSACTIONAL batches (the first one to a partition adds the
 *      partition to the transaction on the broker); `tx.commitOffsets` stages consumer-group
 *      offsets (TxnCommitOffsets) and `tx.ack` stages push acks (TxnSettle).
 *   3. Every send and staging of the transaction settles: an EndTxn that overtook one of its
 *      batches would fence that batch, and the batch's sends would never resolve.
 *   4. All went well: EndTxn(commit). Otherwise (fn threw, a send or a staging failed):
 *      EndTxn(abort), and the call rejects with the first error.
 *   5. EndTxn answers with the producer id and epoch to continue with (the epoch is bumped by
 *      every transaction, so no late request of this one can touch the next); every partition's
 *      sequence starts at 0 again under it.
 *
 * What can go wrong at the end, and what the producer does about it:
 * - TRANSACTION_ABORTED from EndTxn(commit) (the broker aborted it: its timeout passed, or a
 *   staged ack went stale): the call rejects with it; the producer goes on with the id and
 *   epoch in its details.
 * - PRODUCER_FENCED: a newer instance with the same transactional id took over. The producer is
 *   closed; every pending and later call fails with this error.
 * - A batch fenced while EndTxn(abort) still works: the broker had aborted the transaction on
 *   its timeout (which also bumps the epoch). The call rejects with TRANSACTION_ABORTED.
 * - No answer to EndTxn within the retry budget (the broker unreachable): the outcome is
 *   unknown. The call rejects with that error, and the next transaction (or initTransactions())
 *   first calls InitProducer, which finishes a decided transaction and aborts an undecided one,
 *   so from then on the outcome is settled and readable (committed offsets, read_committed).
 */
import type { Connection, RequestOptions } from './connection.js';
import { sleep } from './internal/backoff.js';
import { retryDelay } from './partitioner.js';
import { SluiceError, hasCode, isSluiceError } from './protocol/errors.js';
import type { TxnSettleItem } from './protocol/messages/transactions.js';
import type { ProducerMessage, RecordMetadata } from './producer.js';
import type { PushMessage } from './push-consumer.js';

/** The producer id and epoch a producer stamps its batches with. */
export interface ProducerIdentity {
  readonly producerId: number;
  readonly producerEpoch: number;
}

/** A consumer-group member, as the group knows it: what `PollConsumer.groupMember()` returns. */
export interface GroupMember {
  readonly memberId?: string | undefined;
  readonly memberEpoch: number;
}

/** An offset to commit: the next offset to read in the partition (the last processed + 1). */
export interface TransactionOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly metadata?: string | null;
}

/** Whatever received a push message: a PushConsumer (its `consumerId`). */
export interface AckSource {
  readonly consumerId: string | undefined;
}

/** What a transaction needs of its producer (client/producer.ts builds it). */
export interface TransactionHost {
  readonly connection: Connection;
  readonly transactionalId: string;
  readonly requestOptions: RequestOptions;
  /** How long InitProducer, EndTxn and stagings are retried on retriable errors. */
  readonly retryBudgetMs: number;
  /** The current identity, after an InitProducer if there is none. */
  identity(): Promise<ProducerIdentity>;
  adopt(identity: ProducerIdentity): void;
  /** The identity is in doubt: InitProducer before it is used again. */
  forget(): void;
  fence(error: SluiceError): void;
  fatal(): SluiceError | undefined;
  closed(): boolean;
  begin(tx: Transaction): void;
  end(): void;
  send(message: ProducerMessage, options?: { signal?: AbortSignal }): Promise<RecordMetadata>;
  flush(): Promise<void>;
}

/** What runTransaction and its Transaction share. */
interface TxnState {
  open: boolean;
  /** Anything was sent or staged: there is something for EndTxn to end. */
  touched: boolean;
  /** The first send or staging that failed. */
  failure: { readonly error: unknown } | undefined;
  /** Every send and staging, each settling (never rejecting) once it is done. */
  readonly pending: Promise<void>[];
  /** Push messages acked in it, released from their consumer's window after the commit. */
  readonly acked: PushMessage[];
  /** Acks of this turn of the event loop, by consumer id: sent as one TxnSettle each. */
  acks: Map<string, { items: TxnSettleItem[]; waiters: { resolve(): void; reject(err: unknown): void }[] }> | undefined;
}

/**
 * One open transaction, handed to the function given to `producer.transaction()`. Its methods
 * work while that function runs; afterwards they reject with INVALID_TXN_STATE.
 */
export class Transaction {
  readonly #host: TransactionHost;
  readonly #identity: ProducerIdentity;
  readonly #state: TxnState;

  /** Made by `producer.transaction()`, not by hand. */
  constructor(host: TransactionHost, identity: ProducerIdentity, state: unknown) {
    this.#host = host;
    this.#identity = identity;
    this.#state = state as TxnState;
  }

  /** The producer id and epoch of this transaction. */
  get identity(): ProducerIdentity {
    return this.#identity;
  }

  /** True while the transaction takes sends and stagings. */
  get active(): boolean {
    return this.#state.open;
  }

  /**
   * Sends a message as part of the transaction. Resolves once the broker has it (durably, but
   * invisible to read_committed consumers until the commit); a failure fails the transaction.
   */
  send(message: ProducerMessage, options?: { signal?: AbortSignal }): Promise<RecordMetadata> {
    if (!this.#state.open) return Promise.reject(ended());
    this.#state.touched = true;
    return this.#track(this.#host.send(message, options));
  }

  sendMany(messages: readonly ProducerMessage[]): Promise<RecordMetadata[]> {
    return Promise.all(messages.map((m) => this.send(m)));
  }

  /**
   * Stages a consumer group's offsets (each the next offset to read): committed if and only if
   * the transaction commits. `member` is the group member that consumed them
   * (`pollConsumer.groupMember()`); the broker checks it now, as for a plain commit, so a member
   * fenced by a rebalance cannot commit. Without it, a standalone commit (a group with no
   * active members).
   */
  commitOffsets(groupId: string, offsets: readonly TransactionOffset[], member?: GroupMember): Promise<void> {
    if (!this.#state.open) return Promise.reject(ended());
    this.#state.touched = true;
    const { producerId, producerEpoch } = this.#identity;
    const memberId = member?.memberId;
    const body = {
      transactionalId: this.#host.transactionalId,
      producerId,
      producerEpoch,
      groupId,
      memberEpoch: member?.memberEpoch ?? -1,
      ...(memberId === undefined ? {} : { memberId }),
      offsets: offsets.map(({ topic, partition, offset, metadata }) => ({ topic, partition, offset, ...(metadata === undefined || metadata === null ? {} : { metadata }) })),
    };
    const conn = this.#host.connection;
    return this.#track(retrying(conn, this.#host.retryBudgetMs, () => conn.request('TxnCommitOffsets', body, this.#host.requestOptions)).then(noop));
  }

  /**
   * Stages the ack of push messages: applied if and only if the transaction commits. If one of
   * them is redelivered before then (its ack deadline passed), the commit aborts instead
   * (TRANSACTION_ABORTED) and the message comes again. The push consumer must be on this
   * producer's connection (the same SluiceClient): the broker takes acks of its own
   * connection's consumers only. Each message names its consumer; `from` is only a fallback for
   * message objects built elsewhere.
   */
  ack(messages: PushMessage | readonly PushMessage[], from?: AckSource): Promise<void> {
    if (!this.#state.open) return Promise.reject(ended());
    const list = Array.isArray(messages) ? (messages as readonly PushMessage[]) : [messages as PushMessage];
    if (list.length === 0) return Promise.resolve();
    const byConsumer = new Map<string, TxnSettleItem[]>();
    for (const m of list) {
      const consumerId = m.consumerId ?? from?.consumerId;
      if (consumerId === undefined) {
        return Promise.reject(new SluiceError('INVALID_CONFIG', 'tx.ack(message, consumer): pass the PushConsumer that received the message (it is not subscribed now, or was not given)'));
      }
      const items = byConsumer.get(consumerId) ?? [];
      items.push([m.partition, m.offset, m.attempt]);
      byConsumer.set(consumerId, items);
    }
    this.#state.touched = true;
    const waits = [...byConsumer].map(([consumerId, items]) => this.#stageAcks(consumerId, items));
    this.#state.acked.push(...list);
    return this.#track(Promise.all(waits).then(noop));
  }

  /** Queues acks for this turn's TxnSettle of `consumerId` (many acks, one request). */
  #stageAcks(consumerId: string, items: readonly TxnSettleItem[]): Promise<void> {
    const state = this.#state;
    if (state.acks === undefined) {
      state.acks = new Map();
      setImmediate(() => this.#sendAcks());
    }
    let entry = state.acks.get(consumerId);
    if (entry === undefined) {
      entry = { items: [], waiters: [] };
      state.acks.set(consumerId, entry);
    }
    entry.items.push(...items);
    const waiters = entry.waiters;
    return new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
  }

  #sendAcks(): void {
    const batches = this.#state.acks;
    this.#state.acks = undefined;
    if (batches === undefined) return;
    const { producerId, producerEpoch } = this.#identity;
    const conn = this.#host.connection;
    for (const [consumerId, { items, waiters }] of batches) {
      const body = { transactionalId: this.#host.transactionalId, producerId, producerEpoch, consumerId, items };
      retrying(conn, this.#host.retryBudgetMs, () => conn.request('TxnSettle', body, this.#host.requestOptions)).then(
        () => waiters.forEach((w) => w.resolve()),
        (err: unknown) => waiters.forEach((w) => w.reject(err)),
      );
    }
  }

  /** Remembers the first failure; the returned promise still reports it to the caller. */
  #track<T>(p: Promise<T>): Promise<T> {
    const state = this.#state;
    state.pending.push(
      p.then(noop, (error: unknown) => {
        state.failure ??= { error };
      }),
    );
    return p;
  }
}

/** Runs one transaction for `producer.transaction(fn)`; see the top of this file. */
export async function runTransaction<T>(host: TransactionHost, fn: (tx: Transaction) => Promise<T> | T): Promise<T> {
  const fatal = host.fatal();
  if (fatal !== undefined) throw fatal;
  if (host.closed()) throw new SluiceError('CLIENT_CLOSED', 'producer is closed');
  const identity = await host.identity();
  const state: TxnState = { open: true, touched: false, failure: undefined, pending: [], acked: [], acks: undefined };
  const tx = new Transaction(host, identity, state);
  host.begin(tx);
  let outcome: { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };
  try {
    outcome = { ok: true, value: await fn(tx) };
  } catch (error) {
    outcome = { ok: false, error };
  } finally {
    state.open = false;
    // Everything it sent or staged settles first, whatever the outcome (step 3 above).
    await host.flush().catch(noop);
    for (let i = 0; i < state.pending.length; i++) await state.pending[i];
    host.end();
  }
  if (outcome.ok && state.failure !== undefined) outcome = { ok: false, error: state.failure.error };
  if (outcome.ok) {
    if (state.touched) await endTransaction(host, identity, true);
    // The broker applied the acks; the consumers still count the messages as held. An ack
    // now releases them there (the broker answers it as settled already, which is ignored).
    for (const m of state.acked) m.ack().catch(noop);
    return outcome.value;
  }
  const failure = outcome.error;
  if (!state.touched) throw failure;
  try {
    await endTransaction(host, identity, false);
  } catch (abortError) {
    if (hasCode(abortError, 'PRODUCER_FENCED')) throw abortError;
    throw failure;
  }
  if (hasCode(failure, 'PRODUCER_FENCED')) {
    // Fenced batches, yet our abort went through: the broker had aborted the transaction when
    // it outlived its timeout, bumping the epoch (the batches' epoch was stale, not the producer).
    throw new SluiceError('TRANSACTION_ABORTED', 'the broker aborted the transaction before it ended (it was open longer than transactionTimeoutMs); nothing of it took effect', {
      cause: failure,
      details: { transactionalId: host.transactionalId, ...identity },
    });
  }
  throw failure;
}

/** EndTxn with retries, and what its answer means for the producer's identity. */
async function endTransaction(host: TransactionHost, identity: ProducerIdentity, commit: boolean): Promise<void> {
  const conn = host.connection;
  const body = { transactionalId: host.transactionalId, producerId: identity.producerId, producerEpoch: identity.producerEpoch, commit };
  try {
    host.adopt(await retrying(conn, host.retryBudgetMs, () => conn.request('EndTxn', body, host.requestOptions)));
  } catch (err) {
    if (hasCode(err, 'TRANSACTION_ABORTED')) {
      const next = identityIn(err.details);
      if (next === undefined) host.forget();
      else host.adopt(next);
    } else if (hasCode(err, 'PRODUCER_FENCED')) host.fence(err);
    else host.forget(); // the outcome is unknown: InitProducer settles it before the next transaction
    throw err;
  }
}

function identityIn(details: Readonly<Record<string, unknown>> | undefined): ProducerIdentity | undefined {
  const producerId = details?.['producerId'];
  const producerEpoch = details?.['producerEpoch'];
  if (typeof producerId !== 'number' || typeof producerEpoch !== 'number' || !Number.isSafeInteger(producerId) || !Number.isSafeInteger(producerEpoch)) return undefined;
  return { producerId, producerEpoch };
}

function ended(): SluiceError {
  return new SluiceError('INVALID_TXN_STATE', 'the transaction has ended: send and stage only while the function given to transaction() runs');
}

function noop(): void {}

/**
 * Runs `request`, again after retriable errors (with backoff), until it succeeds, fails for
 * good, the connection is closed for good, or `budgetMs` has passed. Only for requests that are
 * safe to repeat: InitProducer (a second one only bumps the epoch again), the transaction
 * stagings (they merge) and EndTxn (a retry of the one that ended a transaction gets its outcome).
 */
export async function retrying<T>(connection: Connection, budgetMs: number, request: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (!isSluiceError(err) || !err.retriable || connection.state === 'closed' || Date.now() >= deadline) throw err;
      await sleep(Math.min(retryDelay(attempt), Math.max(0, deadline - Date.now())));
    }
  }
}
