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
 * over the time from the first send to the last receipt (about --rate when the system keeps up).
 */
export async function runE2eWorkload(ctx: RunContext): Promise<RunResult> {
  const { config } = ctx;
  return withClients(ctx.broker, config.consumers, 'consumer', (consumerClients) =>
    withClients(ctx.broker, config.producers, 'producer', async (producerClients) => {
      const histogram = new LatencyHistogram();
      const tally = new Tally(config.count);
      const onMessage = (m: Message, receivedAt: number): void => histogram.recordMs(receivedAt - (m.value as Buffer).readDoubleLE(0));
      const consumers = new BenchConsumers(consumerClients, config, { topic: ctx.topic, name: ctx.name, tally, onMessage, histogram: undefined });
      await consumers.ready({ subscribe: true });
      const producers = benchProducers(producerClients, config);
      ctx.progress.start(`${ctx.label}e2e`, tally, config.count);
      const start = performance.now();
      const receiving = consumers.run();
      // With --duration the total is known only when the producers stop.
      const producing = produceLoad(producers, config, {
        topic: ctx.topic,
        counts: splitCount(config.count, config.producers),
        stopAt: config.durationMs === undefined ? Infinity : start + config.durationMs,
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
      return runResult(tally.done, (tally.finishedAt - start) / 1000, config.messageSize, histogram.summary(), histogram.count);
    }),
  );
}
