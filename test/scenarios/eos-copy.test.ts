import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type SluiceClient } from '../../client/client.js';
import type { PollConsumer } from '../../client/poll-consumer.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { compileScript, runScript, type ScriptRun } from '../helpers/child-script.js';
import { tempDir } from '../helpers/temp-dir.js';
import { SCALE } from './workload.js';

/**
 * Scenario 4 (issue 7), THE exactly-once test (issue 6): a transactional copy of N messages
 * (6,000 x SLUICE_SOAK_SCALE, or exactly SLUICE_EOS_MESSAGES; `npm run soak` copies 120,000) in transactions of 750,
 * with the broker SIGKILLed and restarted three times and the copier process SIGKILLed and
 * restarted three times, alternately, while it runs. It must end with output == input: every
 * message once, none lost, in input order per partition. All along, a read_committed consumer
 * of the output checks that what it sees is always a prefix of the input per partition: it
 * never sees aborted data (a transaction cut short by a kill), nor anything twice.
 */
const N = Number(process.env['SLUICE_EOS_MESSAGES'] ?? 6_000 * SCALE);
const PARTITIONS = 3;
const BATCH = 750;
const KILLS = ['copier', 'broker', 'copier', 'broker', 'copier', 'broker'] as const;

let dir: ReturnType<typeof tempDir>;
let broker: BrokerProcess;
let copierScript: string;

beforeAll(async () => {
  copierScript = compileScript('test/helpers/eos-copier.ts');
  dir = tempDir('sluice-eos-');
  // A copier killed while in its group leaves a member behind; a short session lets the next one take over quickly.
  broker = await BrokerProcess.start({ dataDir: dir.path, args: ['--group-session-timeout-ms', '1000'] });
});

afterAll(async () => {
  await broker?.stop('SIGKILL').catch(() => undefined);
  dir?.remove();
});

/** The expected content of each output partition: the input's, in order. */
function expectedValues(): string[][] {
  const out: string[][] = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 0; i < N; i++) out[i % PARTITIONS]!.push(`m${i}`);
  return out;
}

/**
 * Reads the output read_committed, all along, checking each message against the input: the
 * k-th message of a partition must be the input's k-th. `seen` counts what passed.
 */
class PrefixChecker {
  readonly seen = new Array<number>(PARTITIONS).fill(0);
  violation: string | undefined;
  #done: Promise<void> | undefined;
  readonly #stop = new AbortController();

  constructor(
    readonly consumer: PollConsumer,
    readonly expected: readonly (readonly string[])[],
  ) {}

  get total(): number {
    return this.seen.reduce((a, b) => a + b, 0);
  }

  start(): void {
    this.#done = (async () => {
      while (!this.#stop.signal.aborted) {
        const batch = await this.consumer.fetch({ signal: this.#stop.signal });
        for (const m of batch) {
          const want = this.expected[m.partition]![this.seen[m.partition]!];
          if (m.value !== want) {
            this.violation ??= `out/${m.partition}@${m.offset}: saw ${String(m.value)} where the input has ${String(want)} (after ${this.seen[m.partition]} messages)`;
          } else this.seen[m.partition]!++;
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#done;
  }
}

async function until(what: string, done: () => boolean, timeoutMs: number, failed: () => string | undefined = () => undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    const failure = failed();
    if (failure !== undefined) throw new Error(failure);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('exactly-once copy across kill -9 of the broker and of the copier', () => {
  it(`copies ${N} messages in transactions of ${BATCH}: output == input, and read_committed never sees aborted data`, { timeout: Math.max(120_000, N * 3) }, async () => {
    const setupClient = await connect({ broker: broker.address, reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, connectTimeoutMs: 30_000 });
    let client: SluiceClient | undefined;
    const copiers: ScriptRun[] = [];
    let copier: ScriptRun | undefined;
    let checker: PrefixChecker | undefined;
    try {
      await setupClient.admin().createTopic('in', { partitions: PARTITIONS });
      await setupClient.admin().createTopic('out', { partitions: PARTITIONS });
      const producer = setupClient.producer({ lingerMs: 5 });
      for (let from = 0; from < N; from += 10_000) {
        const sends = [];
        for (let i = from; i < Math.min(N, from + 10_000); i++) sends.push(producer.send({ topic: 'in', partition: i % PARTITIONS, value: `m${i}` }));
        await Promise.all(sends);
      }
      await setupClient.close();

      const expected = expectedValues();
      client = await connect({ broker: broker.address, reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, connectTimeoutMs: 30_000 });
      checker = new PrefixChecker(client.pollConsumer({ topics: ['out'], from: 'earliest', isolation: 'read_committed', maxWaitMs: 200 }), expected);
      await checker.consumer.start();
      checker.start();

      const startCopier = (): ScriptRun => {
        const run = runScript(copierScript, {
          SLUICE_BROKER: broker.address,
          COPY_IN: 'in',
          COPY_OUT: 'out',
          COPY_GROUP: 'copier',
          COPY_TXN_ID: 'copier-1',
          COPY_BATCH: String(BATCH),
          COPY_PAUSE_MS: '60',
        });
        copiers.push(run);
        return run;
      };
      /** A copier that exits on its own (not killed by us) has hit a fatal error. */
      const copierFailure = (): string | undefined => {
        const c = copier;
        if (c === undefined || c.child.exitCode === null) return checker?.violation;
        return `the copier exited with ${c.child.exitCode}: ${c.stderr.slice(-2_000)}`;
      };
      copier = startCopier();

      for (let k = 0; k < KILLS.length; k++) {
        const threshold = Math.floor(((k + 1) * N) / (KILLS.length + 2));
        await until(`${threshold} messages copied`, () => checker!.total >= threshold, 60_000, copierFailure);
        // Inside a transaction: half of its outputs written, none committed.
        const mark = copier.stdout.length;
        await until('a transaction in progress', () => copier!.stdout.indexOf('inside', mark) >= 0, 60_000, copierFailure);
        await new Promise((r) => setTimeout(r, Math.random() * 30));
        if (KILLS[k] === 'copier') {
          copier.child.kill('SIGKILL');
          await copier.exited;
          copier = startCopier();
        } else {
          await broker.kill();
          await broker.restart();
        }
      }

      await until(`all ${N} messages copied`, () => checker!.total >= N, 60_000, copierFailure);
      // Nothing more comes after the last one: no duplicate is waiting behind.
      await new Promise((r) => setTimeout(r, 500));
      copier.child.kill('SIGTERM');
      const exit = await copier.exited;
      expect(exit, copier.stderr).toMatchObject({ code: 0 });
      await checker.stop();

      expect(checker.violation).toBeUndefined();
      expect(checker.seen).toEqual(expected.map((p) => p.length));
      // A fresh read_committed consumer sees exactly the input, partition by partition.
      const verify = client.pollConsumer({ topics: ['out'], from: 'earliest', maxWaitMs: 100 });
      const got: string[][] = Array.from({ length: PARTITIONS }, () => []);
      for (let empty = 0; empty < 3; ) {
        const batch = await verify.fetch();
        if (batch.length === 0) empty++;
        for (const m of batch) got[m.partition]!.push(m.value as string);
      }
      await verify.close();
      expect(got.map((p) => p.length)).toEqual(expected.map((p) => p.length));
      expect(got).toEqual(expected);
      // And the group's committed offsets are the end of the input.
      const offsets = await client.connection.request('FetchOffsets', { groupId: 'copier' });
      expect(offsets.offsets.map((o) => [o.partition, o.offset]).sort((a, b) => a[0]! - b[0]!)).toEqual(expected.map((p, i) => [i, p.length]));
      // The copier kills cut transactions short: their outputs are in the log, aborted, never seen above.
      const all = client.pollConsumer({ topics: ['out'], from: 'earliest', isolation: 'read_uncommitted', maxWaitMs: 100 });
      let written = 0;
      for (let empty = 0; empty < 3; ) {
        const batch = await all.fetch();
        if (batch.length === 0) empty++;
        written += batch.length;
      }
      await all.close();
      expect(written).toBeGreaterThan(N);
    } catch (err) {
      const log = copiers.map((c, i) => `copier ${i}: ${c.stdout.split('\n').filter((l) => !l.startsWith('committed') && l !== '').join(' | ')} ${c.stderr.slice(-1_000)}`).join('\n');
      throw new Error(`${(err as Error).message}\n${log}\nbroker stderr: ${broker.stderr.slice(-2_000)}`, { cause: err });
    } finally {
      await checker?.stop().catch(() => undefined);
      for (const c of copiers) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await client?.close().catch(() => undefined);
      await setupClient.close().catch(() => undefined);
    }
  });
});
