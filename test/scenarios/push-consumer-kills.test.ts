import { afterAll, expect, it } from 'vitest';
import { checkHistory, formatCheck } from '../../testing/checker.js';
import { History } from '../../testing/history.js';
import { startTestBroker, type TestBroker } from '../../testing/test-broker.js';
import { client, producer, pushConsumer, random, report, SCALE, sleep, untilConsumed, type PushWorker } from './workload.js';

/**
 * Scenario 3 (issue 7): three push consumers with prefetch 50 share a subscription while one of
 * them, picked at random every 200-600 ms, is killed (its connection dropped with deliveries
 * unsettled) and replaced. Nothing acknowledged by the producer is lost, and redeliveries are
 * bounded by what the killed consumers could hold: prefetch x kills.
 */
const SEED = Number(process.env['SLUICE_SCENARIO_SEED'] ?? 3);
const RUN_MS = 5_000 * SCALE;
const PREFETCH = 50;

let tb: TestBroker | undefined;
afterAll(async () => {
  await tb?.close();
});

it(`push consumers killed at random lose nothing; redeliveries <= prefetch x kills (${RUN_MS / 1000} s, seed ${SEED})`, async () => {
  tb = await startTestBroker({ logLevel: 'silent', defaultPartitions: 3 });
  const history = new History();
  const c = await client(tb.address);
  try {
    await c.admin().createTopic('t', { partitions: 3 });
    const producers = [producer(history, c, 'p1', 't', 8)];
    let generation = 0;
    const start = (): { name: string; worker: PushWorker } => {
      const name = `push-${generation++}`;
      return { name, worker: pushConsumer(history, tb!.address, name, 't', 's', PREFETCH, 20) };
    };
    const consumers = [start(), start(), start()];
    const rand = random(SEED);
    const end = Date.now() + RUN_MS;
    let kills = 0;
    while (Date.now() < end) {
      await sleep(200 + rand() * 400);
      const victim = Math.floor(rand() * consumers.length);
      history.record({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'kill-consumer', detail: consumers[victim]!.name });
      await consumers[victim]!.worker.kill();
      kills++;
      consumers[victim] = start();
    }
    await Promise.all(producers.map((w) => w.stop()));
    await untilConsumed(history, 20_000, (e) => e.f === 'ack');
    await Promise.all(consumers.map((w) => w.worker.stop()));

    const result = checkHistory(history.events());
    report('push consumer kills', formatCheck(result), `${kills} kills, bound ${PREFETCH * kills} redeliveries`);
    expect(kills).toBeGreaterThanOrEqual(5);
    expect(result.stats.sends.acked).toBeGreaterThan(500);
    expect(result.valid, formatCheck(result)).toBe(true);
    // Handlers take 20 ms, so a killed consumer held deliveries: some come again, never more than it could hold.
    expect(result.stats.redeliveries).toBeGreaterThan(0);
    expect(result.stats.redeliveries).toBeLessThanOrEqual(PREFETCH * kills);
  } finally {
    await c.close().catch(() => undefined);
  }
}, 120_000 * SCALE);
