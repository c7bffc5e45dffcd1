import type { GroupCoordinator } from '../groups/coordinator.js';
import type { MetaStore } from '../meta/meta-store.js';
import type { TopicRegistry } from '../topics.js';

/** What request handlers may use: the broker's state, never its sockets. */
export interface Services {
  readonly topics: TopicRegistry;
  readonly meta: MetaStore;
  readonly groups: GroupCoordinator;
  /** Aborted when the broker starts shutting down, so parked requests answer at once. */
  readonly stopping: AbortSignal;
  now(): number;
}
