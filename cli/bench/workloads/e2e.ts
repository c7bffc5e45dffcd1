import type { Message } from '../../../client/value-codec.js';
import { LatencyHistogram } from '../histogram.js';
import { runResult, type RunResult } from '../report.js';
import { BenchConsumers } from './consumers.js';
import { withClients, type RunContext } from './context.js';
import { benchProducers, produceLoad, splitCount } from './producers.js';
import { Tally } from './tally.js';

/**
 * e2e: consumers are subscribed first; then producers send at --rate (0: unpaced), each value
 * carrying its send time (float64 ms since the epoch in its first 8 bytes), and consumers
 * record receipt time minus send time for every message. Under fsync=always a message is
 * visible only once durable, so this latency includes the fsync. Throughput: messages received
 * over the time from the first measured send to the last receipt (about --rate when the system
 * keeps up).
 *
 * --warmup: for that long first, the same producers and consumers send and receive at the same
 * rate, but nothing is recorded: the run measures the steady state, not the JIT compiling the
 * hot paths of two fresh processes (or of new topics and connections). Which messages are
 * warm-up is decided by their send stamp, so the two phases join without a gap.
 */
export async function runE2eWorkload(ctx: RunContext): Promise<RunResult> {
  const { config } = ctx;
  return withClients(ctx.broker, config.consumers, 'consumer', (consumerClients) =>
    withClients(ctx.broker, config.producers, 'producer', async (producerClients) => {
      const histogram = new LatencyHistogram();
      // The target (warm-up included) is known only once the producers stop.
      const tally = new Tally(config.warmupMs > 0 ? undefined : config.count);
      let measureFrom = Infinity;
      let measured = 0;
      const onMessage = (m: Message, receivedAt: number): void => {
        const sentAt = (m.value as Buffer).readDoubleLE(0);
        if (sentAt < measureFrom) return;
        measured++;
        histogram.recordMs(receivedAt - sentAt);
      };
      const consumers = new BenchConsumers(consumerClients, config, { topic: ctx.topic, name: ctx.name, tally, onMessage, histogram: undefined });
      await consumers.ready({ subscribe: true });
      const producers = benchProducers(producerClients, config);
      // The tally counts the warm-up too, so a total is known only without one.
      ctx.progress.start(`${ctx.label}e2e`, tally, config.warmupMs > 0 ? undefined : config.count);
      const start = performance.now();
      const warmUntil = start + config.warmupMs;
      measureFrom = performance.timeOrigin + warmUntil;
      const receiving = consumers.run();
      // With --duration the total is known only when the producers stop.
      const producing = produceLoad(producers, config, {
        topic: ctx.topic,
        counts: splitCount(config.count, config.producers),
        warmUntil,
        stopAt: config.durationMs === undefined ? Infinity : warmUntil + config.durationMs,
        ratePerProducer: config.rate / config.producers,
        stamp: true,
        histogram: undefined,
        meter: { done: 0 },
      }).then(
        (sent) => tally.setTarget(sent),
        (err: unknown) => tally.fail(err),
      );
      try {
        await receiving;
        await producing;
      } finally {
        ctx.progress.stop();
      }
      return runResult(measured, (tally.finishedAt - warmUntil) / 1000, config.messageSize, histogram.summary(), histogram.count);
    }),
  );
}
