/**
 * The transaction coordinator (Kafka's KIP-98, with KIP-890's epoch bump per transaction): the
 * state machine of each transactional id's transaction, its durable record (SQLite,
 * broker/meta/transaction-store.ts), the markers that end it in every partition it wrote to,
 * and the staged group offsets and push acks that it commits or drops. docs/protocol.md
 * ("Producers and transactions") is the wire contract; docs/semantics.md says what it promises.
 *
 *   Empty | CompleteCommit | CompleteAbort --first batch / staged offsets or acks--> Ongoing
 *   Ongoing --EndTxn(commit), every staged ack still current--> PrepareCommit --markers--> CompleteCommit
 *   Ongoing --EndTxn(abort), a stale staged ack, the timeout, InitProducer--> PrepareAbort --markers--> CompleteAbort
 *
 * Invariants, and where they are kept:
 * - A partition is in the durable record before the first transactional batch of the
 *   transaction is appended to it (beforeAppend, called synchronously right before the append):
 *   a crash never leaves a transactional batch the coordinator does not know to mark.
 * - The decision (PrepareCommit / PrepareAbort) is durable before the first marker is written;
 *   at startup recover() finishes every prepared transaction, writing its markers again
 *   (a second marker changes nothing: producer-state.ts) and settling its acks again (idempotent).
 * - Staged acks are checked, and on commit applied, in the same tick as the PrepareCommit write:
 *   nothing can redeliver one in between. One found stale turns the commit into an abort.
 * - Staged offsets are written in the same SQLite transaction that makes the state Complete.
 * - Every transaction ends with an epoch bump (persisted with the Complete state, then taught to
 *   ProducerIds), so every request of the ended transaction, however late, is PRODUCER_FENCED;
 *   a retried EndTxn of the transaction that just ended is answered with its outcome instead.
 * - Everything that ends a transaction (EndTxn, InitProducer, the timeout, recovery) runs one at
 *   a time per transactional id (#locked). Produce and staging are synchronous, so they see
 *   Ongoing or Prepare*, never something in between; during Prepare* they are refused.
 */
import { SluiceError, hasCode } from '../../client/protocol/errors.js';
import type { InitProducerRequest, InitProducerResponse } from '../../client/protocol/messages/producer.js';
import type { EndTxnRequest, EndTxnResponse, TxnCommitOffsetsRequest, TxnIdentity, TxnSettleRequest } from '../../client/protocol/messages/transactions.js';
import type { PartitionLog } from '../log/index.js';
import type { Logger } from '../logger.js';
import type { TransactionContent, TransactionRecord, TransactionStore, TxnState } from '../meta/transaction-store.js';
import { ControlType } from './control-record.js';
import { MarkerWriter, type TxnTopics } from './markers.js';
import type { PartitionProducers } from './partition-producers.js';
import type { ProducerIds } from './producer-ids.js';
import {
  type Outcome,
  answerRetry,
  changedUnderneath,
  identityOf,
  refuseWhileEnding,
  staleIdentity,
  tooMany,
  transactionAborted,
  unknownTransactionalId,
} from './txn-answers.js';

export type { TxnTopics } from './markers.js';

/** Most partitions, staged offsets and staged acks one transaction may hold. */
export const MAX_TXN_PARTITIONS = 10_000;
export const MAX_STAGED_OFFSETS = 10_000;
export const MAX_STAGED_ACKS = 100_000;

/** What it needs of the consumer-group coordinator: the fencing check of a commit. */
export interface TxnGroups {
  validateCommit(groupId: string, memberId: string | undefined, memberEpoch: number, partitions: readonly { topic: string; partition: number }[], now: number): void;
}

type AckItems = readonly (readonly [number, number, number])[];

/** What it needs of the push service (PushService's transaction hooks). */
export interface TxnAcks {
  /** Throws STALE_ACK / UNKNOWN_DELIVERY unless every ack is current; settles nothing. */
  checkTxnAcks(subscription: string, items: AckItems, now: number): void;
  /** Applies acks just checked, in the same tick. */
  applyTxnAcks(subscription: string, items: AckItems): void;
  /** Settles whatever the attempt (idempotent) and saves durably. */
  settleTxnAcks(subscription: string, items: AckItems): void;
}

/** Points in ending a transaction where a test can simulate a crash (by throwing). */
export type TxnFailpoint = 'prepared' | 'markers-written';

export interface TransactionCoordinatorOptions {
  readonly store: TransactionStore;
  readonly producerIds: ProducerIds;
  readonly producerStates: { forLog(log: PartitionLog): PartitionProducers };
  readonly topics: TxnTopics;
  readonly groups: TxnGroups;
  readonly acks: TxnAcks;
  readonly logger: Logger;
  readonly now?: () => number;
  /** How often open transactions are checked against their timeout; default 1000 ms. */
  readonly timeoutCheckMs?: number;
  /** Test hook, run at named points of ending a transaction; a throw there stands for a crash. */
  readonly failpoint?: (point: TxnFailpoint, transactionalId: string) => void | Promise<void>;
}

interface Txn {
  record: TransactionRecord;
  /** partitionKey() of each of record.partitions. */
  keys: Set<string>;
}

export class TransactionCoordinator {
  readonly #store: TransactionStore;
  readonly #producerIds: ProducerIds;
  readonly #markers: MarkerWriter;
  readonly #topics: TxnTopics;
  readonly #groups: TxnGroups;
  readonly #acks: TxnAcks;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timeoutCheckMs: number;
  readonly #failpoint: TransactionCoordinatorOptions['failpoint'];
  /** Every transactional id's record, as in SQLite (this process is its only writer). */
  readonly #txns = new Map<string, Txn>();
  /** The tail of each transactional id's queue of ending operations. */
  readonly #locks = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #expiring: Promise<unknown> = Promise.resolve();


  /**
   * True while a transaction that has not finished holds staged offsets of `groupId`. FetchOffsets
   * then answers UNSTABLE_OFFSETS (retriable), as Kafka's require_stable does (KIP-447): a member
   * that read the committed offsets now could re-read input whose output is about to commit.
   */
  hasPendingOffsets(groupId: string): boolean {
    for (const { record } of this.#txns.values()) {
      const open = record.state === 'Ongoing' || record.state === 'PrepareCommit' || record.state === 'PrepareAbort';
      if (open && record.offsets.some((o) => o.groupId === groupId)) return true;
    }
    return false;
  }

  constructor(options: TransactionCoordinatorOptions) {
    this.#store = options.store;
    this.#producerIds = options.producerIds;
    this.#topics = options.topics;
    this.#groups = options.groups;
    this.#acks = options.acks;
    this.#log = options.logger;
    this.#now = options.now ?? Date.now;
    this.#markers = new MarkerWriter({ topics: options.topics, producerStates: options.producerStates, logger: options.logger, now: this.#now });
    this.#timeoutCheckMs = options.timeoutCheckMs ?? 1_000;
    this.#failpoint = options.failpoint;
    for (const record of this.#store.list()) this.#txns.set(record.transactionalId, txnOf(record));
  }

  /**
   * At startup, after every partition's producer state is rebuilt and the push subscriptions are
   * open, before any request is served: finishes the transactions a crash interrupted after
   * their decision, then closes transactions left open in a partition whose coordinator record
   * no longer lists them (possible only when a crash took the log tail holding their marker,
   * under fsync=interval or never). Ongoing transactions stay open: their producer may still
   * commit them, or their timeout aborts them.
   */
  async recover(): Promise<void> {
    for (const txn of this.#txns.values()) {
      const { state, transactionalId } = txn.record;
      if (state !== 'PrepareCommit' && state !== 'PrepareAbort') continue;
      this.#log.info({ transactionalId, state, partitions: txn.record.partitions.length }, 'finishing a transaction interrupted by a restart');
      await this.#locked(transactionalId, () => this.#complete(txn, true));
    }
    await this.#markers.closeHanging(
      (producerId, epoch, topic, partition) => this.#isOpenIn(producerId, epoch, topic, partition),
      (producerId, epoch) => this.#committed(producerId, epoch),
    );
  }

  /** Starts the timer that aborts transactions open longer than their timeout. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      this.#expiring = this.#expiring.then(() => this.abortExpired());
    }, this.#timeoutCheckMs);
    this.#timer.unref();
  }

  /** Stops the timer and waits for what is ending transactions now. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#expiring;
    await Promise.all([...this.#locks.values()]);
  }

  /** The current record of a transactional id (tests, diagnostics). */
  describe(transactionalId: string): TransactionRecord | undefined {
    return this.#txns.get(transactionalId)?.record;
  }

  // ---- InitProducer ---------------------------------------------------------------------------

  /**
   * InitProducer: without a transactional id, a fresh idempotent producer id. With one, its open
   * transaction is aborted first (markers and all, as KIP-98 does), then the epoch bumped, which
   * fences every older instance.
   */
  initProducer(req: InitProducerRequest): InitProducerResponse | Promise<InitProducerResponse> {
    const transactionalId = req.transactionalId;
    if (transactionalId === undefined || transactionalId.length === 0) return this.#producerIds.init(req);
    return this.#locked(transactionalId, async () => {
      const txn = this.#txns.get(transactionalId);
      const state = txn?.record.state;
      if (txn !== undefined && state === 'Ongoing') {
        this.#log.info({ transactionalId, producerEpoch: txn.record.producerEpoch }, 'InitProducer aborts the open transaction of the previous instance');
        await this.#end(txn, 'abort', false);
      } else if (txn !== undefined && (state === 'PrepareCommit' || state === 'PrepareAbort')) {
        await this.#complete(txn, false);
      }
      const response = this.#producerIds.init(req);
      const record = this.#store.get(transactionalId);
      if (record !== undefined) this.#txns.set(transactionalId, txnOf(record));
      return response;
    });
  }

  // ---- Produce --------------------------------------------------------------------------------

  /**
   * Produce calls this for every batch with a producer id (already validated by ProducerIds),
   * synchronously and right before appending it. A transactional batch must come from a
   * transactional id's current producer: its partition joins the open transaction (durably, on
   * the first batch; the first batch of all begins the transaction). While its transaction is
   * open, a transactional id's producer writes only transactional batches, and none at all
   * while the transaction is being committed or aborted (INVALID_TXN_STATE).
   */
  beforeAppend(producerId: number, producerEpoch: number, transactional: boolean, topic: string, partition: number): void {
    const transactionalId = this.#producerIds.transactionalIdOf(producerId);
    const txn = transactionalId === undefined ? undefined : this.#txns.get(transactionalId);
    if (txn === undefined) {
      if (!transactional) return;
      throw new SluiceError('INVALID_TXN_STATE', `producer ${producerId} has no transactional id: a transactional batch needs InitProducer with a transactionalId`, {
        details: { producerId },
      });
    }
    const r = txn.record;
    if (!transactional) {
      // Kafka's rule: outside a transaction a transactional id's producer may write plain
      // idempotent batches; inside one, they would escape it.
      if (r.state === 'Empty' || r.state === 'CompleteCommit' || r.state === 'CompleteAbort') return;
      throw new SluiceError('INVALID_TXN_STATE', `producer ${producerId} has a transaction open (transactional id ${JSON.stringify(r.transactionalId)}): its batches must be transactional until it ends`, {
        details: { producerId, transactionalId: r.transactionalId, state: r.state },
      });
    }
    if (r.producerId !== producerId || r.producerEpoch !== producerEpoch) throw staleIdentity(r, { transactionalId: r.transactionalId, producerId, producerEpoch });
    const key = partitionKey(topic, partition);
    if (r.state === 'Ongoing' && txn.keys.has(key)) return;
    if (r.partitions.length >= MAX_TXN_PARTITIONS) throw tooMany('partitions', MAX_TXN_PARTITIONS);
    this.#stage(txn, (c) => ({ ...c, partitions: [...c.partitions, [topic, partition] as const] }));
    txn.keys.add(key);
  }

  // ---- TxnCommitOffsets, TxnSettle ------------------------------------------------------------

  /** TxnCommitOffsets: the group checks the member now; the offsets are written only at commit. */
  stageOffsets(req: TxnCommitOffsetsRequest): void {
    const txn = this.#current(req);
    const now = this.#now();
    this.#groups.validateCommit(req.groupId, req.memberId, req.memberEpoch, req.offsets, now);
    for (const o of req.offsets) this.#topics.partition(o.topic, o.partition);
    this.#stage(txn, (c) => {
      const merged = new Map(c.offsets.map((o) => [offsetKey(o.groupId, o.topic, o.partition), o]));
      for (const o of req.offsets) {
        merged.set(offsetKey(req.groupId, o.topic, o.partition), { groupId: req.groupId, topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata ?? null });
      }
      if (merged.size > MAX_STAGED_OFFSETS) throw tooMany('staged offsets', MAX_STAGED_OFFSETS);
      return { ...c, offsets: [...merged.values()] };
    });
  }

  /**
   * TxnSettle, with the subscription of the request's consumer (the handler checked that it is
   * the session's): every ack must be current now; they are applied only at commit.
   */
  stageAcks(req: TxnSettleRequest, subscription: string): void {
    const txn = this.#current(req);
    this.#acks.checkTxnAcks(subscription, req.items, this.#now());
    this.#stage(txn, (c) => {
      const acks = c.acks.map((a) => ({ subscription: a.subscription, items: [...a.items] }));
      let entry = acks.find((a) => a.subscription === subscription);
      if (entry === undefined) acks.push((entry = { subscription, items: [] }));
      const byOffset = new Map(entry.items.map((i) => [`${i[0]}:${i[1]}`, i]));
      for (const i of req.items) byOffset.set(`${i[0]}:${i[1]}`, i);
      entry.items = [...byOffset.values()];
      if (acks.reduce((n, a) => n + a.items.length, 0) > MAX_STAGED_ACKS) throw tooMany('staged acks', MAX_STAGED_ACKS);
      return { ...c, acks };
    });
  }

  // ---- EndTxn ---------------------------------------------------------------------------------

  /**
   * EndTxn: commits or aborts the open transaction and answers with the producer's next id and
   * epoch. With nothing open (nothing written or staged since the last one) there is nothing to
   * do: the current id and epoch. A retry of the EndTxn that ended the last transaction gets that
   * transaction's outcome; anything else from an older epoch is PRODUCER_FENCED.
   */
  endTxn(req: EndTxnRequest): Promise<EndTxnResponse> {
    return this.#locked(req.transactionalId, async () => {
      const txn = this.#txns.get(req.transactionalId);
      if (txn === undefined) throw unknownTransactionalId(req.transactionalId);
      const r = txn.record;
      const asked: Outcome = req.commit ? 'commit' : 'abort';
      if (r.producerId === req.producerId && r.producerEpoch === req.producerEpoch) {
        if (r.state === 'Ongoing') return this.#end(txn, asked, true);
        if (r.state === 'PrepareCommit' || r.state === 'PrepareAbort') {
          // Left by an attempt that failed half way (a storage error): finish what was decided.
          await this.#complete(txn, true);
          return answerRetry(txn.record, asked);
        }
        return identityOf(r);
      }
      if ((r.state === 'CompleteCommit' || r.state === 'CompleteAbort') && r.lastProducerId === req.producerId && r.lastProducerEpoch === req.producerEpoch) {
        return answerRetry(r, asked);
      }
      throw staleIdentity(r, req);
    });
  }

  // ---- Timeouts -------------------------------------------------------------------------------

  /**
   * Aborts every transaction open for longer than its timeout, bumping the epoch so that its
   * producer, if it is still alive, is fenced. Returns how many it aborted.
   */
  async abortExpired(): Promise<number> {
    const due = (txn: Txn): boolean => txn.record.state === 'Ongoing' && txn.record.startedAt !== null && txn.record.startedAt + txn.record.timeoutMs <= this.#now();
    const expired = [...this.#txns.values()].filter(due);
    const aborted = await Promise.all(
      expired.map((txn) =>
        this.#locked(txn.record.transactionalId, async () => {
          if (!due(txn)) return false;
          const { transactionalId, producerId, producerEpoch, timeoutMs } = txn.record;
          this.#log.warn({ transactionalId, producerId, producerEpoch, timeoutMs }, 'transaction timed out; aborting it');
          await this.#end(txn, 'abort', true);
          return true;
        }).catch((err: unknown) => {
          this.#log.error({ err, transactionalId: txn.record.transactionalId }, 'aborting a timed-out transaction failed');
          return false;
        }),
      ),
    );
    return aborted.filter(Boolean).length;
  }

  // ---- Ending a transaction -------------------------------------------------------------------

  /**
   * Decides (durably), then completes. A commit whose staged acks are no longer all current
   * becomes an abort, answered TRANSACTION_ABORTED with the next id and epoch in its details.
   */
  async #end(txn: Txn, asked: Outcome, bump: boolean): Promise<EndTxnResponse> {
    const r = txn.record;
    const now = this.#now();
    let outcome = asked;
    let staleAck: SluiceError | undefined;
    if (asked === 'commit') {
      try {
        for (const a of r.acks) this.#acks.checkTxnAcks(a.subscription, a.items, now);
      } catch (err) {
        if (!hasCode(err, 'STALE_ACK') && !hasCode(err, 'UNKNOWN_DELIVERY')) throw err;
        outcome = 'abort';
        staleAck = err;
      }
    }
    const state: TxnState = outcome === 'commit' ? 'PrepareCommit' : 'PrepareAbort';
    const content: TransactionContent = { state, partitions: r.partitions, offsets: r.offsets, acks: r.acks, startedAt: r.startedAt };
    if (!this.#store.write(r.transactionalId, r.producerId, r.producerEpoch, ['Ongoing'], content, now)) throw changedUnderneath(r.transactionalId);
    txn.record = { ...r, ...content, updatedAt: now };
    // Same tick as the check above: no ack deadline can pass in between.
    if (outcome === 'commit') for (const a of r.acks) this.#acks.applyTxnAcks(a.subscription, a.items);
    await this.#failpoint?.('prepared', r.transactionalId);
    await this.#complete(txn, bump);
    if (staleAck !== undefined) throw transactionAborted(txn.record, `a staged ack is no longer current (${staleAck.message}); the transaction was aborted`, staleAck);
    return identityOf(txn.record);
  }

  /**
   * Finishes a prepared transaction: markers into every partition (durable under the fsync mode),
   * then on commit the acks saved, then in one SQLite transaction the staged offsets, the
   * Complete state and the epoch bump.
   */
  async #complete(txn: Txn, bump: boolean): Promise<void> {
    const r = txn.record;
    const commit = r.state === 'PrepareCommit';
    await this.#markers.write(r.producerId, r.producerEpoch, r.partitions, commit ? ControlType.COMMIT : ControlType.ABORT);
    await this.#failpoint?.('markers-written', r.transactionalId);
    if (commit) for (const a of r.acks) this.#acks.settleTxnAcks(a.subscription, a.items);
    const after = this.#store.complete(r.transactionalId, r.producerId, r.producerEpoch, { outcome: commit ? 'commit' : 'abort', bump, now: this.#now() });
    if (after === undefined) throw changedUnderneath(r.transactionalId);
    this.#producerIds.rebound(r.transactionalId, r.producerId, after.producerId, after.producerEpoch);
    txn.record = after;
    txn.keys = new Set();
    this.#log.debug({ transactionalId: r.transactionalId, outcome: commit ? 'commit' : 'abort', partitions: r.partitions.length, producerEpoch: after.producerEpoch }, 'transaction completed');
  }

  #isOpenIn(producerId: number, epoch: number, topic: string, partition: number): boolean {
    const txn = this.#txnOf(producerId);
    return txn !== undefined && txn.record.state === 'Ongoing' && txn.record.producerId === producerId && txn.record.producerEpoch === epoch && txn.keys.has(partitionKey(topic, partition));
  }

  /** True when the transaction of `producerId` at `epoch` committed and was the last of its id to end. */
  #committed(producerId: number, epoch: number): boolean {
    for (const { record: r } of this.#txns.values()) {
      if (r.lastProducerId === producerId && r.lastProducerEpoch === epoch && r.state === 'CompleteCommit') return true;
    }
    return false;
  }

  #txnOf(producerId: number): Txn | undefined {
    const transactionalId = this.#producerIds.transactionalIdOf(producerId);
    return transactionalId === undefined ? undefined : this.#txns.get(transactionalId);
  }

  // ---- Helpers --------------------------------------------------------------------------------

  /** The transaction `id` names, if its producer id and epoch are current; refused while ending. */
  #current(id: TxnIdentity): Txn {
    const txn = this.#txns.get(id.transactionalId);
    if (txn === undefined) throw unknownTransactionalId(id.transactionalId);
    const r = txn.record;
    if (r.producerId !== id.producerId || r.producerEpoch !== id.producerEpoch) throw staleIdentity(r, id);
    refuseWhileEnding(r);
    return txn;
  }

  /** Adds to the open transaction (beginning one if none is open) and makes it durable. */
  #stage(txn: Txn, change: (content: TransactionContent) => TransactionContent): void {
    const r = txn.record;
    refuseWhileEnding(r);
    const now = this.#now();
    const base: TransactionContent = r.state === 'Ongoing' ? r : { state: 'Ongoing', partitions: [], offsets: [], acks: [], startedAt: now };
    const content = { ...change(base), state: 'Ongoing' as const };
    if (!this.#store.write(r.transactionalId, r.producerId, r.producerEpoch, [r.state], content, now)) throw changedUnderneath(r.transactionalId);
    if (r.state !== 'Ongoing') txn.keys = new Set();
    txn.record = { ...r, ...content, updatedAt: now };
  }

  /** Runs `fn` after every earlier ending operation of `transactionalId` has settled. */
  #locked<T>(transactionalId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(transactionalId) ?? Promise.resolve();
    const run = previous.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(transactionalId, tail);
    void tail.then(() => {
      if (this.#locks.get(transactionalId) === tail) this.#locks.delete(transactionalId);
    });
    return run;
  }
}

function txnOf(record: TransactionRecord): Txn {
  return { record, keys: new Set(record.state === 'Ongoing' || record.state.startsWith('Prepare') ? record.partitions.map(([t, p]) => partitionKey(t, p)) : []) };
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

function offsetKey(groupId: string, topic: string, partition: number): string {
  return `${groupId}\u0000${topic}\u0000${partition}`;
}

