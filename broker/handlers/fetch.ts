import type { FetchRequest, FetchResponse, FetchedPartition } from '../../client/protocol/messages/fetch.js';
import type { PartitionLog } from '../log/index.js';
import { partitionError } from './errors.js';
import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';
import { waitForAppend } from '../long-poll.js';

const EMPTY = Buffer.alloc(0);

/**
 * Fetch is a long poll: read; if the partitions together hold fewer than `minBytes`, park until
 * one of their high watermarks moves, the wait ends, the client goes away or the broker stops,
 * then read again. Data is served as stored: whole batches, never re-encoded.
 */
export function fetchHandlers(s: Services): Pick<HandlerTable, 'Fetch' | 'ListOffsets'> {
  return {
    async Fetch(req, ctx) {
      const deadline = s.now() + req.maxWaitMs;
      for (;;) {
        const { response, bytes, watermarks, logs, failed } = await readOnce(s, req);
        const remaining = deadline - s.now();
        if (bytes >= req.minBytes || failed || remaining <= 0 || ctx.signal.aborted || s.stopping.aborted) return response;
        await waitForAppend(logs, watermarks, remaining, [ctx.signal, s.stopping]);
      }
    },

    async ListOffsets(req) {
      const partitions = await Promise.all(
        req.partitions.map(async ({ topic, partition, at }) => {
          try {
            const log = s.topics.partition(topic, partition);
            let offset: number;
            if (at === 'earliest') offset = log.startOffset;
            else if (at === 'latest') offset = log.highWatermark;
            else offset = Math.min((await log.offsetForTimestamp(at)) ?? log.highWatermark, log.highWatermark);
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

interface ReadResult {
  readonly response: FetchResponse;
  readonly bytes: number;
  /** The high watermark of each readable partition when it was read, to detect appends after. */
  readonly watermarks: readonly number[];
  readonly logs: readonly PartitionLog[];
  /** A partition answered with an error: answer now, waiting would not fix it. */
  readonly failed: boolean;
}

async function readOnce(s: Services, req: FetchRequest): Promise<ReadResult> {
  let budget = Math.min(req.maxBytes, s.maxFetchBytes);
  let bytes = 0;
  let failed = false;
  const logs: PartitionLog[] = [];
  const watermarks: number[] = [];
  const partitions: FetchedPartition[] = [];
  // Sequential, so the response-wide budget is shared in request order, like Kafka's.
  for (const { topic, partition, offset, maxBytes } of req.partitions) {
    let log: PartitionLog | undefined;
    try {
      log = s.topics.partition(topic, partition);
      const highWatermark = log.highWatermark;
      logs.push(log);
      watermarks.push(highWatermark);
      // The first data in the response may exceed the budget (one whole batch), so progress is
      // always possible; after that, a spent budget leaves later partitions empty.
      const limit = Math.min(maxBytes ?? req.maxBytes, Math.max(budget, 1));
      const records = bytes > 0 && budget <= 0 ? EMPTY : await log.read(offset, limit);
      bytes += records.length;
      budget -= records.length;
      partitions.push({ topic, partition, highWatermark, logStartOffset: log.startOffset, records });
    } catch (err) {
      failed = true;
      partitions.push({ topic, partition, highWatermark: log?.highWatermark ?? -1, logStartOffset: log?.startOffset ?? -1, records: EMPTY, error: partitionError(err) });
    }
  }
  return { response: { partitions }, bytes, watermarks, logs, failed };
}
