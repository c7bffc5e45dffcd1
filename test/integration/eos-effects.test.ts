import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { connect } from '../../client/client.js';
import { compileScript, runScript, type ScriptRun } from '../helpers/child-script.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Exactly-once effects in the application's own database (client/sqlite-effects.ts): a consumer
 * process applies every message to a SQLite ledger through SqliteEffects and is SIGKILLed three
 * times while it runs. Its group commits to the broker lag behind (autoCommitIntervalMs), so
 * each restart is handed messages it had already applied; half the restarts do not even
 * resume from the stored positions. The ledger must end with every message exactly once.
 */
const N = 2_000;
const PARTITIONS = 2;

let dir: ReturnType<typeof tempDir>;
let broker: RunningBroker;
let script: string;

beforeAll(async () => {
  script = compileScript('test/helpers/effects-consumer.ts');
  dir = tempDir('sluice-effects-');
  broker = await startBroker({ port: 0, dataDir: join(dir.path, 'broker'), logger: new MemoryLogger(), groupSessionTimeoutMs: 1_000 });
});

afterAll(async () => {
  await broker?.close();
  dir?.remove();
});

describe('SqliteEffects across kill -9 of the consumer process', () => {
  it('applies each message exactly once, though the broker redelivers what the killed consumer had applied', { timeout: 120_000 }, async () => {
    const client = await connect({ broker: broker.address });
    const runs: ScriptRun[] = [];
    const dbPath = join(dir.path, 'app.db');
    try {
      await client.admin().createTopic('events', { partitions: PARTITIONS });
      const producer = client.producer({ lingerMs: 2 });
      await Promise.all(Array.from({ length: N }, (_, i) => producer.send({ topic: 'events', partition: i % PARTITIONS, value: `e${i}` })));

      const start = (resume: boolean): ScriptRun => {
        const run = runScript(script, {
          SLUICE_BROKER: broker.address,
          FX_TOPIC: 'events',
          FX_GROUP: 'ledger',
          FX_DB: dbPath,
          FX_RESUME: resume ? '1' : '0',
          FX_COMMIT_MS: '300',
          FX_DELAY_MS: '1',
        });
        runs.push(run);
        return run;
      };
      let reader: Database.Database | undefined;
      const applied = (): number => {
        try {
          reader ??= new Database(dbPath, { readonly: true, fileMustExist: true });
          return reader.prepare<[], { n: number }>('SELECT count(*) AS n FROM ledger').get()!.n;
        } catch {
          return 0; // not created yet
        }
      };
      const waitFor = async (count: number, run: ScriptRun): Promise<void> => {
        const deadline = Date.now() + 60_000;
        while (applied() < count) {
          if (run.child.exitCode !== null) throw new Error(`the consumer exited with ${run.child.exitCode}: ${run.stderr}`);
          if (Date.now() > deadline) throw new Error(`only ${applied()} of ${count} applied`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };

      // Kill three times; restarts alternate between resuming from the stored positions and not.
      let run = start(true);
      for (let k = 1; k <= 3; k++) {
        await waitFor(Math.floor((k * N) / 4), run);
        await new Promise((r) => setTimeout(r, Math.random() * 50));
        run.child.kill('SIGKILL');
        await run.exited;
        run = start(k % 2 === 0);
      }
      await waitFor(N, run);
      await new Promise((r) => setTimeout(r, 500)); // nothing more comes
      run.child.kill('SIGKILL');
      await run.exited;

      const rows = reader!.prepare<[], { partition: number; offset: number; value: string }>('SELECT partition, offset, value FROM ledger ORDER BY partition, offset').all();
      reader!.close();
      expect(rows.length).toBe(N);
      const expected = Array.from({ length: N }, (_, i) => ({ partition: i % PARTITIONS, offset: Math.floor(i / PARTITIONS), value: `e${i}` })).sort((a, b) => a.partition - b.partition || a.offset - b.offset);
      expect(rows).toEqual(expected);
      // The broker did hand out messages that had taken effect; SqliteEffects skipped them.
      const skips = runs.reduce((n, r) => n + (r.stdout.match(/^skip /gm)?.length ?? 0), 0);
      expect(skips).toBeGreaterThan(0);
      const positions = new Database(dbPath, { readonly: true });
      const stored = positions.prepare('SELECT partition, next_offset FROM sluice_positions ORDER BY partition').all();
      positions.close();
      expect(stored).toEqual([
        { partition: 0, next_offset: N / 2 },
        { partition: 1, next_offset: N / 2 },
      ]);
    } finally {
      for (const r of runs) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
      await client.close();
    }
  });
});
