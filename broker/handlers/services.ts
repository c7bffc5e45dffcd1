import type { GroupCoordinator } from '../groups/coordinator.js';
import type { MetaStore } from '../meta/meta-store.js';
import type { PushService } from '../push/push-service.js';
import type { TopicRegistry } from '../topics.js';
import type { TransactionCoordinator } from '../txn/coordinator.js';
import type { ProducerIds } from '../txn/producer-ids.js';
import type { ProducerStateManager } from '../txn/producer-states.js';

/** What request handlers may use: the broker's state, never its sockets. */
export interface Services {
  readonly topics: TopicRegistry;
  readonly meta: MetaStore;
  readonly groups: GroupCoordinator;
  readonly push: PushService;
  /** Producer ids and epochs handed out by InitProducer; produce validates batches against them. */
  readonly producerIds: ProducerIds;
  /** Per-partition producer state: sequences, duplicates, open transactions. */
  readonly producerStates: ProducerStateManager;
  /** Transactions: InitProducer with a transactional id, transactional produce, staging, EndTxn. */
  readonly transactions: TransactionCoordinator;
  /** Most record bytes one Fetch response carries, whatever the client asks (one batch may exceed it). */
  readonly maxFetchBytes: number;
  /** Aborted when the broker starts shutting down, so parked requests answer at once. */
  readonly stopping: AbortSignal;
  now(): number;
}
