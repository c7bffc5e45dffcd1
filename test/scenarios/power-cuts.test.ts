import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHistory, formatCheck } from '../../testing/checker.js';
import { History, type HistoryEvent } from '../../testing/history.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { compileScript } from '../helpers/child-script.js';
import { tempDir } from '../helpers/temp-dir.js';
import { client, missedBy, pollConsumer, producer, pushConsumer, random, readWholeLog, report, SCALE, sleep, untilConsumed, type Worker } from './workload.js';

/**
 * Scenario 2 (issue 7): scenario 1 with simulated power cuts instead of kills. The broker runs
 * test/helpers/power-cut-broker.ts: at each cut its storage drops every byte not yet fsynced
 * (keeping a random torn part of each unsynced tail) and the process dies with SIGKILL.
 * - fsync=always: nothing acknowledged is lost, and both consumer kinds see everything.
 * - fsync=interval: what is lost was acknowledged within the last sync interval before a cut,
 *   and per partition it is a suffix of what was written before that cut, never a hole in the
 *   middle. Consumers are left out of this run: under `interval` a consumer can read (and
 *   commit past) a tail that a power cut then takes back, which docs/operations.md states.
 */
const SEED = Number(process.env['SLUICE_SCENARIO_SEED'] ?? 2);
const RUN_MS = 5_000 * SCALE;
const PARTITIONS = 3;
const INTERVAL_MS = 200;

let script: string;
const dirs: Array<ReturnType<typeof tempDir>> = [];
beforeAll(() => {
  script = compileScript('test/helpers/power-cut-broker.ts');
});
afterAll(() => {
  for (const d of dirs) d.remove();
});

async function run(fsync: 'always' | 'interval', withConsumers: boolean): Promise<{ history: History; cuts: number }> {
  const dir = tempDir('sluice-scenario-power-');
  dirs.push(dir);
  const broker = await BrokerProcess.start({ dataDir: dir.path, script, args: ['--fsync', fsync, '--fsync-interval-ms', String(INTERVAL_MS), '--group-session-timeout-ms', '1000'] });
  const history = new History();
  const c = await client(broker.address);
  try {
    await c.admin().createTopic('t', { partitions: PARTITIONS });
    const producers = [producer(history, c, 'p1', 't'), producer(history, c, 'p2', 't')];
    const consumers: Worker[] = withConsumers
      ? [pollConsumer(history, c, 'poll', 't', 'g'), pushConsumer(history, broker.address, 'push1', 't', 's'), pushConsumer(history, broker.address, 'push2', 't', 's')]
      : [];
    const rand = random(SEED);
    const end = Date.now() + RUN_MS;
    let cuts = 0;
    while (Date.now() < end) {
      await sleep(1_000 + rand() * 2_000);
      await broker.powerCut();
      // Recorded once the process is dead: acks it sent while the signal was on its way came before the cut.
      history.record({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'power-cut' });
      cuts++;
      await broker.restart();
      history.record({ process: 'nemesis', f: 'fault', type: 'ok', fault: 'restart' });
    }
    await Promise.all(producers.map((w) => w.stop()));
    if (withConsumers) {
      await untilConsumed(history, 20_000, (e) => e.f === 'ack');
      await untilConsumed(history, 20_000, (e) => e.f === 'poll' && e.process.startsWith('poll'));
    }
    await Promise.all(consumers.map((w) => w.stop()));
    await readWholeLog(history, c, 't', PARTITIONS);
    return { history, cuts };
  } finally {
    await c.close().catch(() => undefined);
    await broker.stop('SIGKILL').catch(() => undefined);
  }
}

describe(`power cuts every 1-3 s (${RUN_MS / 1000} s, seed ${SEED})`, () => {
  it('fsync=always: nothing acknowledged is lost, nothing duplicated, both consumer kinds see everything', async () => {
    const { history, cuts } = await run('always', true);
    const result = checkHistory(history.events());
    report('power cuts, fsync=always', formatCheck(result), `${cuts} cuts`);
    expect(cuts).toBeGreaterThanOrEqual(2);
    expect(result.stats.sends.acked).toBeGreaterThan(500);
    expect(result.valid, formatCheck(result)).toBe(true);
    expect(missedBy(history, 'poll'), 'poll consumers missed').toEqual([]);
    expect(missedBy(history, 'push'), 'push consumers missed').toEqual([]);
  }, 120_000 * SCALE);

  it('fsync=interval: losses are the unsynced suffix of the last interval before a cut, never a hole', async () => {
    const { history, cuts } = await run('interval', false);
    const events = history.events();
    const result = checkHistory(events);
    report('power cuts, fsync=interval', `${result.lost.length} lost, ${result.inconsistentOffsets.length} offsets reused; ${formatCheck(result).split('\n')[0]}`, `${cuts} cuts`);
    expect(cuts).toBeGreaterThanOrEqual(2);
    // Only losses: the log reader saw nothing unexpected, aborted or out of order.
    const { unexpected, abortedReads, nonMonotonicPolls, skippedOffsets, duplicated } = result;
    expect({ unexpected, abortedReads, nonMonotonicPolls, skippedOffsets, duplicated }).toEqual({ unexpected: [], abortedReads: [], nonMonotonicPolls: [], skippedOffsets: [], duplicated: [] });
    const lost = new Set(result.lost.map((l) => l.value));
    const cutTimes = events.filter((e) => e.f === 'fault' && e.fault === 'power-cut').map((e) => e.time);
    const acks = events.filter((e): e is Extract<HistoryEvent, { f: 'send'; type: 'ok' }> => e.f === 'send' && e.type === 'ok');
    // Slack for the time between the sync timer firing and the next one, and scheduling noise.
    const window = 2 * INTERVAL_MS + 250;
    // The cut is recorded when the process has exited; an ack read just before that can be
    // handled just after, so an ack up to SLACK_MS after a cut still belongs to it.
    const SLACK_MS = 50;
    for (const l of result.lost) {
      const cut = cutTimes.find((t) => t + SLACK_MS >= l.ackedAt);
      expect(cut, `${l.value} acked at ${l.ackedAt} was lost with no cut after it`).toBeDefined();
      expect(cut! - l.ackedAt, `${l.value} was acked ${cut! - l.ackedAt} ms before the cut`).toBeLessThanOrEqual(window);
    }
    // Per partition and cut: the survivors acked before the cut are a prefix by offset, the lost a suffix.
    for (let i = 0; i < cutTimes.length; i++) {
      const from = i === 0 ? 0 : cutTimes[i - 1]! + SLACK_MS;
      const to = cutTimes[i]! + SLACK_MS;
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const epoch = acks.filter((a) => a.partition === partition && a.time >= from && a.time < to).sort((a, b) => a.offset - b.offset);
        const firstLost = epoch.findIndex((a) => lost.has(a.value));
        if (firstLost >= 0) expect(epoch.slice(firstLost).filter((a) => !lost.has(a.value)).map((a) => a.value), `a hole in partition ${partition} before cut ${i}`).toEqual([]);
      }
    }
    expect(result.lost.length, 'a power cut under interval should lose the unsynced tail').toBeGreaterThan(0);
    // A lost value's offset was reused by the next writes: each inconsistent offset involves a lost value.
    for (const o of result.inconsistentOffsets) expect(o.values.some((v) => lost.has(v)), `offset ${o.partition}@${o.offset}`).toBe(true);
  }, 120_000 * SCALE);
});
