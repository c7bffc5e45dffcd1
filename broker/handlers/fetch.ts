import type { FetchRequest, FetchResponse, FetchedPartition } from '../../client/protocol/messages/fetch.js';
import type { PartitionLog } from '../log/index.js';
import { waitForAppend } from '../long-poll.js';
import type { ProducerStateTable } from '../txn/producer-state.js';
import { visibleRecords } from '../txn/visibility.js';
import { partitionError } from './errors.js';
import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

const EMPTY = Buffer.alloc(0);
/**
 * Reads one partition makes, at most, to get past batches it may not return (markers, aborted
 * transactions) within one pass; the cursor keeps what they passed, so the next pass goes on.
 */
const MAX_SKIPPING_READS = 16;

/**
 * Fetch is a long poll: read; if the partitions together hold fewer than `minBytes`, park until
 * one of their high watermarks moves, the wait ends, the client goes away or the broker stops,
 * then read again. Data is served as stored: whole batches, never re-encoded.
 *
 * Isolation (broker/txn/visibility.ts): control batches are never returned; read_committed reads
 * below the last stable offset only and leaves out aborted transactions. A marker append moves
 * the high watermark, so it wakes parked fetches too, and the re-read sees the new last stable
 * offset. Each partition keeps a cursor across passes, moved past batches it left out, which
 * the response returns as `nextOffset`.
 */
export function fetchHandlers(s: Services): Pick<HandlerTable, 'Fetch' | 'ListOffsets'> {
  return {
    async Fetch(req, ctx) {
      const deadline = s.now() + req.maxWaitMs;
      const cursors = req.partitions.map((p) => p.offset);
      for (;;) {
        const { response, bytes, watermarks, logs, failed, skipping } = await readOnce(s, req, cursors);
        const remaining = deadline - s.now();
        if (bytes >= req.minBytes || failed || remaining <= 0 || ctx.signal.aborted || s.stopping.aborted) return response;
        // Still moving through left-out batches below the end: read on rather than wait.
        if (skipping) continue;
        await waitForAppend(logs, watermarks, remaining, [ctx.signal, s.stopping]);
      }
    },

    async ListOffsets(req) {
      const committed = req.isolation === 'read_committed';
      const partitions = await Promise.all(
        req.partitions.map(async ({ topic, partition, at }) => {
          try {
            const log = s.topics.partition(topic, partition);
            const end = committed ? stateOf(s, log).lastStableOffset(log.highWatermark) : log.highWatermark;
            let offset: number;
            if (at === 'earliest') offset = log.startOffset;
            else if (at === 'latest') offset = end;
            else offset = Math.min((await log.offsetForTimestamp(at)) ?? end, end);
            return { topic, partition, offset };
          } catch (err) {
            return { topic, partition, offset: -1, error: partitionError(err) };
          }
        }),
      );
      return { partitions };
    },
  };
}

function stateOf(s: Services, log: PartitionLog): ProducerStateTable {
  return s.producerStates.forLog(log).table;
}

interface ReadResult {
  readonly response: FetchResponse;
  readonly bytes: number;
  /** The high watermark of each readable partition when it was read, to detect appends after. */
  readonly watermarks: readonly number[];
  readonly logs: readonly PartitionLog[];
  /** A partition answered with an error: answer now, waiting would not fix it. */
  readonly failed: boolean;
  /** A partition's cursor moved past left-out batches and is not at its end yet. */
  readonly skipping: boolean;
}

/** One pass over the partitions; `cursors[i]` moves past what partition i left out without returning anything. */
async function readOnce(s: Services, req: FetchRequest, cursors: number[]): Promise<ReadResult> {
  const committed = req.isolation === 'read_committed';
  let budget = Math.min(req.maxBytes, s.maxFetchBytes);
  let bytes = 0;
  let failed = false;
  let skipping = false;
  const logs: PartitionLog[] = [];
  const watermarks: number[] = [];
  const partitions: FetchedPartition[] = [];
  // Sequential, so the response-wide budget is shared in request order, like Kafka's.
  for (const [i, { topic, partition, maxBytes }] of req.partitions.entries()) {
    let log: PartitionLog | undefined;
    let lastStableOffset = -1;
    const cursor = cursors[i] as number;
    try {
      log = s.topics.partition(topic, partition);
      const highWatermark = log.highWatermark;
      const table = stateOf(s, log);
      lastStableOffset = table.lastStableOffset(highWatermark);
      logs.push(log);
      watermarks.push(highWatermark);
      // The first data in the response may exceed the budget (one whole batch), so progress is
      // always possible; after that, a spent budget leaves later partitions empty.
      const limit = Math.min(maxBytes ?? req.maxBytes, Math.max(budget, 1));
      const end = committed ? lastStableOffset : highWatermark;
      const read = bytes > 0 && budget <= 0 ? { records: EMPTY, nextOffset: cursor } : await readVisible(log, table, cursor, end, limit, committed);
      // Returned records are the client's to move past; left-out ones are ours to remember.
      if (read.records.length === 0) {
        if (read.nextOffset > cursor && read.nextOffset < end) skipping = true;
        cursors[i] = read.nextOffset;
      }
      bytes += read.records.length;
      budget -= read.records.length;
      partitions.push({ topic, partition, highWatermark, lastStableOffset, logStartOffset: log.startOffset, nextOffset: read.nextOffset, records: read.records });
    } catch (err) {
      failed = true;
      partitions.push({
        topic,
        partition,
        highWatermark: log?.highWatermark ?? -1,
        lastStableOffset,
        logStartOffset: log?.startOffset ?? -1,
        nextOffset: cursor,
        records: EMPTY,
        error: partitionError(err),
      });
    }
  }
  return { response: { partitions }, bytes, watermarks, logs, failed, skipping };
}

/**
 * Whole visible batches from `offset` (below `end`), up to `limit` bytes (at least one batch),
 * reading on past left-out batches a few times; nextOffset is past the last batch examined.
 * Offsets outside [logStartOffset, highWatermark] are OFFSET_OUT_OF_RANGE, whatever the isolation.
 */
async function readVisible(log: PartitionLog, table: ProducerStateTable, offset: number, end: number, limit: number, committed: boolean): Promise<{ records: Buffer; nextOffset: number }> {
  if (offset >= end) {
    // Nothing to read here (at the end, or past the last stable offset), but a position the log
    // does not hold is still an error: the read says which.
    if (offset > log.highWatermark || offset < log.startOffset) await log.read(offset, 1);
    return { records: EMPTY, nextOffset: offset };
  }
  let from = offset;
  for (let reads = 0; reads < MAX_SKIPPING_READS && from < end; reads++) {
    const raw = await log.read(from, limit);
    const read = visibleRecords(raw, from, end, committed ? table.abortedTransactions(from, end) : undefined);
    if (read.records.length > 0 || read.nextOffset <= from) return read;
    from = read.nextOffset;
  }
  return { records: EMPTY, nextOffset: from };
}
