import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/**
 * `sluice bench` end to end: each case starts its own child broker, runs a tiny workload and
 * checks the shape of the JSON result. Speed is measured by the benchmark, never asserted here.
 */
interface BenchJson {
  workload: string;
  messages: number;
  seconds: number;
  msgsPerSec: number;
  mbPerSec: number;
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number };
  config: Record<string, unknown>;
  runs: { messages: number; msgsPerSec: number; latencyUs: BenchJson['latencyUs']; latencySamples: number }[];
}

beforeAll(() => {
  // The bench must start its own broker: a SLUICE_BROKER from the environment would redirect it.
  delete process.env['SLUICE_BROKER'];
});

async function bench(args: string[]): Promise<BenchJson> {
  const res = await runCli(['--json', 'bench', ...args], '', 30_000);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  const lines = res.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as BenchJson;
}

function expectSane(result: BenchJson, workload: string, count: number): void {
  expect(result.workload).toBe(workload);
  expect(result.messages).toBe(count);
  expect(result.seconds).toBeGreaterThan(0);
  expect(result.msgsPerSec).toBeGreaterThan(0);
  expect(result.mbPerSec).toBeGreaterThan(0);
  const { p50, p90, p99, p999, max } = result.latencyUs;
  expect(p50).toBeGreaterThan(0);
  expect(p50).toBeLessThanOrEqual(p90);
  expect(p90).toBeLessThanOrEqual(p99);
  expect(p99).toBeLessThanOrEqual(p999);
  expect(p999).toBeLessThanOrEqual(max);
  expect(result.config).toMatchObject({ broker: 'child', fsync: 'always', messageSize: 100 });
  for (const run of result.runs) expect(run.messages).toBe(count);
}

describe('sluice bench', () => {
  it('produce: send -> ack throughput and latency against its own broker', async () => {
    const result = await bench(['produce', '--count', '2000']);
    expectSane(result, 'produce', 2000);
    expect(result.runs).toHaveLength(1);
  });

  it('consume: pre-fills the topic, then drains it with a poll consumer', async () => {
    const result = await bench(['consume', '--count', '2000']);
    expectSane(result, 'consume', 2000);
    expect(result.config).toMatchObject({ consumer: 'poll', consumers: 1 });
  });

  it('e2e: paced producers, consumers measure send -> receive', async () => {
    const result = await bench(['e2e', '--count', '500', '--rate', '2000']);
    expectSane(result, 'e2e', 500);
    expect(result.config).toMatchObject({ rate: 2000, lingerMs: 0 });
  });

  it('e2e with --warmup: the warm-up is sent and received, then exactly --count messages are measured', async () => {
    // 2000 msgs/s for 300 ms: about 600 warm-up messages go through first, none of them recorded.
    const result = await bench(['e2e', '--count', '500', '--rate', '2000', '--warmup', '300']);
    expectSane(result, 'e2e', 500);
    expect(result.config).toMatchObject({ rate: 2000, warmupMs: 300 });
    expect(result.runs[0]).toMatchObject({ latencySamples: 500 });
  });

  it('e2e with --warmup and --duration: push consumers, two producers, every measured message counted once', async () => {
    const result = await bench(['e2e', '--duration', '300', '--rate', '2000', '--warmup', '200', '--producers', '2', '--consumers', '2', '--partitions', '2', '--consumer', 'push']);
    expect(result.workload).toBe('e2e');
    expect(result.config).toMatchObject({ durationMs: 300, warmupMs: 200, consumer: 'push', producers: 2 });
    // About 600 messages are sent in the measured 300 ms (plus about 400 before, not counted).
    expect(result.messages).toBeGreaterThan(300);
    expect(result.messages).toBeLessThan(900);
    expect(result.runs[0]!.latencySamples).toBe(result.messages);
  });

  it('consume with push consumers, repeated: medians on top, every run listed', async () => {
    const result = await bench(['consume', '--count', '1000', '--consumer', 'push', '--partitions', '2', '--runs', '2']);
    expectSane(result, 'consume', 1000);
    expect(result.runs).toHaveLength(2);
    const rates = result.runs.map((r) => r.msgsPerSec).sort((a, b) => a - b);
    expect(result.msgsPerSec).toBe(Math.round((rates[0]! + rates[1]!) / 2));
  });

  it('refuses --warmup outside e2e', async () => {
    const res = await runCli(['bench', 'produce', '--count', '10', '--warmup', '100']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/--warmup applies to e2e only/);
  });

  it('refuses --count with --duration with a one-line error', async () => {
    const res = await runCli(['bench', 'produce', '--count', '10', '--duration', '10']);
    expect(res.code).not.toBe(0);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toMatch(/--count or --duration/);
  });
});
