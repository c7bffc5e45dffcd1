import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Connection } from '../../client/connection.js';
import { PushConsumer } from '../../client/push-consumer.js';
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

interface Printed {
  value: string;
  offset: number;
  partition: number;
  key: string | null;
  headers: Record<string, string>;
}

describe('sluice CLI: push subscriptions', () => {
  it('consume --mode push prints and acks; the subscription remembers what was acked', async () => {
    await cli(['topic', 'create', 'cp', '--partitions', '2']);
    expect((await cli(['produce', 'cp', '--key', 'k', '--header', 'src=cli'], 'one\ntwo\nthree\n')).code).toBe(0);
    const first = await cli(['--json', 'consume', 'cp', '--mode', 'push', '--group', 'cp-sub', '--count', '2', '--timeout', '2000']);
    expect(first.code).toBe(0);
    const got = jsonLines(first.stdout) as Printed[];
    expect(got.map((m) => m.value)).toEqual(['one', 'two']);
    expect(got[0]).toMatchObject({ key: 'k', headers: { src: 'cli' } });
    const second = await cli(['consume', 'cp', '--mode', 'push', '--group', 'cp-sub', '--timeout', '700']);
    expect(second).toMatchObject({ code: 0, stdout: 'three\n' });
    expect((await cli(['consume', 'cp', '--mode', 'push', '--group', 'cp-sub', '--timeout', '500'])).stdout).toBe('');

    const described = jsonLines((await cli(['--json', 'subscription', 'describe', 'cp-sub'])).stdout)[0];
    expect(described).toMatchObject({ subscription: 'cp-sub', topic: 'cp', pending: 0, inFlight: 0, redelivered: 0, deadLettered: 0, oldestPendingAgeMs: null, consumers: [] });
    const human = await cli(['subscription', 'describe', 'cp-sub']);
    expect(human.stdout).toContain('subscription cp-sub  topic cp  consumers 0');
    expect(human.stdout).toContain('pending 0  in flight 0  redelivered 0  dead-lettered 0  oldest pending age -');
    expect(jsonLines((await cli(['--json', 'subscription', 'list'])).stdout)).toContainEqual({ subscription: 'cp-sub', topic: 'cp', consumers: 0 });
    expect((await cli(['subscription', 'list'])).stdout).toContain('cp-sub\tcp\t0 consumers');
  });

  it('--from applies when the subscription is created', async () => {
    await cli(['topic', 'create', 'cf']);
    await cli(['produce', 'cf'], 'a\nb\nc\n');
    expect((await cli(['consume', 'cf', '--mode', 'push', '--group', 'cf-latest', '--from', 'latest', '--timeout', '500'])).stdout).toBe('');
    expect((await cli(['consume', 'cf', '--mode', 'push', '--group', 'cf-offset', '--from', '1', '--timeout', '700'])).stdout).toBe('b\nc\n');
    await cli(['produce', 'cf', '--value', 'd']);
    // Created already: --from no longer matters.
    expect((await cli(['consume', 'cf', '--mode', 'push', '--group', 'cf-latest', '--from', 'earliest', '--timeout', '700'])).stdout).toBe('d\n');
  });

  it('fails with one line on stderr without --group, or for an unknown subscription', async () => {
    const noGroup = await cli(['consume', 'cp', '--mode', 'push']);
    expect(noGroup.code).not.toBe(0);
    expect(noGroup.stderr).toMatch(/^sluice: INVALID_CONFIG: .*--group.*\n$/);
    const unknown = await cli(['subscription', 'describe', 'nope']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/^sluice: SUBSCRIPTION_NOT_FOUND: [^\n]*\n$/);
  });

  it('dlq redrive moves a dead letter back to its topic, where it is delivered again', async () => {
    await cli(['topic', 'create', 'cd']);
    await cli(['produce', 'cd', '--header', 'trace=t1'], 'poison\nfine\n');
    const conn = await Connection.connect({ broker: bp.address, reconnect: false });
    try {
      const c = new PushConsumer(conn, { topic: 'cd', subscription: 'cd-sub', create: { start: 'earliest' } });
      for (let n = 0; n < 2; n++) {
        const m = await c.receive({ timeoutMs: 5_000 });
        if (m?.value === 'poison') await m.reject();
        else await m?.ack();
      }
      await c.close();
      // Another subscription's letter in the same dead-letter topic is not this one's to move.
      const d = new PushConsumer(conn, { topic: 'cd', subscription: 'cd-other', create: { start: 'earliest' } });
      for (let n = 0; n < 2; n++) await (await d.receive({ timeoutMs: 5_000 }))?.reject();
      await d.close();
    } finally {
      await conn.close();
    }
    await new Promise((r) => setTimeout(r, 300)); // dead letters are appended just after the Settle answer
    expect(JSON.parse((await cli(['--json', 'subscription', 'describe', 'cd-sub'])).stdout)).toMatchObject({ deadLettered: 1, pending: 0 });

    const redrive = await cli(['--json', 'dlq', 'redrive', 'cd', '--subscription', 'cd-sub']);
    expect(redrive).toMatchObject({ code: 0, stderr: '' });
    expect(jsonLines(redrive.stdout)).toEqual([{ redriven: 1 }]);
    const again = jsonLines((await cli(['--json', 'consume', 'cd', '--mode', 'push', '--group', 'cd-sub', '--timeout', '700'])).stdout) as Printed[];
    expect(again.map((m) => m.value)).toEqual(['poison']);
    expect(again[0]?.offset).toBe(2); // a new message at the end of the topic
    expect(again[0]?.headers).toEqual({ trace: 't1', 'content-type': 'text/plain; charset=utf-8' });
    // The redrive group committed: nothing more to move.
    expect((await cli(['dlq', 'redrive', 'cd', '--subscription', 'cd-sub'])).stdout).toBe('redrove 0 dead letters of subscription cd-sub to cd\n');
    expect(jsonLines((await cli(['--json', 'dlq', 'redrive', 'cd', '--subscription', 'cd-other', '--dead-letter-topic', 'cd.dlq'])).stdout)).toEqual([{ redriven: 2 }]);
  });
});
