import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

/**
 * Transactions: the coordinator (broker/txn/coordinator.ts) decides; these handlers bind
 * TxnSettle to the session that owns the consumer, since acks belong to a connection's consumer.
 */
export function transactionHandlers(s: Services): Pick<HandlerTable, 'TxnCommitOffsets' | 'TxnSettle' | 'EndTxn'> {
  return {
    TxnCommitOffsets(req) {
      s.transactions.stageOffsets(req);
      return {};
    },
    TxnSettle(req, ctx) {
      s.transactions.stageAcks(req, s.push.txnAckSubscription(ctx.session, req.consumerId));
      return {};
    },
    EndTxn: (req) => s.transactions.endTxn(req),
  };
}
