/** The human-readable side of checker.ts: a short report of a CheckResult. */
import type { BadRead, CheckResult } from './checker.js';
import type { PartitionOffset } from './history.js';

/** How many examples of each anomaly `formatCheck` prints. */
const EXAMPLES = 5;

const where = (p: PartitionOffset): string => `${p.topic}/${p.partition}@${p.offset}`;
const readBy = (r: BadRead): string => `${where(r)} ${JSON.stringify(r.value)} by ${r.process} (${r.via}, event ${r.index})`;

/** A short report for a test failure message or a log: the counts, then a few examples each. */
export function formatCheck(result: CheckResult): string {
  const { sends, reads } = result.stats;
  const lines = [
    `${result.valid ? 'VALID' : 'INVALID'}: ${sends.invoked} sent (${sends.acked} acked, ${sends.failed} failed, ` +
      `${sends.unknown} unknown); read ${reads.polled} polled, ${reads.delivered} delivered, ${reads.acked} acked; ` +
      `${result.stats.consumed} consumed, ${result.stats.redeliveries} redelivered`,
  ];
  const section = <T>(title: string, items: readonly T[], describe: (item: T) => string, extra = ''): void => {
    if (items.length === 0) return;
    lines.push(`${title}: ${items.length}${extra}`);
    for (const item of items.slice(0, EXAMPLES)) lines.push(`  ${describe(item)}`);
    if (items.length > EXAMPLES) lines.push(`  ... and ${items.length - EXAMPLES} more`);
  };
  const regions = (['prefix', 'middle', 'postfix'] as const).map(
    (region) => `${region} ${result.lost.filter((item) => item.region === region).length}`,
  );
  section('lost', result.lost, (l) => `${where(l)} ${JSON.stringify(l.value)} ${l.region}, acked at ${l.ackedAt}`, ` (${regions.join(', ')})`);
  if (result.unreadPartitions.length > 0) {
    lines.push(`unread partitions: ${result.unreadPartitions.map((p) => `${p.topic}/${p.partition}`).join(', ')}`);
  }
  section('unexpected', result.unexpected, readBy);
  section('aborted reads', result.abortedReads, (r) => `${readBy(r)}: ${r.reason}`);
  section('duplicated', result.duplicated, (d) => `${JSON.stringify(d.value)} at ${d.positions.map(where).join(', ')}`);
  section('inconsistent offsets', result.inconsistentOffsets, (i) => `${where(i)} holds ${i.values.map((v) => JSON.stringify(v)).join(', ')}`);
  section('non-monotonic polls', result.nonMonotonicPolls, (n) => `${n.process} ${n.topic}/${n.partition}: ${n.offset} after ${n.previous} (event ${n.index})`);
  section('skipped offsets', result.skippedOffsets, (s) => {
    const listed = s.skipped.join(', ') + (s.count > s.skipped.length ? ', ...' : '');
    return `${s.process} ${s.topic}/${s.partition}: ${s.from} -> ${s.to} skipped ${s.count} [${listed}]`;
  });
  return lines.join('\n');
}
