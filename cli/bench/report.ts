import { configJson, type BenchConfig } from './config.js';
import type { LatencySummary } from './histogram.js';

/** What one run measured. */
export interface RunResult {
  readonly messages: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly mbPerSec: number;
  readonly latencyUs: LatencySummary;
  /** How many latencies the percentiles are drawn from (messages, or fetches for consume --consumer poll). */
  readonly latencySamples: number;
}

export interface BenchReport {
  readonly workload: string;
  readonly messages: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly mbPerSec: number;
  readonly latencyUs: LatencySummary;
  readonly config: Record<string, unknown>;
  readonly runs: readonly RunResult[];
}

/** MB as Kafka's perf tools count it: 2^20 bytes of message values. */
const MB = 1024 * 1024;

export function runResult(messages: number, seconds: number, messageSize: number, latencyUs: LatencySummary, latencySamples: number): RunResult {
  const rate = seconds > 0 ? messages / seconds : 0;
  return {
    messages,
    seconds: round(seconds, 4),
    msgsPerSec: Math.round(rate),
    mbPerSec: round((rate * messageSize) / MB, 2),
    latencyUs,
    latencySamples,
  };
}

/** The report: with several runs, each top-level figure is the median of that figure over the runs. */
export function benchReport(config: BenchConfig, runs: readonly RunResult[]): BenchReport {
  const med = (pick: (r: RunResult) => number): number => median(runs.map(pick));
  return {
    workload: config.workload,
    messages: Math.round(med((r) => r.messages)),
    seconds: round(med((r) => r.seconds), 4),
    msgsPerSec: Math.round(med((r) => r.msgsPerSec)),
    mbPerSec: round(med((r) => r.mbPerSec), 2),
    latencyUs: {
      p50: Math.round(med((r) => r.latencyUs.p50)),
      p90: Math.round(med((r) => r.latencyUs.p90)),
      p99: Math.round(med((r) => r.latencyUs.p99)),
      p999: Math.round(med((r) => r.latencyUs.p999)),
      max: Math.round(med((r) => r.latencyUs.max)),
    },
    config: configJson(config),
    runs,
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** What each workload's latency columns mean, for the table's footer. */
const LATENCY_MEANS: Record<string, string> = {
  produce: 'latency: send() to acknowledgement, per message',
  'consume-poll': 'latency: one fetch() round trip (long poll + decode), per non-empty fetch',
  'consume-push': 'latency: ack() to the broker\'s Settle reply, per message',
  e2e: 'latency: send() to receipt by a consumer, per message',
};

/** The human-readable result: a header line, one row per run, the median row, what latency means. */
export function formatTable(config: BenchConfig, report: BenchReport): string {
  const c = config;
  const size = c.count === undefined ? `${c.durationMs} ms` : `${fmt(c.count)} msgs`;
  const parts = [
    `sluice bench ${c.workload}`,
    `${c.messageSize} B x ${size}`,
    plural(c.producers, 'producer'),
    ...(c.workload === 'produce' ? [] : [`${plural(c.consumers, `${c.consumer} consumer`)}${c.consumer === 'push' ? ` (prefetch ${c.prefetch})` : ''}`]),
    plural(c.partitions, 'partition'),
    `batch ${fmtBytes(c.batchSize)}, linger ${c.lingerMs} ms, window ${fmt(c.window)}`,
    ...(c.workload === 'e2e' ? [c.rate > 0 ? `target ${fmt(c.rate)} msgs/s` : 'unpaced'] : []),
    ...(c.warmupMs > 0 ? [`after ${c.warmupMs} ms warm-up`] : []),
    c.broker === undefined ? `own broker, fsync ${c.fsync}` : `broker ${c.broker}`,
  ];
  const head = ['', 'msgs/s', 'MB/s', 'p50 us', 'p90 us', 'p99 us', 'p99.9 us', 'max us', 'seconds'];
  const row = (label: string, r: { msgsPerSec: number; mbPerSec: number; latencyUs: LatencySummary; seconds: number }): string[] => [
    label,
    fmt(r.msgsPerSec),
    r.mbPerSec.toFixed(2),
    fmt(r.latencyUs.p50),
    fmt(r.latencyUs.p90),
    fmt(r.latencyUs.p99),
    fmt(r.latencyUs.p999),
    fmt(r.latencyUs.max),
    r.seconds.toFixed(3),
  ];
  const rows = [head, ...report.runs.map((r, i) => row(report.runs.length === 1 ? 'result' : `run ${i + 1}`, r))];
  if (report.runs.length > 1) rows.push(row('median', report));
  const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  const kind = c.workload === 'consume' ? `consume-${c.consumer}` : c.workload;
  return [parts.join(' | '), '', ...lines, '', LATENCY_MEANS[kind] ?? ''].join('\n');
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function fmtBytes(n: number): string {
  return n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
