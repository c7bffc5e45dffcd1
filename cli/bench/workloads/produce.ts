import { LatencyHistogram } from '../histogram.js';
import { runResult, type RunResult } from '../report.js';
import type { RunContext } from './context.js';
import { withClients } from './context.js';
import { benchProducers, produceLoad, splitCount } from './producers.js';

/**
 * produce: --producers producers send --count messages (or for --duration) as fast as their
 * window of outstanding sends allows (or at --rate). Throughput: acknowledged messages over the
 * time from the first send to the last acknowledgement. Latency: each message's send() call to
 * its acknowledgement, which under fsync=always means durable on disk.
 */
export async function runProduceWorkload(ctx: RunContext): Promise<RunResult> {
  const { config } = ctx;
  return withClients(ctx.broker, config.producers, 'producer', async (clients) => {
    const producers = benchProducers(clients, config);
    const histogram = new LatencyHistogram();
    const meter = { done: 0 };
    ctx.progress.start(`${ctx.label}produce`, meter, config.count);
    const start = performance.now();
    const sent = await produceLoad(producers, config, {
      topic: ctx.topic,
      counts: splitCount(config.count, config.producers),
      warmUntil: 0,
      stopAt: config.durationMs === undefined ? Infinity : start + config.durationMs,
      ratePerProducer: config.rate / config.producers,
      stamp: false,
      histogram,
      meter,
    });
    const seconds = (performance.now() - start) / 1000;
    ctx.progress.stop();
    return runResult(sent, seconds, config.messageSize, histogram.summary(), histogram.count);
  });
}

/** Fills the topic before a consume run (not timed): --count messages, or for --duration. */
export async function prefill(ctx: RunContext): Promise<number> {
  const { config } = ctx;
  return withClients(ctx.broker, config.producers, 'prefill', async (clients) => {
    const meter = { done: 0 };
    ctx.progress.start(`${ctx.label}pre-fill`, meter, config.count);
    const sent = await produceLoad(benchProducers(clients, config), config, {
      topic: ctx.topic,
      counts: splitCount(config.count, config.producers),
      warmUntil: 0,
      stopAt: config.durationMs === undefined ? Infinity : performance.now() + config.durationMs,
      ratePerProducer: 0,
      stamp: false,
      histogram: undefined,
      meter,
    });
    ctx.progress.stop();
    return sent;
  });
}
