import { SluiceError } from '../client/protocol/errors.js';
import type { CreateTopicRequest } from '../client/protocol/messages/topics.js';
import type { LogManager, PartitionLog } from './log/index.js';
import type { MetaStore, TopicRecord } from './meta/meta-store.js';
import { validateTopicConfig, validateTopicName } from './meta/topic-name.js';

export interface TopicDefaults {
  readonly partitions: number;
  readonly autoCreate: boolean;
}

/**
 * State that lives next to each partition log (the producer state: broker/txn/producer-states.ts).
 * `opened` runs for every partition before its topic is served, so no request sees a partition
 * whose state is still being rebuilt; a failure there fails the topic's opening like a log
 * failure would. `deleting` runs before a topic's logs are closed and removed.
 */
export interface PartitionHooks {
  opened(topic: string, partition: number, log: PartitionLog): Promise<void>;
  deleting(topic: string, logs: readonly PartitionLog[]): Promise<void>;
}

interface OpenTopic {
  readonly record: TopicRecord;
  readonly logs: readonly PartitionLog[];
}

const MAX_PARTITIONS = 10_000;

/**
 * Which topics exist and their open partition logs. SQLite is the source of truth; a topic is
 * served only once every one of its partition logs is open, so a produce never races a create.
 * Creation writes metadata first: a crash before the logs open leaves a topic whose empty logs
 * are created on the next start, never logs without a topic.
 */
export class TopicRegistry {
  readonly #meta: MetaStore;
  readonly #logs: LogManager;
  readonly #defaults: TopicDefaults;
  readonly #hooks: PartitionHooks | undefined;
  readonly #topics = new Map<string, OpenTopic>();
  readonly #opening = new Map<string, Promise<OpenTopic>>();

  constructor(meta: MetaStore, logs: LogManager, defaults: TopicDefaults, hooks?: PartitionHooks) {
    this.#meta = meta;
    this.#logs = logs;
    this.#defaults = defaults;
    this.#hooks = hooks;
  }

  /**
   * Opens (and recovers) the logs of every topic in the metadata store. A topic whose logs cannot
   * be opened is logged and left out, so one bad topic never keeps the broker from starting.
   */
  async openAll(onError: (topic: string, err: unknown) => void): Promise<void> {
    for (const record of this.#meta.listTopics()) {
      try {
        await this.#open(record);
      } catch (err) {
        onError(record.name, err);
      }
    }
  }

  async create(req: CreateTopicRequest, now = Date.now()): Promise<TopicRecord> {
    const name = validateTopicName(req.topic);
    const partitions = req.partitions ?? this.#defaults.partitions;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
      throw new SluiceError('INVALID_CONFIG', `partitions must be an integer in [1, ${MAX_PARTITIONS}], got ${partitions}`);
    }
    const record: TopicRecord = {
      name,
      partitions,
      config: validateTopicConfig({ retentionMs: req.retentionMs ?? null, retentionBytes: req.retentionBytes ?? null, segmentBytes: req.segmentBytes ?? null }),
      createdAt: now,
    };
    this.#meta.createTopic(record);
    try {
      await this.#open(record);
    } catch (err) {
      // Never leave a topic in SQLite whose logs could not be created.
      this.#meta.deleteTopic(name);
      throw err;
    }
    return record;
  }

  async delete(topic: string): Promise<void> {
    const name = validateTopicName(topic);
    await this.#opening.get(name)?.catch(() => undefined);
    if (!this.#meta.deleteTopic(name)) throw notFound(name);
    const open = this.#topics.get(name);
    this.#topics.delete(name);
    if (open !== undefined) await this.#hooks?.deleting(name, open.logs);
    await this.#logs.deleteTopic(name);
  }

  get(topic: string): TopicRecord | undefined {
    return this.#topics.get(topic)?.record;
  }

  /** The topic's record; TOPIC_NOT_FOUND if it does not exist. */
  require(topic: string): TopicRecord {
    const open = this.#topics.get(topic);
    if (open === undefined) throw notFound(topic);
    return open.record;
  }

  list(): TopicRecord[] {
    return [...this.#topics.values()].map((t) => t.record).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Partition count, or undefined for an unknown topic (the group coordinator's view). */
  partitionsOf(topic: string): number | undefined {
    return this.#topics.get(topic)?.record.partitions;
  }

  /** The log of one partition; TOPIC_NOT_FOUND or PARTITION_NOT_FOUND otherwise. */
  partition(topic: string, partition: number): PartitionLog {
    const open = this.#topics.get(topic);
    if (open === undefined) throw notFound(topic);
    const log = open.logs[partition];
    if (log === undefined) {
      throw new SluiceError('PARTITION_NOT_FOUND', `topic ${topic} has partitions 0..${open.logs.length - 1}, not ${partition}`, {
        details: { topic, partition, partitions: open.logs.length },
      });
    }
    return log;
  }

  /**
   * With auto-create on, creates an unknown topic (as Kafka does on produce and metadata
   * requests, so a producer can learn its partition count); otherwise does nothing.
   */
  async ensure(topic: string): Promise<void> {
    if (this.#topics.has(topic) || !this.#defaults.autoCreate) return;
    if (!this.#opening.has(topic) && this.#meta.getTopic(topic) === undefined) {
      const created = this.create({ topic });
      // create() registers the opening synchronously once the name is valid; every request
      // then awaits that same promise, so they resume (and append) in arrival order.
      if (!this.#opening.has(topic)) return created.then(() => undefined);
      created.catch(() => undefined);
    }
    await this.#opening.get(topic);
  }

  #open(record: TopicRecord): Promise<OpenTopic> {
    const opening = (async () => {
      const overrides = {
        retentionMs: record.config.retentionMs,
        retentionBytes: record.config.retentionBytes,
        ...(record.config.segmentBytes === null ? {} : { segmentBytes: record.config.segmentBytes }),
      };
      const logs = await Promise.all(Array.from({ length: record.partitions }, (_, p) => this.#logs.openPartition(record.name, p, overrides)));
      const hooks = this.#hooks;
      if (hooks !== undefined) await Promise.all(logs.map((log, p) => hooks.opened(record.name, p, log)));
      const open = { record, logs };
      this.#topics.set(record.name, open);
      return open;
    })();
    this.#opening.set(record.name, opening);
    const forget = (): void => {
      if (this.#opening.get(record.name) === opening) this.#opening.delete(record.name);
    };
    opening.then(forget, forget);
    return opening;
  }
}

/** TOPIC_NOT_FOUND, or INVALID_TOPIC when the name could never exist (the more useful answer). */
function notFound(topic: string): SluiceError {
  validateTopicName(topic);
  return new SluiceError('TOPIC_NOT_FOUND', `topic ${topic} does not exist`, { details: { topic } });
}
