import { afterAll, expect, it } from 'vitest';
import { checkHistory, formatCheck } from '../../testing/checker.js';
import { History } from '../../testing/history.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { tempDir } from '../helpers/temp-dir.js';
import { client, missedBy, pollConsumer, producer, pushConsumer, random, readWholeLog, report, SCALE, sleep, untilConsumed } from './workload.js';

/**
 * Scenario 1 (issue 7): idempotent producers, a group poll consumer and push consumers while
 * the broker (a child process) is SIGKILLed every 1 to 3 s and restarted on the same data dir
 * and port. Under fsync=always: nothing acknowledged is lost, the log holds no value twice, no
 * offset holds two values, polls never go backwards or skip, and every acked message is
 * consumed by both consumer kinds.
 */
const SEED = Number(process.env['SLUICE_SCENARIO_SEED'] ?? 1);
const RUN_MS = 6_000 * SCALE;
const PARTITIONS = 3;

const dir = tempDir('sluice-scenario-kill-');
afterAll(() => dir.remove());

it(`loses nothing and duplicates nothing while the broker is killed every 1-3 s (${RUN_MS / 1000} s, seed ${SEED})`, async () => {
  const broker = await BrokerProcess.start({ dataDir: dir.path, args: ['--group-session-timeout-ms', '1000'] });
  const history = new History();
  const c = await client(broker.address);
  try {
    await c.admin().createTopic('t', { partitions: PARTITIONS });
    const workers = [
      producer(history, c, 'p1', 't'),
      producer(history, c, 'p2', 't'),
      pollConsumer(history, c, 'poll', 't', 'g'),
      pushConsumer(history, broker.address, 'push1', 't', 's'),
      pushConsumer(history, broker.address, 'push2', 't', 's'),
    ];
    const rand = random(SEED);
    const end = Date.now() + RUN_MS;
    let kills = 0;
    while (Date.now() < end) {
      await sleep(1_000 + rand() * 2_000);
      history.record({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'kill' });
      await broker.kill();
      kills++;
      await broker.restart();
      history.record({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'restart' });
    }
    await Promise.all(workers.slice(0, 2).map((w) => w.stop()));
    // Consumers keep going until both kinds have seen every acknowledged message.
    await untilConsumed(history, 20_000, (e) => e.f === 'ack');
    await untilConsumed(history, 20_000, (e) => e.f === 'poll' && e.process.startsWith('poll'));
    await Promise.all(workers.slice(2).map((w) => w.stop()));
    await readWholeLog(history, c, 't', PARTITIONS);

    const result = checkHistory(history.events());
    report('broker kills', formatCheck(result), `${kills} kills`);
    expect(kills).toBeGreaterThanOrEqual(2);
    expect(result.stats.sends.acked).toBeGreaterThan(500);
    expect(result.valid, formatCheck(result)).toBe(true);
    // Both consumer kinds consumed every acknowledged value on their own, not just the log reader.
    expect(missedBy(history, 'poll'), 'poll consumers missed').toEqual([]);
    expect(missedBy(history, 'push'), 'push consumers missed').toEqual([]);
  } finally {
    await c.close().catch(() => undefined);
    await broker.stop('SIGKILL').catch(() => undefined);
  }
}, 120_000 * SCALE);
