import { randomFillSync } from 'node:crypto';
import type { SluiceClient } from '../../../client/client.js';
import type { Producer, ProducerMessage } from '../../../client/producer.js';
import type { BenchConfig } from '../config.js';
import type { LatencyHistogram } from '../histogram.js';
import type { Meter } from '../progress.js';

export interface ProduceLoad {
  readonly topic: string;
  /** Messages per producer after the warm-up (undefined: until `stopAt`). */
  readonly counts: readonly (number | undefined)[];
  /** performance.now() before which sends are warm-up: they go out but do not count toward `counts`. */
  readonly warmUntil: number;
  /** performance.now() after which no producer starts another send. */
  readonly stopAt: number;
  /** msgs/s per producer; 0: as fast as the window allows. */
  readonly ratePerProducer: number;
  /** Write the send time (ms since the epoch, float64 LE) into the first 8 bytes of each value. */
  readonly stamp: boolean;
  /** Records send() -> ack per message when given. */
  readonly histogram: LatencyHistogram | undefined;
  /** Counts acknowledged messages. */
  readonly meter: Meter;
}

/** Messages per producer: `total` split as evenly as integers allow. */
export function splitCount(total: number | undefined, producers: number): (number | undefined)[] {
  return Array.from({ length: producers }, (_, i) => (total === undefined ? undefined : Math.floor(total / producers) + (i < total % producers ? 1 : 0)));
}

/** One Producer per client, configured from the bench flags. */
export function benchProducers(clients: readonly SluiceClient[], config: BenchConfig): Producer[] {
  return clients.map((c) => c.producer({ lingerMs: config.lingerMs, maxBatchBytes: config.batchSize, maxInFlight: config.maxInFlight }));
}

/**
 * Runs every producer to the end of its share and resolves, once all sends are acknowledged,
 * with the number sent (warm-up included). Rejects with the first failed send (after the rest settled).
 */
export async function produceLoad(producers: readonly Producer[], config: BenchConfig, load: ProduceLoad): Promise<number> {
  const sent = await Promise.all(producers.map((p, i) => runProducer(p, config, load, load.counts[i])));
  return sent.reduce((a, b) => a + b, 0);
}

/**
 * The hot loop. No allocation per message beyond what send() itself costs: one message object
 * reused (send() reads it synchronously), values preallocated, and no await per send: up to
 * `window` sends are outstanding and the loop only waits when the window is full.
 *
 * Values: without `stamp` every message shares one buffer of random bytes (the producer copies
 * values into the batch when it seals it). With `stamp` each value needs its own bytes until its
 * batch is sealed, so values come from a ring of `window` slots and a slot is reused only once
 * the send that last used it has settled.
 */
async function runProducer(producer: Producer, config: BenchConfig, load: ProduceLoad, count: number | undefined): Promise<number> {
  const { messageSize, window } = config;
  const { histogram, meter, stamp, stopAt, warmUntil, ratePerProducer } = load;
  const limit = count ?? Infinity;
  let warm = 0;
  const slots = stamp ? window : 1;
  const pool = randomFillSync(Buffer.allocUnsafe(messageSize * slots));
  const ring = Array.from({ length: slots }, (_, i) => pool.subarray(i * messageSize, (i + 1) * messageSize));
  const busy = new Uint8Array(slots);
  const message: ProducerMessage = { topic: load.topic, value: ring[0] };
  const epoch = performance.timeOrigin;
  // Hysteresis: once the window is full, resume when a quarter of it is free, so the loop
  // does not wake for every single ack.
  const resumeAt = window - Math.max(1, window >> 2);
  let outstanding = 0;
  let failure: unknown;
  let blocked: (() => boolean) | undefined;
  let resume: (() => void) | undefined;
  const wake = (): void => {
    if (blocked !== undefined && (failure !== undefined || !blocked())) {
      blocked = undefined;
      resume!();
    }
  };
  const waitUntilFree = (isBlocked: () => boolean): Promise<void> =>
    new Promise((resolve) => {
      blocked = isBlocked;
      resume = resolve;
    });
  const onError = (err: unknown): void => {
    failure ??= err;
    outstanding--;
    wake();
  };

  const start = performance.now();
  let i = 0;
  for (; i - warm < limit && failure === undefined; i++) {
    const now = performance.now();
    if (now >= stopAt) break;
    if (ratePerProducer > 0) {
      // Paced: message i is due at start + i / rate. Timers tick in whole milliseconds, so
      // messages go out in small bursts (rate / 1000 per tick) at the right average rate.
      const due = start + (i * 1000) / ratePerProducer;
      if (due > now) await sleep(due - now);
    }
    if (outstanding >= window) await waitUntilFree(() => outstanding > resumeAt);
    const slot = i % slots;
    if (busy[slot] === 1) await waitUntilFree(() => busy[slot] === 1);
    if (failure !== undefined) break;
    if (stamp || warmUntil > 0) {
      // The warm-up test compares the stamp itself with the end of the warm-up, computed as the
      // consumers compute it (epoch + performance.now()), so both sides agree to the last bit.
      const stampMs = epoch + performance.now();
      if (stampMs < epoch + warmUntil) warm++;
      if (stamp) {
        const value = ring[slot]!;
        value.writeDoubleLE(stampMs, 0);
        message.value = value;
        busy[slot] = 1;
      }
    }
    outstanding++;
    const sentAt = histogram === undefined ? 0 : performance.now();
    producer.send(message).then(() => {
      if (histogram !== undefined) histogram.recordMs(performance.now() - sentAt);
      busy[slot] = 0;
      outstanding--;
      meter.done++;
      wake();
    }, onError);
  }
  while (outstanding > 0) await waitUntilFree(() => outstanding > 0);
  if (failure !== undefined) throw failure;
  return i;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
