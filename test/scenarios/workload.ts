/**
 * The moving parts of the fault scenarios (issue 7): producers, a group poll consumer and push
 * consumers that run until told to stop and record everything into one History, plus the final
 * full read of the log that makes the checker's "lost" and "duplicated" exact. Each scenario
 * adds its nemesis (kills, power cuts, consumer crashes) and its own bounds.
 *
 * Sizes scale with SLUICE_SOAK_SCALE (default 1, sized for CI; `npm run soak` sets 20).
 */
import { connect, type PollConsumer, type PushConsumer, type SluiceClient } from '../../client/index.js';
import { History, type HistoryEvent } from '../../testing/history.js';
import { positionRecorder, recordAck, recordDelivery, recordPoll, recordSend } from '../../testing/recorders.js';
import { seededRandom } from '../helpers/random.js';

/** The scenarios' fault schedules: seeded, so SLUICE_SCENARIO_SEED replays one. */
export const random = seededRandom;

export const SCALE = Math.max(1, Number(process.env['SLUICE_SOAK_SCALE'] ?? 1));

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function client(address: string): Promise<SluiceClient> {
  return connect({ broker: address, connectTimeoutMs: 30_000, requestTimeoutMs: 10_000, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
}

/** Under `npm run soak` (SLUICE_SOAK_SCALE set), prints what a scenario did: the run's figures. */
export function report(scenario: string, summary: string, faults: string): void {
  if (process.env['SLUICE_SOAK_SCALE'] !== undefined) process.stdout.write(`${scenario}: ${faults}; ${summary}\n`);
}

/** Something running until `stop()`, which resolves once it has wound down. */
export interface Worker {
  stop(): Promise<void>;
}

/**
 * An idempotent producer sending `${name}-${n}` with up to `window` sends in flight, keyed so
 * they spread over the partitions. Failed sends are recorded (unknown) and not retried: a new
 * value is sent instead, as an application would after giving up.
 */
export function producer(history: History, c: SluiceClient, name: string, topic: string, window = 16): Worker {
  const p = c.producer({ lingerMs: 1 });
  let stopping = false;
  let n = 0;
  const lane = async (): Promise<void> => {
    while (!stopping) {
      const value = `${name}-${n++}`;
      const sent = await recordSend(history, name, p, { topic, key: value, value });
      if (sent === undefined) await sleep(50);
    }
  };
  const lanes = Array.from({ length: window }, lane);
  return {
    async stop() {
      stopping = true;
      await Promise.all(lanes);
      await p.close().catch(() => undefined);
    },
  };
}

/**
 * A group poll consumer reading with `fetch()` (committing as it goes). On an error it closes
 * and a new one takes over under a new process name, as a restarted service would.
 */
export function pollConsumer(history: History, c: SluiceClient, name: string, topic: string, group: string): Worker {
  let stopping = false;
  let current: PollConsumer | undefined;
  const run = async (): Promise<void> => {
    for (let generation = 0; !stopping; generation++) {
      const process = `${name}.${generation}`;
      current = c.pollConsumer({ topics: [topic], group, from: 'earliest', maxWaitMs: 100, autoCommitIntervalMs: 200, onPosition: positionRecorder(history, process) });
      try {
        while (!stopping) {
          const messages = await current.fetch();
          if (messages.length > 0) recordPoll(history, process, messages);
        }
      } catch {
        await sleep(50);
      } finally {
        await current.close().catch(() => undefined);
      }
    }
  };
  const running = run();
  return {
    async stop() {
      stopping = true;
      await current?.close().catch(() => undefined);
      await running;
    },
  };
}

/** A push consumer that records each delivery and acks it; `kill()` drops it without a goodbye. */
export interface PushWorker extends Worker {
  /** Stops at once without settling what it holds, as a crashed process would. */
  kill(): Promise<void>;
}

/** `handleMs`: how long its handler works on each message before acking (they overlap, up to prefetch). */
export function pushConsumer(history: History, address: string, name: string, topic: string, subscription: string, prefetch = 50, handleMs = 0): PushWorker {
  let stopping = false;
  let own: SluiceClient | undefined;
  let consumer: PushConsumer | undefined;
  const run = async (): Promise<void> => {
    // Its own connection, so that killing it is a connection loss the broker sees.
    own = await client(address);
    if (stopping) return; // killed while connecting
    consumer = own.pushConsumer({ topic, subscription, prefetch, create: { start: 'earliest', ackWaitMs: 2_000 } });
    while (!stopping) {
      const m = await consumer.receive({ timeoutMs: 100 }).catch(() => undefined);
      if (m === undefined || stopping) continue;
      recordDelivery(history, name, m);
      if (handleMs === 0) void recordAck(history, name, m);
      else void sleep(handleMs).then(() => (stopping ? undefined : recordAck(history, name, m)));
    }
  };
  const running = run().catch(() => undefined);
  return {
    async stop() {
      stopping = true;
      await running;
      await consumer?.close({ timeoutMs: 1_000 }).catch(() => undefined);
      await own?.close().catch(() => undefined);
    },
    async kill() {
      stopping = true;
      await running;
      own?.connection.destroy();
    },
  };
}

/**
 * Reads every partition of `topic` from offset 0 to its end into the history as one more
 * process: the ground truth of what the log holds, which the checker then compares with every
 * acknowledged send (lost) and every position (duplicated, inconsistent).
 */
export async function readWholeLog(history: History, c: SluiceClient, topic: string, partitions: number): Promise<void> {
  const reader = c.pollConsumer({ topics: [topic], from: 'earliest', isolation: 'read_uncommitted', maxWaitMs: 100, onPosition: positionRecorder(history, 'log-reader') });
  try {
    const ends = await c.admin().listOffsets(topic, 'latest');
    if (ends.length !== partitions) throw new Error(`${topic} has ${ends.length} partitions, expected ${partitions}`);
    const remaining = new Map(ends.map((e) => [e.partition, e.offset]));
    const deadline = Date.now() + 30_000;
    while ([...remaining.values()].some((end) => end > 0) && Date.now() < deadline) {
      const messages = await reader.fetch();
      if (messages.length > 0) recordPoll(history, 'log-reader', messages);
      for (const m of messages) if (m.offset + 1 >= (remaining.get(m.partition) ?? 0)) remaining.set(m.partition, 0);
    }
  } finally {
    await reader.close();
  }
}

/** Values acked to producers that consumers whose process name starts with `kind` never consumed (polled, or acked). */
export function missedBy(history: History, kind: string): string[] {
  const events = history.events();
  const consumed = new Set(events.flatMap((e) => (((e.f === 'poll' && e.type === 'ok') || e.f === 'ack') && e.process.startsWith(kind) ? e.records.map((r) => r.value) : [])));
  return events.flatMap((e) => (e.f === 'send' && e.type === 'ok' && !consumed.has(e.value) ? [e.value] : []));
}

/** Waits until every acknowledged value has been consumed (polled or acked) by `consumers`, or `ms` pass. */
export async function untilConsumed(history: History, ms: number, consumed: (e: HistoryEvent) => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const acked = new Set<string>();
    const seen = new Set<string>();
    for (const e of history.events()) {
      if (e.f === 'send' && e.type === 'ok') acked.add(e.value);
      // As the checker counts: a poll's records once returned, an ack's once asked for.
      else if (((e.f === 'poll' && e.type === 'ok') || e.f === 'ack') && consumed(e)) for (const r of e.records) seen.add(r.value);
    }
    if ([...acked].every((v) => seen.has(v)) || Date.now() > deadline) return;
    await sleep(100);
  }
}
