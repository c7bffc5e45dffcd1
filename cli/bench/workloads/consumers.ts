import type { SluiceClient } from '../../../client/client.js';
import type { PollConsumer } from '../../../client/poll-consumer.js';
import type { PushConsumer, PushMessage } from '../../../client/push-consumer.js';
import type { Message } from '../../../client/value-codec.js';
import type { BenchConfig } from '../config.js';
import type { LatencyHistogram } from '../histogram.js';
import type { Tally } from './tally.js';

export interface ConsumerLoad {
  readonly topic: string;
  /** Consumer group (poll, several consumers) or push subscription name. */
  readonly name: string;
  readonly tally: Tally;
  /** e2e: called for every new message with the wall clock of its receipt (ms since the epoch). */
  readonly onMessage: ((m: Message, receivedAt: number) => void) | undefined;
  /** consume: per fetch() round trip (poll) or per ack() round trip (push). */
  readonly histogram: LatencyHistogram | undefined;
}

const GROUP_SETTLE_TIMEOUT_MS = 30_000;

/**
 * The consumers of one run, one per client. Poll: without a group when there is one consumer
 * (it reads every partition); a consumer group otherwise, settled before the clock starts.
 * Push: competing consumers on one subscription that starts at the earliest offset; every
 * message is acked on its own, without waiting for the reply.
 *
 * Counting: a message is counted once. Poll rereads after a rebalance are recognised by offset
 * (per partition, offsets arrive in order); push redeliveries (attempt > 1) are acked, not counted.
 */
export class BenchConsumers {
  readonly #config: BenchConfig;
  readonly #load: ConsumerLoad;
  readonly #poll: PollConsumer[] = [];
  readonly #push: PushConsumer[] = [];
  /** Poll: next new offset per partition, shared by all consumers of the run. */
  readonly #next = new Map<number, number>();

  constructor(clients: readonly SluiceClient[], config: BenchConfig, load: ConsumerLoad) {
    this.#config = config;
    this.#load = load;
    for (const client of clients) {
      if (config.consumer === 'poll') {
        this.#poll.push(client.pollConsumer({ topics: [load.topic], from: 'earliest', ...(clients.length > 1 ? { group: load.name } : {}) }));
      } else {
        this.#push.push(client.pushConsumer({ topic: load.topic, subscription: load.name, prefetch: config.prefetch, create: { start: 'earliest' } }));
      }
    }
  }

  /**
   * Gets ready to receive: poll consumers position themselves (a group settles its assignment);
   * push consumers subscribe only if `subscribe`, since a subscription starts delivering at once.
   */
  async ready(options: { subscribe: boolean }): Promise<void> {
    await Promise.all(this.#poll.map((c) => c.start()));
    if (this.#poll.length > 1) await this.#settleGroup();
    if (options.subscribe) await Promise.all(this.#push.map((c) => c.start()));
  }

  /** Receives until the tally is done (or fails), then closes the consumers. Rejects with the tally's failure. */
  async run(): Promise<void> {
    const { tally } = this.#load;
    const loops = [...this.#poll.map((c) => this.#pollLoop(c)), ...this.#push.map((c) => this.#pushLoop(c))].map((p) => p.catch((err: unknown) => tally.fail(err)));
    try {
      await tally.whenDone;
    } finally {
      // Closing ends waits in fetch() and receive(); push close also waits for the acks.
      await Promise.allSettled([...this.#poll, ...this.#push].map((c) => c.close()));
      await Promise.all(loops);
    }
  }

  async #pollLoop(consumer: PollConsumer): Promise<void> {
    const { tally, onMessage, histogram } = this.#load;
    const epoch = performance.timeOrigin;
    while (!tally.finished) {
      const asked = performance.now();
      const batch = await consumer.fetch();
      if (tally.finished || batch.length === 0) continue;
      const now = performance.now();
      histogram?.recordMs(now - asked);
      let fresh = 0;
      for (const m of batch) {
        const next = this.#next.get(m.partition) ?? 0;
        if (m.offset < next) continue;
        this.#next.set(m.partition, m.offset + 1);
        fresh++;
        onMessage?.(m, epoch + now);
      }
      tally.add(fresh);
    }
  }

  async #pushLoop(consumer: PushConsumer): Promise<void> {
    const { tally, onMessage, histogram } = this.#load;
    const epoch = performance.timeOrigin;
    const onAckError = (err: unknown): void => {
      if (!tally.finished) tally.fail(err);
    };
    const ack =
      histogram === undefined
        ? (m: PushMessage): void => void m.ack().catch(onAckError)
        : (m: PushMessage): void => {
            const t = performance.now();
            m.ack().then(() => histogram.recordMs(performance.now() - t), onAckError);
          };
    await consumer.start();
    while (!tally.finished) {
      const m = await consumer.receive();
      if (m === undefined) return;
      ack(m);
      if (m.attempt !== 1) continue;
      onMessage?.(m, epoch + performance.now());
      tally.add(1);
    }
  }

  /** Waits until the group's assignment covers every partition, spread over as many consumers as can have one. */
  async #settleGroup(): Promise<void> {
    const deadline = Date.now() + GROUP_SETTLE_TIMEOUT_MS;
    const want = Math.min(this.#poll.length, this.#config.partitions);
    for (;;) {
      const sizes = this.#poll.map((c) => c.assignment().length);
      const owned = sizes.reduce((a, b) => a + b, 0);
      if (owned === this.#config.partitions && sizes.filter((n) => n > 0).length === want) return;
      if (Date.now() > deadline) throw new Error(`consumer group ${this.#load.name} did not settle within ${GROUP_SETTLE_TIMEOUT_MS / 1000} s (assignment sizes ${sizes.join(', ')})`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
