import { LatencyHistogram } from '../histogram.js';
import { runResult, type RunResult } from '../report.js';
import { BenchConsumers } from './consumers.js';
import { withClients, type RunContext } from './context.js';
import { prefill } from './produce.js';
import { Tally } from './tally.js';

/**
 * consume: the topic is filled first (untimed), then --consumers consumers of --consumer kind
 * drain it. Throughput: messages over the time from the start of the drain to the last message
 * received. Latency: per fetch() round trip (poll: the long poll plus decoding its batch) or
 * per ack() round trip (push: the ack to the broker's Settle reply).
 */
export async function runConsumeWorkload(ctx: RunContext): Promise<RunResult> {
  const { config } = ctx;
  const messages = await prefill(ctx);
  return withClients(ctx.broker, config.consumers, 'consumer', async (clients) => {
    const histogram = new LatencyHistogram();
    const tally = new Tally(messages);
    const consumers = new BenchConsumers(clients, config, { topic: ctx.topic, name: ctx.name, tally, onMessage: undefined, histogram });
    // Poll consumers position themselves (and a group settles) before the clock starts; a push
    // subscription starts delivering as it subscribes, so subscribing is part of the drain.
    await consumers.ready({ subscribe: false });
    ctx.progress.start(`${ctx.label}consume`, tally, messages);
    const start = performance.now();
    try {
      await consumers.run();
    } finally {
      ctx.progress.stop();
    }
    return runResult(tally.done, (tally.finishedAt - start) / 1000, config.messageSize, histogram.summary(), histogram.count);
  });
}
