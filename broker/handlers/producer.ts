import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

/**
 * InitProducer: a producer id and epoch for idempotent (and, with a transactional id,
 * transactional) produce. The id or epoch bump is committed to SQLite (synchronous=FULL) before
 * the reply is built, so no two producers ever get the same pair. With a transactional id, the
 * transaction coordinator first aborts the transaction the previous instance left open.
 */
export function producerHandlers(s: Services): Pick<HandlerTable, 'InitProducer'> {
  return {
    InitProducer(req) {
      return s.transactions.initProducer(req);
    },
  };
}
