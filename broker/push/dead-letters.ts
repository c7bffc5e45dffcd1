import { decodeRecords, encodeRecordBatch, type LogRecord, type RecordHeader } from '../../client/protocol/record-batch.js';
import type { PartitionLog } from '../log/index.js';

/** Headers a dead letter carries, saying where it came from and why (docs/semantics.md). */
export const DLQ_HEADERS = {
  subscription: 'sluice-dlq-subscription',
  topic: 'sluice-dlq-topic',
  partition: 'sluice-dlq-partition',
  offset: 'sluice-dlq-offset',
  attempts: 'sluice-dlq-attempts',
  reason: 'sluice-dlq-reason',
} as const;

export type DeadLetterReason = 'max-deliveries' | 'rejected';

export interface DeadLetterOrigin {
  readonly subscription: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly attempts: number;
  readonly reason: DeadLetterReason;
}

/** The dead letter for `record`: the same key, value, headers and timestamp, plus the origin headers. */
export function deadLetterBatch(record: LogRecord, origin: DeadLetterOrigin): Buffer {
  const text = (s: string | number): Buffer => Buffer.from(String(s), 'utf8');
  const headers: RecordHeader[] = [
    ...record.headers,
    { key: DLQ_HEADERS.subscription, value: text(origin.subscription) },
    { key: DLQ_HEADERS.topic, value: text(origin.topic) },
    { key: DLQ_HEADERS.partition, value: text(origin.partition) },
    { key: DLQ_HEADERS.offset, value: text(origin.offset) },
    { key: DLQ_HEADERS.attempts, value: text(origin.attempts) },
    { key: DLQ_HEADERS.reason, value: text(origin.reason) },
  ];
  return encodeRecordBatch([{ key: record.key, value: record.value, headers, timestamp: record.timestamp }]);
}

/** Finds the record at `offset` in whole batches that hold it. */
export function recordAt(batches: Buffer, offset: number): LogRecord | undefined {
  return decodeRecordsFrom(batches).find((r) => r.offset === offset);
}

function decodeRecordsFrom(batches: Buffer): LogRecord[] {
  const out: LogRecord[] = [];
  for (let pos = 0; pos < batches.length; ) {
    const size = batches.readInt32BE(pos + 8) + 12;
    out.push(...decodeRecords(batches.subarray(pos, pos + size)));
    pos += size;
  }
  return out;
}

/**
 * Dead letters this subscription wrote at or after `from` in the dead-letter log, as
 * partition -> offsets. A crash between writing a letter and saving the settled state would
 * otherwise dead-letter the message a second time; recovery settles these instead.
 */
export async function writtenSince(dlq: PartitionLog, from: number, subscription: string): Promise<Map<number, number[]>> {
  const found = new Map<number, number[]>();
  let position = Math.max(from, dlq.startOffset);
  while (position < dlq.highWatermark) {
    const bytes = await dlq.read(position, 1 << 20);
    if (bytes.length === 0) break;
    for (const r of decodeRecordsFrom(bytes)) {
      if (r.offset < position) continue;
      position = r.offset + 1;
      const h = new Map(r.headers.map((x) => [x.key, x.value.toString('utf8')]));
      if (h.get(DLQ_HEADERS.subscription) !== subscription) continue;
      const partition = Number(h.get(DLQ_HEADERS.partition));
      const offset = Number(h.get(DLQ_HEADERS.offset));
      if (!Number.isInteger(partition) || !Number.isInteger(offset)) continue;
      const list = found.get(partition) ?? [];
      list.push(offset);
      found.set(partition, list);
    }
  }
  return found;
}
