import type Database from 'better-sqlite3';
import { SluiceError } from '../../client/protocol/errors.js';

/** Producer epochs are int16 in record batches. */
export const MAX_PRODUCER_EPOCH = 0x7fff;

/** What a transactional id is bound to. `state` belongs to the transaction coordinator. */
export interface TransactionalIdRecord {
  transactionalId: string;
  producerId: number;
  producerEpoch: number;
  timeoutMs: number;
  state: string;
  updatedAt: number;
}

export interface InitTransactionalIdResult {
  record: TransactionalIdRecord;
  /** The row before this init, if the transactional id had one. */
  previous: TransactionalIdRecord | undefined;
}

/** The state a transactional id is given (back) by InitProducer: no transaction in progress. */
export const EMPTY_TXN_STATE = 'Empty';

/** States without an open transaction, from which InitProducer may start over. */
const INITIALIZABLE_STATES: ReadonlySet<string> = new Set([EMPTY_TXN_STATE, 'CompleteCommit', 'CompleteAbort']);

/**
 * Where producer ids and transactional ids live (migration 3). Narrow on purpose: the txn layer
 * decides what ids mean; this hands them out and stores them, atomically and durably (every
 * method that returns has committed with synchronous=FULL, so an id is never handed out twice
 * and an epoch never goes back, whatever crashes).
 */
export interface ProducerStore {
  /** The id the next allocation returns: every id below it has been handed out. */
  nextProducerId(): number;
  /** Hands out a fresh producer id. */
  allocateProducerId(): number;
  getTransactionalId(transactionalId: string): TransactionalIdRecord | undefined;
  /** Sorted by transactional id. */
  listTransactionalIds(): TransactionalIdRecord[];
  /**
   * InitProducer for a transactional id, in one transaction: the first time, a fresh producer id
   * at epoch 0; afterwards the same producer id at epoch + 1, or, once the epoch reached
   * MAX_PRODUCER_EPOCH, a fresh producer id at epoch 0 (Kafka's rule). Sets timeoutMs, state
   * EMPTY_TXN_STATE and updatedAt = now. INVALID_TXN_STATE while a transaction is open (Ongoing
   * or Prepare*): the coordinator ends it first.
   */
  initTransactionalId(transactionalId: string, timeoutMs: number, now: number): InitTransactionalIdResult;
  /**
   * Compare-and-set for the transaction coordinator: writes `state` (and updatedAt) only if the
   * transactional id is still bound to `producerId` at `producerEpoch`; false otherwise (a newer
   * instance fenced the caller, or the id is gone).
   */
  setTransactionState(transactionalId: string, producerId: number, producerEpoch: number, state: string, now: number): boolean;
}

/** A row of transactional_ids, as SQLite returns it (transaction-store.ts extends it). */
export interface TransactionalIdRow {
  transactional_id: string;
  producer_id: number;
  producer_epoch: number;
  timeout_ms: number;
  state: string;
  updated_at: number;
}

const toRecord = (r: TransactionalIdRow): TransactionalIdRecord => ({
  transactionalId: r.transactional_id,
  producerId: r.producer_id,
  producerEpoch: r.producer_epoch,
  timeoutMs: r.timeout_ms,
  state: r.state,
  updatedAt: r.updated_at,
});

/** The SQLite implementation; statements are prepared once, on the metadata store's handle. */
export function sqliteProducerStore(db: Database.Database): ProducerStore {
  const selectNext = db.prepare<[], { next_id: number }>(`SELECT next_id FROM producer_ids WHERE id = 0`);
  const bumpNext = db.prepare<[], { id: number }>(`UPDATE producer_ids SET next_id = next_id + 1 WHERE id = 0 RETURNING next_id - 1 AS id`);
  const select = db.prepare<[string], TransactionalIdRow>(`SELECT * FROM transactional_ids WHERE transactional_id = ?`);
  const selectAll = db.prepare<[], TransactionalIdRow>(`SELECT * FROM transactional_ids ORDER BY transactional_id`);
  const upsert = db.prepare(
    `INSERT INTO transactional_ids (transactional_id, producer_id, producer_epoch, timeout_ms, state, updated_at)
     VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (transactional_id) DO UPDATE SET
       producer_id = excluded.producer_id, producer_epoch = excluded.producer_epoch,
       timeout_ms = excluded.timeout_ms, state = excluded.state, updated_at = excluded.updated_at`,
  );
  const casState = db.prepare(
    `UPDATE transactional_ids SET state = ?, updated_at = ? WHERE transactional_id = ? AND producer_id = ? AND producer_epoch = ?`,
  );
  const allocate = (): number => {
    const row = bumpNext.get();
    if (row === undefined) throw new SluiceError('STORAGE_ERROR', 'producer_ids has no row: the metadata database is damaged');
    return row.id;
  };
  const init = db.transaction((transactionalId: string, timeoutMs: number, now: number): InitTransactionalIdResult => {
    const row = select.get(transactionalId);
    const previous = row === undefined ? undefined : toRecord(row);
    // The transaction coordinator ends an open transaction before it re-initializes the id; a
    // new epoch over an open one would leave its partitions without markers.
    if (previous !== undefined && !INITIALIZABLE_STATES.has(previous.state)) {
      throw new SluiceError('INVALID_TXN_STATE', `transactional id ${JSON.stringify(transactionalId)} has a transaction in state ${previous.state}; end it first`, {
        details: { transactionalId, state: previous.state },
      });
    }
    const fresh = previous === undefined || previous.producerEpoch >= MAX_PRODUCER_EPOCH;
    const record: TransactionalIdRecord = {
      transactionalId,
      producerId: fresh ? allocate() : previous.producerId,
      producerEpoch: fresh ? 0 : previous.producerEpoch + 1,
      timeoutMs,
      state: EMPTY_TXN_STATE,
      updatedAt: now,
    };
    upsert.run(record.transactionalId, record.producerId, record.producerEpoch, record.timeoutMs, record.state, record.updatedAt);
    return { record, previous };
  });
  return {
    nextProducerId: () => selectNext.get()?.next_id ?? 0,
    // One UPDATE ... RETURNING: atomic and durable on its own (autocommit, synchronous=FULL).
    allocateProducerId: allocate,
    getTransactionalId: (id) => {
      const row = select.get(id);
      return row === undefined ? undefined : toRecord(row);
    },
    listTransactionalIds: () => selectAll.all().map(toRecord),
    initTransactionalId: (transactionalId, timeoutMs, now) => {
      if (typeof transactionalId !== 'string' || transactionalId.length === 0) {
        throw new SluiceError('INVALID_REQUEST', 'transactionalId must be a non-empty string');
      }
      if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new SluiceError('INVALID_REQUEST', `transaction timeout ${timeoutMs} must be a positive integer`);
      return init.immediate(transactionalId, timeoutMs, now);
    },
    setTransactionState: (transactionalId, producerId, producerEpoch, state, now) =>
      casState.run(state, now, transactionalId, producerId, producerEpoch).changes === 1,
  };
}
