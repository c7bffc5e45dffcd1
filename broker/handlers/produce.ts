import { SluiceError } from '../../client/protocol/errors.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_OVERHEAD, checkRecords, verifyBatch } from '../../client/protocol/record-batch.js';
import { partitionError } from './errors.js';
import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

/**
 * Produce: each batch is checked whole (CRC, then every record's framing, so no consumer can be
 * handed a batch it cannot decode), appended, and answered once durable under the fsync mode.
 * Batches are independent: one partition's failure does not fail the others.
 */
export function produceHandlers(s: Services): Pick<HandlerTable, 'Produce'> {
  return {
    async Produce(req) {
      // Auto-create first, so that every append below is issued synchronously, in request order.
      for (const topic of new Set(req.batches.map((b) => b.topic))) await s.topics.ensure(topic).catch(() => undefined);
      const results = await Promise.all(
        req.batches.map(async ({ topic, partition, batch }) => {
          try {
            const log = s.topics.partition(topic, partition);
            checkProducerBatch(batch);
            const { baseOffset, lastOffset } = await log.append(batch);
            return { topic, partition, baseOffset, lastOffset };
          } catch (err) {
            return { topic, partition, baseOffset: -1, lastOffset: -1, error: partitionError(err) };
          }
        }),
      );
      return { results };
    },
  };
}

function checkProducerBatch(batch: Buffer): void {
  const header = verifyBatch(batch);
  const size = header.batchLength + BATCH_OVERHEAD;
  if (batch.length !== size) {
    throw new SluiceError('INVALID_RECORD', `produce carries one batch per entry; found ${batch.length - size} bytes after it`);
  }
  if ((header.attributes & (ATTR_CONTROL | ATTR_TRANSACTIONAL)) !== 0) {
    throw new SluiceError('INVALID_RECORD', 'control and transactional batches are written by the broker, not produced');
  }
  checkRecords(batch);
}
