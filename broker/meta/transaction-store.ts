import type { TransactionalIdRow } from './producer-store.js';
import type Database from 'better-sqlite3';
import { SluiceError } from '../../client/protocol/errors.js';
import { MAX_PRODUCER_EPOCH } from './producer-store.js';

/**
 * Where the transaction coordinator (broker/txn/coordinator.ts) keeps each transactional id's
 * current transaction (migrations 3 and 4): the state in transactional_ids.state, next to the
 * producer id and epoch that every write is compare-and-set against, and the rest in
 * `transactions`. Narrow on purpose: the coordinator decides what the states mean; this stores
 * them. Every method that returns has committed one transaction with synchronous=FULL.
 */

/** Kafka's transaction states (TransactionState.scala), less Dead and PrepareEpochFence. */
export type TxnState = 'Empty' | 'Ongoing' | 'PrepareCommit' | 'PrepareAbort' | 'CompleteCommit' | 'CompleteAbort';

export const TXN_STATES: readonly TxnState[] = ['Empty', 'Ongoing', 'PrepareCommit', 'PrepareAbort', 'CompleteCommit', 'CompleteAbort'];

export type TxnPartition = readonly [topic: string, partition: number];

export interface StagedOffset {
  readonly groupId: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly metadata: string | null;
}

/** Acks of one push subscription's deliveries: [partition, offset, attempt]. */
export interface StagedAcks {
  readonly subscription: string;
  readonly items: readonly (readonly [partition: number, offset: number, attempt: number])[];
}

/** The content of a transaction, as the coordinator writes it. */
export interface TransactionContent {
  readonly state: TxnState;
  /** In the order they joined the transaction. */
  readonly partitions: readonly TxnPartition[];
  readonly offsets: readonly StagedOffset[];
  readonly acks: readonly StagedAcks[];
  /** When the transaction began (ms); null when none is open. */
  readonly startedAt: number | null;
}

export interface TransactionRecord extends TransactionContent {
  readonly transactionalId: string;
  readonly producerId: number;
  readonly producerEpoch: number;
  readonly timeoutMs: number;
  readonly updatedAt: number;
  /** The identity of the last transaction that completed (CompleteCommit / CompleteAbort). */
  readonly lastProducerId: number | null;
  readonly lastProducerEpoch: number | null;
}

export interface CompleteOptions {
  /** Commit: also writes the staged offsets (topics deleted meanwhile are skipped). */
  readonly outcome: 'commit' | 'abort';
  /**
   * Bump the epoch (or move to a fresh producer id once it reached MAX_PRODUCER_EPOCH), fencing
   * every request of the ended transaction. False only when an InitProducer bumps right after.
   */
  readonly bump: boolean;
  readonly now: number;
}

export interface TransactionStore {
  /** Every transactional id, with its transaction (empty content when it never had one). Sorted by id. */
  list(): TransactionRecord[];
  get(transactionalId: string): TransactionRecord | undefined;
  /**
   * Writes `content` only if the id is still bound to `producerId` at `producerEpoch` and its
   * state is one of `expected`; false otherwise (fenced, or moved on).
   */
  write(transactionalId: string, producerId: number, producerEpoch: number, expected: readonly TxnState[], content: TransactionContent, now: number): boolean;
  /**
   * Ends a prepared transaction in one transaction: requires state PrepareCommit (commit) or
   * PrepareAbort (abort) at `producerId`/`producerEpoch`, writes the staged offsets on commit,
   * sets CompleteCommit/CompleteAbort, clears the content, remembers the ended identity and
   * bumps the epoch as asked. Returns the record after; undefined when the precondition fails.
   */
  complete(transactionalId: string, producerId: number, producerEpoch: number, options: CompleteOptions): TransactionRecord | undefined;
}

interface Row extends TransactionalIdRow {
  partitions: string | null;
  group_offsets: string | null;
  push_acks: string | null;
  started_at: number | null;
  last_producer_id: number | null;
  last_producer_epoch: number | null;
}

function toRecord(r: Row): TransactionRecord {
  const state = TXN_STATES.includes(r.state as TxnState) ? (r.state as TxnState) : undefined;
  if (state === undefined) throw new SluiceError('STORAGE_ERROR', `transactional id ${JSON.stringify(r.transactional_id)} has unknown transaction state ${JSON.stringify(r.state)}`);
  return {
    transactionalId: r.transactional_id,
    producerId: r.producer_id,
    producerEpoch: r.producer_epoch,
    timeoutMs: r.timeout_ms,
    updatedAt: r.updated_at,
    state,
    partitions: JSON.parse(r.partitions ?? '[]') as TxnPartition[],
    offsets: JSON.parse(r.group_offsets ?? '[]') as StagedOffset[],
    acks: JSON.parse(r.push_acks ?? '[]') as StagedAcks[],
    startedAt: r.started_at,
    lastProducerId: r.last_producer_id,
    lastProducerEpoch: r.last_producer_epoch,
  };
}

const EMPTY_CONTENT = { partitions: '[]', offsets: '[]', acks: '[]' } as const;

/** The SQLite implementation; statements are prepared once, on the metadata store's handle. */
export function sqliteTransactionStore(db: Database.Database): TransactionStore {
  const columns = `i.transactional_id, i.producer_id, i.producer_epoch, i.timeout_ms, i.state, i.updated_at,
    t.partitions, t.group_offsets, t.push_acks, t.started_at, t.last_producer_id, t.last_producer_epoch`;
  const selectAll = db.prepare<[], Row>(`SELECT ${columns} FROM transactional_ids i LEFT JOIN transactions t USING (transactional_id) ORDER BY i.transactional_id`);
  const select = db.prepare<[string], Row>(`SELECT ${columns} FROM transactional_ids i LEFT JOIN transactions t USING (transactional_id) WHERE i.transactional_id = ?`);
  const setBinding = db.prepare<[number, number, string, number, string, number, number]>(
    `UPDATE transactional_ids SET producer_id = ?, producer_epoch = ?, state = ?, updated_at = ?
     WHERE transactional_id = ? AND producer_id = ? AND producer_epoch = ?`,
  );
  const upsertContent = db.prepare<[string, string, string, string, number | null, number | null, number | null]>(
    `INSERT INTO transactions (transactional_id, partitions, group_offsets, push_acks, started_at, last_producer_id, last_producer_epoch)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (transactional_id) DO UPDATE SET
       partitions = excluded.partitions, group_offsets = excluded.group_offsets, push_acks = excluded.push_acks,
       started_at = excluded.started_at, last_producer_id = excluded.last_producer_id, last_producer_epoch = excluded.last_producer_epoch`,
  );
  // A topic deleted (or shrunk) since the offset was staged: nothing to commit it to.
  const commitOffset = db.prepare<[string, string, number, number, string | null, number, string, number]>(
    `INSERT INTO group_offsets (group_id, topic, "partition", "offset", metadata, committed_at)
     SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM topics WHERE name = ? AND partitions > ?)
     ON CONFLICT (group_id, topic, "partition")
     DO UPDATE SET "offset" = excluded."offset", metadata = excluded.metadata, committed_at = excluded.committed_at`,
  );
  const allocate = db.prepare<[], { id: number }>(`UPDATE producer_ids SET next_id = next_id + 1 WHERE id = 0 RETURNING next_id - 1 AS id`);

  const write = db.transaction(
    (transactionalId: string, producerId: number, producerEpoch: number, expected: readonly TxnState[], content: TransactionContent, now: number): boolean => {
      const row = select.get(transactionalId);
      if (row === undefined || row.producer_id !== producerId || row.producer_epoch !== producerEpoch || !expected.includes(row.state as TxnState)) return false;
      setBinding.run(producerId, producerEpoch, content.state, now, transactionalId, producerId, producerEpoch);
      upsertContent.run(
        transactionalId,
        JSON.stringify(content.partitions),
        JSON.stringify(content.offsets),
        JSON.stringify(content.acks),
        content.startedAt,
        row.last_producer_id,
        row.last_producer_epoch,
      );
      return true;
    },
  );

  const complete = db.transaction((transactionalId: string, producerId: number, producerEpoch: number, options: CompleteOptions): TransactionRecord | undefined => {
    const row = select.get(transactionalId);
    const prepared = options.outcome === 'commit' ? 'PrepareCommit' : 'PrepareAbort';
    if (row === undefined || row.producer_id !== producerId || row.producer_epoch !== producerEpoch || row.state !== prepared) return undefined;
    const before = toRecord(row);
    if (options.outcome === 'commit') {
      for (const o of before.offsets) commitOffset.run(o.groupId, o.topic, o.partition, o.offset, o.metadata, options.now, o.topic, o.partition);
    }
    let nextId = producerId;
    let nextEpoch = producerEpoch;
    if (options.bump) {
      if (producerEpoch >= MAX_PRODUCER_EPOCH) {
        const fresh = allocate.get();
        if (fresh === undefined) throw new SluiceError('STORAGE_ERROR', 'producer_ids has no row: the metadata database is damaged');
        nextId = fresh.id;
        nextEpoch = 0;
      } else nextEpoch = producerEpoch + 1;
    }
    const state: TxnState = options.outcome === 'commit' ? 'CompleteCommit' : 'CompleteAbort';
    setBinding.run(nextId, nextEpoch, state, options.now, transactionalId, producerId, producerEpoch);
    upsertContent.run(transactionalId, EMPTY_CONTENT.partitions, EMPTY_CONTENT.offsets, EMPTY_CONTENT.acks, null, producerId, producerEpoch);
    const after = select.get(transactionalId);
    return after === undefined ? undefined : toRecord(after);
  });

  return {
    list: () => selectAll.all().map(toRecord),
    get: (transactionalId) => {
      const row = select.get(transactionalId);
      return row === undefined ? undefined : toRecord(row);
    },
    write: (transactionalId, producerId, producerEpoch, expected, content, now) => write.immediate(transactionalId, producerId, producerEpoch, expected, content, now),
    complete: (transactionalId, producerId, producerEpoch, options) => complete.immediate(transactionalId, producerId, producerEpoch, options),
  };
}
