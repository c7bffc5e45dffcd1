/**
 * Recovery benchmark: how long a partition of SIZE_GIB (default 1) takes to open after an
 * unclean stop (no clean-shutdown marker, so the tail is rescanned). A benchmark, not a test.
 *
 *   npm run bench:recovery            # 1 GiB
 *   SIZE_GIB=4 npm run bench:recovery
 *
 * The log is written with fsync=never and reopened from the same process without close(), as a
 * restart after kill -9 finds it. The page cache is warm, so this measures the engine's work
 * (which segments it rescans), not the disk's read speed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeRecordBatch } from '../client/protocol/record-batch.js';
import { PartitionLog } from '../broker/log/index.js';

const silent = { info(): void {}, warn(): void {} };
const target = Number(process.env['SIZE_GIB'] ?? '1') * 1024 ** 3;
const dir = mkdtempSync(join(tmpdir(), 'sluice-recovery-'));
try {
  const template = encodeRecordBatch(Array.from({ length: 640 }, () => ({ value: Buffer.alloc(100, 7) })));
  const log = await PartitionLog.open({ dir, fsync: 'never', logger: silent });
  let bytes = 0;
  while (bytes < target) {
    // Eight appenders' worth per commit; each append gets its own copy (append rewrites the header).
    await Promise.all(Array.from({ length: 8 }, () => log.append(Buffer.from(template))));
    bytes += template.length * 8;
  }
  const end = log.endOffset;
  const t0 = performance.now();
  const reopened = await PartitionLog.open({ dir, fsync: 'never', logger: silent });
  const ms = performance.now() - t0;
  const result = { gib: Number((bytes / 1024 ** 3).toFixed(2)), segments: reopened.segmentCount, recovered: reopened.endOffset === end, recoverMs: Math.round(ms) };
  process.stdout.write(process.argv.includes('--json') ? `${JSON.stringify(result)}\n` : `reopened ${result.gib} GiB (${result.segments} segments) after an unclean stop in ${result.recoverMs} ms; every offset recovered: ${result.recovered}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
