/**
 * Properties of push delivery over real TCP, under random schedules of settlements. Deliveries
 * are counted on the wire (Deliver frames), settlements when the test makes them (before the
 * Settle request leaves), so the client-side model can only under-count what a consumer holds.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { Connection } from '../../client/connection.js';
import { isSluiceError } from '../../client/protocol/errors.js';
import { parseDeliverPush } from '../../client/protocol/messages/push.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import { PushConsumer, type PushMessage } from '../../client/push-consumer.js';
import { MemoryLogger } from '../helpers/logger.js';
import { produceRaw } from '../helpers/produce.js';
import { tempDir } from '../helpers/temp-dir.js';

let b: RunningBroker;
const dir = tempDir();
let run = 0;

beforeAll(async () => {
  b = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger() });
});

afterAll(async () => {
  await b.close();
  dir.remove();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Wire {
  conn: Connection;
  consumer: PushConsumer;
  /** Deliver frames as they arrived: consumer id, offsets and attempts. */
  onDeliver(listener: (consumerId: string, offset: number, attempt: number) => void): void;
}

async function attach(topic: string, subscription: string, prefetch: number, create: object): Promise<Wire> {
  const conn = await Connection.connect({ broker: b.address, reconnect: false });
  const listeners: Array<(consumerId: string, offset: number, attempt: number) => void> = [];
  // Registered before the consumer's own listener, so the model sees a delivery first.
  conn.onPush(Opcode.Deliver, (body) => {
    const d = parseDeliverPush(body);
    d.offsets.forEach((offset, i) => {
      for (const l of listeners) l(d.consumerId, offset, d.attempts[i] as number);
    });
  });
  const consumer = new PushConsumer(conn, { topic, subscription, prefetch, create: { start: 'earliest', ...create } });
  return { conn, consumer, onDeliver: (l) => listeners.push(l) };
}

async function detach(wires: readonly Wire[]): Promise<void> {
  for (const w of wires) {
    await w.consumer.close({ timeoutMs: 100 });
    await w.conn.close();
  }
}

/** Drives one consumer: takes each message and runs `handle` on it without blocking the next. */
function drive(w: Wire, stop: AbortSignal, handle: (m: PushMessage) => Promise<void>): Promise<void> {
  return (async () => {
    const work: Array<Promise<void>> = [];
    for (;;) {
      let m: PushMessage | undefined;
      try {
        m = await w.consumer.receive({ signal: stop });
      } catch (err) {
        if (isSluiceError(err) && err.code === 'ABORTED') break;
        throw err;
      }
      if (m === undefined) break;
      work.push(handle(m));
    }
    await Promise.all(work);
  })();
}

type Failure = 'nack' | 'nack-delay' | 'timeout';

describe('push delivery properties', () => {
  it('never has more than prefetch deliveries unsettled at a consumer, and acks every message exactly once', async () => {
    const ACK_WAIT = 250;
    // A delivery ended by its deadline: the broker's clock started when it sent it, before the
    // test saw it (transit plus any event-loop stall here), so the model lets it go SLACK early.
    // Letting go early can only hide a violation, never invent one.
    const SLACK = 100;
    const schedule = fc.record({
      consumers: fc.integer({ min: 1, max: 2 }),
      prefetch: fc.integer({ min: 1, max: 3 }),
      // Per message: what its first attempts suffer before one is acked.
      failures: fc.array(fc.array(fc.constantFrom<Failure>('nack', 'nack-delay', 'timeout'), { maxLength: 2 }), { minLength: 3, maxLength: 8 }),
      delays: fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 8, maxLength: 8 }),
    });
    await fc.assert(
      fc.asyncProperty(schedule, async ({ consumers, prefetch, failures, delays }) => {
        const topic = `window-${++run}`;
        const admin = await Connection.connect({ broker: b.address, reconnect: false });
        await admin.request('CreateTopic', { topic, partitions: 1 });
        await produceRaw(admin, topic, 0, failures.map((_, i) => ({ value: i })));
        const wires = await Promise.all(Array.from({ length: consumers }, () => attach(topic, `${topic}-sub`, prefetch, { ackWaitMs: ACK_WAIT, maxDeliveries: 10 })));
        /** Per consumer: (offset/attempt) -> when received, for deliveries not settled yet. */
        const held = new Map<string, Map<string, number>>();
        const violations: string[] = [];
        const acked = new Map<number, number>();
        const purge = (now: number): void => {
          for (const h of held.values()) for (const [k, at] of h) if (now - at >= ACK_WAIT - SLACK) h.delete(k);
        };
        for (const w of wires) {
          w.onDeliver((consumerId, offset, attempt) => {
            const now = Date.now();
            purge(now);
            // A redelivery supersedes earlier attempts wherever they were held.
            for (const h of held.values()) for (let a = 1; a < attempt; a++) h.delete(`${offset}/${a}`);
            const mine = held.get(consumerId) ?? new Map<string, number>();
            held.set(consumerId, mine);
            mine.set(`${offset}/${attempt}`, now);
            if (mine.size > prefetch) violations.push(`${consumerId} holds ${[...mine.keys()].join(' ')} > prefetch ${prefetch}`);
          });
        }
        const settle = (m: PushMessage): void => {
          for (const h of held.values()) h.delete(`${m.offset}/${m.attempt}`);
        };
        const stop = new AbortController();
        const handle = async (m: PushMessage): Promise<void> => {
          await sleep(delays[m.offset % delays.length] as number);
          const failure = failures[m.offset]?.[m.attempt - 1];
          if (failure === 'timeout') return; // never settled: the ack wait ends it
          settle(m);
          if (failure === 'nack') await m.nack();
          else if (failure === 'nack-delay') await m.nack({ delayMs: 30 });
          else {
            try {
              await m.ack();
              acked.set(m.offset, (acked.get(m.offset) ?? 0) + 1);
            } catch (err) {
              // Only possible if the ack lost a race with its deadline: then it is redelivered.
              if (!(isSluiceError(err) && err.code === 'STALE_ACK')) throw err;
            }
          }
          if (acked.size === failures.length) stop.abort();
        };
        const timer = setTimeout(() => stop.abort(), 10_000);
        try {
          await Promise.all(wires.map((w) => drive(w, stop.signal, handle)));
        } finally {
          clearTimeout(timer);
          await detach(wires);
        }
        expect(violations).toEqual([]);
        expect([...acked.entries()].sort((x, y) => x[0] - y[0])).toEqual(failures.map((_, i) => [i, 1]));
        const d = await admin.request('DescribeSubscription', { subscription: `${topic}-sub` });
        expect(d).toMatchObject({ pending: 0, inFlight: 0, deadLettered: 0 });
        await admin.close();
      }),
      { numRuns: 12, seed: 424242, endOnFailure: true },
    );
  }, 60_000);

  it("with ordering 'key', never has two messages of a key in flight, and delivers each key in offset order", async () => {
    type Step = 'ack' | 'nack' | 'nack-delay' | 'slow-ack';
    const schedule = fc.record({
      keys: fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 4, maxLength: 12 }),
      // Per message, per attempt; past the end of its list, an attempt is acked.
      steps: fc.array(fc.array(fc.constantFrom<Step>('ack', 'nack', 'nack-delay', 'slow-ack'), { maxLength: 3 }), { minLength: 12, maxLength: 12 }),
      prefetch: fc.integer({ min: 1, max: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(schedule, async ({ keys, steps, prefetch }) => {
        const topic = `keyed-${++run}`;
        const admin = await Connection.connect({ broker: b.address, reconnect: false });
        await admin.request('CreateTopic', { topic, partitions: 1 });
        await produceRaw(admin, topic, 0, keys.map((key, i) => ({ key, value: i })));
        const wires = await Promise.all([1, 2].map(() => attach(topic, `${topic}-sub`, prefetch, { ordering: 'key', ackWaitMs: 30_000, maxDeliveries: 100 })));
        const inFlight = new Map<string, number>(); // key -> offset in flight
        const done = new Set<number>();
        const firstOrder = new Map<string, number[]>();
        const violations: string[] = [];
        for (const w of wires) {
          w.onDeliver((_consumerId, offset, attempt) => {
            const key = keys[offset] as string;
            const other = inFlight.get(key);
            if (other !== undefined) violations.push(`${offset} (key ${key}) delivered while ${other} is in flight`);
            const earlier = keys.findIndex((k, i) => k === key && i < offset && !done.has(i));
            if (earlier >= 0) violations.push(`${offset} (key ${key}) delivered before ${earlier} was acked`);
            inFlight.set(key, offset);
            if (attempt === 1) firstOrder.set(key, [...(firstOrder.get(key) ?? []), offset]);
          });
        }
        const stop = new AbortController();
        const handle = async (m: PushMessage): Promise<void> => {
          const step = steps[m.offset]?.[m.attempt - 1] ?? 'ack';
          const key = keys[m.offset] as string;
          if (step === 'slow-ack') await sleep(20);
          // Settled in the model before the Settle leaves: the broker can only learn it later.
          if (inFlight.get(key) === m.offset) inFlight.delete(key);
          if (step === 'nack') await m.nack();
          else if (step === 'nack-delay') await m.nack({ delayMs: 25 });
          else {
            done.add(m.offset);
            await m.ack();
          }
          if (done.size === keys.length) stop.abort();
        };
        const timer = setTimeout(() => stop.abort(), 10_000);
        try {
          await Promise.all(wires.map((w) => drive(w, stop.signal, handle)));
        } finally {
          clearTimeout(timer);
          await detach(wires);
        }
        expect(violations).toEqual([]);
        expect(done.size).toBe(keys.length);
        for (const [key, offsets] of firstOrder) {
          expect(offsets, `key ${key}`).toEqual(keys.flatMap((k, i) => (k === key ? [i] : [])));
        }
        await admin.close();
      }),
      { numRuns: 15, seed: 777, endOnFailure: true },
    );
  }, 60_000);
});
