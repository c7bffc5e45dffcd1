import type { Connection } from '../connection.js';
import { hasCode, isSluiceError } from '../protocol/errors.js';
import type { ResponseOf } from '../protocol/messages/index.js';
import { fromErrorBody } from '../protocol/messages/error.js';
import { decodeBatches } from '../protocol/record-batch.js';
import { toMessage, type Message } from '../value-codec.js';
import { keyOf } from './group-membership.js';
import type { PollConsumerConfig } from './poll-options.js';
import type { PartitionState } from './poll-partitions.js';

/**
 * One Fetch request for `fetchable` at their positions. Undefined when there is nothing to
 * take from it: closed, aborted, or a retriable failure (after a short pause).
 */
export async function requestFetch(
  conn: Connection,
  config: PollConsumerConfig,
  fetchable: readonly PartitionState[],
  signal: AbortSignal,
  closed: () => boolean,
): Promise<ResponseOf<'Fetch'> | undefined> {
  const { maxWaitMs, maxBytes, maxPartitionBytes, isolation } = config;
  try {
    return await conn.request(
      'Fetch',
      {
        maxWaitMs,
        minBytes: 1,
        maxBytes,
        ...(isolation === 'read_committed' ? { isolation } : {}),
        partitions: fetchable.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.position, maxBytes: maxPartitionBytes })),
      },
      { timeoutMs: maxWaitMs + 30_000, signal },
    );
  } catch (err) {
    if (closed() || hasCode(err, 'ABORTED')) return undefined;
    // A connection that will not come back (closed, or reconnect off) ends the iteration.
    if (isSluiceError(err) && err.retriable && conn.state !== 'closed') {
      await new Promise((r) => setTimeout(r, 100));
      return undefined;
    }
    throw err;
  }
}

/**
 * Decodes a Fetch response into `buffer` and advances the positions. `asked` is the position
 * each partition was asked from. Returns the partitions whose position fell out of the log.
 */
export function takeFetched(
  res: ResponseOf<'Fetch'>,
  partitions: ReadonlyMap<string, PartitionState>,
  asked: ReadonlyMap<PartitionState, number>,
  buffer: Message[],
): PartitionState[] {
  const reset: PartitionState[] = [];
  for (const fetched of res.partitions) {
    const state = partitions.get(keyOf(fetched.topic, fetched.partition));
    // Revoked, moved or paused while the poll was out: what it returned is not ours to yield.
    if (state === undefined || state.paused || asked.get(state) !== state.position) continue;
    if (fetched.error !== undefined) {
      if (fetched.error.name === 'OFFSET_OUT_OF_RANGE') reset.push(state);
      else throw fromErrorBody(fetched.error);
      continue;
    }
    for (const record of decodeBatches(fetched.records)) {
      if (record.offset < state.position) continue; // a batch may start before the position
      buffer.push(toMessage(fetched.topic, fetched.partition, record));
      state.position = record.offset + 1;
    }
    // Past what the broker examined and left out (transaction markers, aborted transactions
    // under read_committed), so that a partition of left-out batches does not stall.
    if (fetched.nextOffset > state.position) state.position = fetched.nextOffset;
  }
  return reset;
}
