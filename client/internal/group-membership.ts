import type { Connection } from '../connection.js';
import { isSluiceError, type SluiceError } from '../protocol/errors.js';
import type { PartitionSet } from '../protocol/messages/groups.js';

export interface TopicPartitionKey {
  readonly topic: string;
  readonly partition: number;
}

export interface MembershipHooks {
  /** Partitions granted by the coordinator; the consumer starts fetching them. */
  assigned(partitions: readonly TopicPartitionKey[]): Promise<void>;
  /**
   * Partitions taken away. The consumer stops yielding them and commits what was processed
   * while it still owns them; only then does the next heartbeat report them released.
   */
  revoked(partitions: readonly TopicPartitionKey[], fenced: boolean): Promise<void>;
  /** Heartbeat failures other than fencing (the broker unreachable, etc.). */
  error(err: SluiceError): void;
}

/**
 * The client half of the group protocol (docs/groups.md): heartbeat with what we own, apply the
 * assignment the coordinator answers with, revoke before reporting release, rejoin when fenced.
 * All commits carry the current member id and epoch, read from here.
 */
export class GroupMembership {
  readonly #conn: Connection;
  readonly #groupId: string;
  readonly #topics: readonly string[];
  readonly #hooks: MembershipHooks;
  #memberId: string | undefined;
  #memberEpoch = 0;
  #intervalMs = 1_000;
  #owned = new Map<string, TopicPartitionKey>();
  #stopped = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #poked = false;

  constructor(conn: Connection, groupId: string, topics: readonly string[], hooks: MembershipHooks) {
    this.#conn = conn;
    this.#groupId = groupId;
    this.#topics = [...topics];
    this.#hooks = hooks;
  }

  get memberId(): string | undefined {
    return this.#memberId;
  }

  get memberEpoch(): number {
    return this.#memberEpoch;
  }

  get owned(): TopicPartitionKey[] {
    return [...this.#owned.values()];
  }

  /** Joins and returns after the first heartbeat; heartbeats then continue in the background. */
  async start(): Promise<void> {
    await this.#beat();
    this.#loop = this.#run();
  }

  /** Sends the next heartbeat now instead of at the next interval (e.g. after a revocation). */
  poke(): void {
    if (this.#wake !== undefined) this.#wake();
    else this.#poked = true;
  }

  /** Leaves the group (epoch -1), releasing every partition at once. */
  async leave(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
    if (this.#memberId === undefined) return;
    try {
      await this.#conn.request('GroupHeartbeat', { groupId: this.#groupId, memberId: this.#memberId, memberEpoch: -1 });
    } catch {
      // Leaving is best effort: the session expires on the broker if this never arrives.
    }
    this.#owned.clear();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (!this.#poked) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.#intervalMs);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.#poked = false;
      this.#wake = undefined;
      if (this.#stopped) return;
      try {
        await this.#beat();
      } catch (err) {
        if (isSluiceError(err)) this.#hooks.error(err);
      }
    }
  }

  async #beat(): Promise<void> {
    const joining = this.#memberEpoch === 0;
    let res;
    try {
      res = await this.#conn.request('GroupHeartbeat', {
        groupId: this.#groupId,
        memberEpoch: this.#memberEpoch,
        ...(this.#memberId === undefined ? {} : { memberId: this.#memberId }),
        ...(joining ? { topics: this.#topics } : {}),
        ownedPartitions: toSets(this.#owned.values()),
      });
    } catch (err) {
      if (isSluiceError(err) && (err.code === 'FENCED_MEMBER_EPOCH' || err.code === 'UNKNOWN_MEMBER')) {
        // Our partitions may already be someone else's: drop them without committing, rejoin.
        const lost = this.owned;
        this.#owned.clear();
        this.#memberEpoch = 0;
        await this.#hooks.revoked(lost, true);
        this.poke();
        return;
      }
      throw err;
    }
    this.#memberId = res.memberId;
    this.#memberEpoch = res.memberEpoch;
    this.#intervalMs = res.heartbeatIntervalMs;
    const target = new Map<string, TopicPartitionKey>();
    for (const set of res.assignment) for (const partition of set.partitions) target.set(keyOf(set.topic, partition), { topic: set.topic, partition });
    const revoked = [...this.#owned].filter(([k]) => !target.has(k)).map(([, tp]) => tp);
    const added = [...target].filter(([k]) => !this.#owned.has(k)).map(([, tp]) => tp);
    if (revoked.length > 0) {
      await this.#hooks.revoked(revoked, false);
      for (const tp of revoked) this.#owned.delete(keyOf(tp.topic, tp.partition));
      this.poke();
    }
    if (added.length > 0) {
      for (const tp of added) this.#owned.set(keyOf(tp.topic, tp.partition), tp);
      await this.#hooks.assigned(added);
    }
  }
}

export function keyOf(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

function toSets(partitions: Iterable<TopicPartitionKey>): PartitionSet[] {
  const byTopic = new Map<string, number[]>();
  for (const { topic, partition } of partitions) {
    const list = byTopic.get(topic) ?? [];
    list.push(partition);
    byTopic.set(topic, list);
  }
  return [...byTopic].map(([topic, list]) => ({ topic, partitions: list.sort((a, b) => a - b) }));
}
