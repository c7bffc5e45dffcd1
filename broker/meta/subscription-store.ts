import type Database from 'better-sqlite3';

/** A push subscription as stored: its config is the wire SubscriptionConfig, as JSON. */
export interface SubscriptionRecord {
  name: string;
  topic: string;
  config: string;
  dlqCheckpoint: number;
  createdAt: number;
}

export interface PartitionStateRow {
  partition: number;
  /** The JSON of a PersistedPartitionState (broker/push/partition-state.ts). */
  state: string;
}

/**
 * Where push subscriptions keep what must survive a crash. Narrow on purpose: the push layer
 * decides what the state means; this only stores it, atomically and durably.
 */
export interface SubscriptionStore {
  /** False if a subscription of that name already exists (nothing is written). */
  createSubscription(record: SubscriptionRecord): boolean;
  getSubscription(name: string): SubscriptionRecord | undefined;
  listSubscriptions(): SubscriptionRecord[];
  deleteSubscription(name: string): boolean;
  loadPartitionStates(name: string): PartitionStateRow[];
  /** Writes every given partition state and the DLQ checkpoint in one durable transaction. */
  savePartitionStates(name: string, states: readonly PartitionStateRow[], dlqCheckpoint: number): void;
}

interface SubscriptionRow {
  name: string;
  topic: string;
  config: string;
  dlq_checkpoint: number;
  created_at: number;
}

const toRecord = (r: SubscriptionRow): SubscriptionRecord => ({ name: r.name, topic: r.topic, config: r.config, dlqCheckpoint: r.dlq_checkpoint, createdAt: r.created_at });

/** The SQLite implementation; statements are prepared once, on the metadata store's handle. */
export function sqliteSubscriptionStore(db: Database.Database): SubscriptionStore {
  const insert = db.prepare(`INSERT INTO subscriptions (name, topic, config, dlq_checkpoint, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`);
  const select = db.prepare<[string], SubscriptionRow>(`SELECT * FROM subscriptions WHERE name = ?`);
  const selectAll = db.prepare<[], SubscriptionRow>(`SELECT * FROM subscriptions ORDER BY name`);
  const remove = db.prepare(`DELETE FROM subscriptions WHERE name = ?`);
  const selectStates = db.prepare<[string], PartitionStateRow>(`SELECT "partition" AS "partition", state FROM subscription_partitions WHERE subscription = ? ORDER BY "partition"`);
  const upsertState = db.prepare(
    `INSERT INTO subscription_partitions (subscription, "partition", state) VALUES (?, ?, ?)
     ON CONFLICT (subscription, "partition") DO UPDATE SET state = excluded.state`,
  );
  const setCheckpoint = db.prepare(`UPDATE subscriptions SET dlq_checkpoint = ? WHERE name = ?`);
  const save = db.transaction((name: string, states: readonly PartitionStateRow[], dlqCheckpoint: number) => {
    for (const s of states) upsertState.run(name, s.partition, s.state);
    setCheckpoint.run(dlqCheckpoint, name);
  });
  return {
    createSubscription: (r) => insert.run(r.name, r.topic, r.config, r.dlqCheckpoint, r.createdAt).changes === 1,
    getSubscription: (name) => {
      const row = select.get(name);
      return row === undefined ? undefined : toRecord(row);
    },
    listSubscriptions: () => selectAll.all().map(toRecord),
    deleteSubscription: (name) => remove.run(name).changes > 0,
    loadPartitionStates: (name) => selectStates.all(name),
    savePartitionStates: (name, states, dlqCheckpoint) => save(name, states, dlqCheckpoint),
  };
}
