/**
 * The coordinator's answers and refusals (broker/txn/coordinator.ts): which error a request of
 * an ended, fenced or unknown transaction gets, and what a retried EndTxn is told.
 */
import { SluiceError } from '../../client/protocol/errors.js';
import type { EndTxnResponse, TxnIdentity } from '../../client/protocol/messages/transactions.js';
import type { TransactionRecord } from '../meta/transaction-store.js';

export type Outcome = 'commit' | 'abort';

export function identityOf(r: TransactionRecord): EndTxnResponse {
  return { producerId: r.producerId, producerEpoch: r.producerEpoch };
}

/** INVALID_TXN_STATE while the transaction is being committed or aborted. */
export function refuseWhileEnding(r: TransactionRecord): void {
  if (r.state === 'PrepareCommit' || r.state === 'PrepareAbort') {
    throw new SluiceError('INVALID_TXN_STATE', `the transaction of ${JSON.stringify(r.transactionalId)} is being ${r.state === 'PrepareCommit' ? 'committed' : 'aborted'}; wait for the EndTxn answer`, {
      details: { transactionalId: r.transactionalId, state: r.state },
    });
  }
}

/** The answer to a retried EndTxn of a transaction that ended already, per its outcome. */
export function answerRetry(r: TransactionRecord, asked: Outcome): EndTxnResponse {
  const committed = r.state === 'CompleteCommit';
  if (asked === (committed ? 'commit' : 'abort')) return identityOf(r);
  if (!committed) throw transactionAborted(r, `the transaction of ${JSON.stringify(r.transactionalId)} was aborted (it timed out, or a staged ack went stale)`);
  throw new SluiceError('INVALID_TXN_STATE', `the transaction of ${JSON.stringify(r.transactionalId)} committed already; it cannot be aborted`, {
    details: { transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch },
  });
}

export function transactionAborted(r: TransactionRecord, message: string, cause?: unknown): SluiceError {
  return new SluiceError('TRANSACTION_ABORTED', message, {
    details: { transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch },
    ...(cause === undefined ? {} : { cause }),
  });
}

export function staleIdentity(r: TransactionRecord, id: TxnIdentity): SluiceError {
  const details = { transactionalId: r.transactionalId, producerId: id.producerId, producerEpoch: id.producerEpoch };
  if (r.producerId === id.producerId && id.producerEpoch > r.producerEpoch) {
    return new SluiceError('UNKNOWN_PRODUCER', `transactional id ${JSON.stringify(r.transactionalId)} has epoch ${r.producerEpoch}; epoch ${id.producerEpoch} was never issued`, { details });
  }
  return new SluiceError(
    'PRODUCER_FENCED',
    `producer ${id.producerId} epoch ${id.producerEpoch} of transactional id ${JSON.stringify(r.transactionalId)} is fenced: its transaction ended, or a newer instance took over`,
    { details },
  );
}

export function unknownTransactionalId(transactionalId: string): SluiceError {
  return new SluiceError('UNKNOWN_PRODUCER', `transactional id ${JSON.stringify(transactionalId)} is not known; call InitProducer with it first`, {
    details: { transactionalId },
  });
}

export function changedUnderneath(transactionalId: string): SluiceError {
  return new SluiceError('UNKNOWN', `the transaction record of ${JSON.stringify(transactionalId)} changed while it was being updated`);
}

export function tooMany(what: string, max: number): SluiceError {
  return new SluiceError('INVALID_REQUEST', `a transaction holds at most ${max} ${what}; commit it and start another`, { details: { max } });
}
