import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess } from '../helpers/broker-process.js';
import { jsonLines, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp-dir.js';

let bp: BrokerProcess;
const dir = tempDir();
const cli = (args: string[], stdin?: string): ReturnType<typeof runCli> => runCli(['--broker', bp.address, ...args], stdin);

beforeAll(async () => {
  bp = await BrokerProcess.start({ dataDir: dir.path });
});

afterAll(async () => {
  await bp.stop();
  dir.remove();
});

describe('sluice CLI', () => {
  it('creates, lists, describes and deletes topics', async () => {
    expect(await cli(['topic', 'create', 'cli-t', '--partitions', '3', '--retention-ms', '60000'])).toMatchObject({ code: 0, stdout: 'created topic cli-t with 3 partitions\n' });
    const listed = await cli(['--json', 'topic', 'list']);
    expect(jsonLines(listed.stdout)).toContainEqual({ topic: 'cli-t', partitions: 3 });
    const described = jsonLines((await cli(['--json', 'topic', 'describe', 'cli-t'])).stdout)[0] as { config: { retentionMs: number }; partitions: unknown[] };
    expect(described.config.retentionMs).toBe(60_000);
    expect(described.partitions).toHaveLength(3);
    expect(await cli(['topic', 'delete', 'cli-t'])).toMatchObject({ code: 0, stdout: 'deleted topic cli-t\n' });
    expect(jsonLines((await cli(['--json', 'topic', 'list'])).stdout)).not.toContainEqual({ topic: 'cli-t', partitions: 3 });
  });

  it('produces stdin lines and consumes them back with a group that commits what it printed', async () => {
    await cli(['topic', 'create', 'cli-p', '--partitions', '2']);
    const produced = await cli(['--json', 'produce', 'cli-p', '--key', 'same', '--header', 'src=test'], 'one\ntwo\nthree\n');
    expect(produced.code).toBe(0);
    const acks = jsonLines(produced.stdout) as { partition: number; offset: number }[];
    expect(acks).toHaveLength(3);
    expect(new Set(acks.map((a) => a.partition)).size).toBe(1); // one key, one partition
    expect(acks.map((a) => a.offset).sort()).toEqual([0, 1, 2]);

    const first = await cli(['--json', 'consume', 'cli-p', '--group', 'cg', '--count', '2', '--timeout', '2000']);
    const got = jsonLines(first.stdout) as { value: string; key: string; headers: Record<string, string>; offset: number }[];
    expect(got.map((m) => m.value)).toEqual(['one', 'two']);
    expect(got[0]).toMatchObject({ key: 'same', headers: { src: 'test' }, offset: 0 });
    // The group committed exactly what was printed: the next run starts at the third message.
    const second = await cli(['consume', 'cli-p', '--group', 'cg', '--timeout', '500']);
    expect(second.stdout).toBe('three\n');

    const described = jsonLines((await cli(['--json', 'group', 'describe', 'cg'])).stdout)[0] as { offsets: { committed: number | null; endOffset: number; lag: number }[] };
    expect(described.offsets.reduce((n, o) => n + o.lag, 0)).toBe(0);

    const preview = await cli(['group', 'reset', 'cg', '--topic', 'cli-p', '--to', 'earliest']);
    expect(preview.stdout).toContain('preview only');
    expect((await cli(['consume', 'cli-p', '--group', 'cg', '--timeout', '300'])).stdout).toBe('');
    expect((await cli(['group', 'reset', 'cg', '--topic', 'cli-p', '--to', 'earliest', '--execute'])).code).toBe(0);
    expect((await cli(['consume', 'cli-p', '--group', 'cg', '--timeout', '500'])).stdout).toBe('one\ntwo\nthree\n');
  });

  it('produces a single --value and reads from an explicit offset', async () => {
    await cli(['topic', 'create', 'cli-v']);
    for (const v of ['a', 'b', 'c']) await cli(['produce', 'cli-v', '--value', v]);
    expect((await cli(['consume', 'cli-v', '--from', '1', '--timeout', '300'])).stdout).toBe('b\nc\n');
    expect((await cli(['consume', 'cli-v', '--from', 'latest', '--timeout', '300'])).stdout).toBe('');
  });

  it('fails with a one-line error on stderr and a non-zero exit code', async () => {
    const missing = await cli(['topic', 'describe', 'no-such-topic']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toBe('sluice: TOPIC_NOT_FOUND: topic no-such-topic does not exist\n');
    const bad = await cli(['topic', 'create', 'bad/name']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^sluice: INVALID_TOPIC: .+\n$/);
    const down = await runCli(['--broker', '127.0.0.1:1', 'topic', 'list']);
    expect(down.code).not.toBe(0);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
  });
});
