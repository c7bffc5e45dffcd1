import { SluiceError } from '../../client/protocol/errors.js';
import { ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_OVERHEAD, type BatchHeader, checkRecords, verifyBatch } from '../../client/protocol/record-batch.js';
import { partitionError } from './errors.js';
import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

/**
 * Produce: each batch is checked whole (CRC, then every record's framing, so no consumer can be
 * handed a batch it cannot decode), appended, and answered once durable under the fsync mode.
 * Batches are independent: one partition's failure does not fail the others.
 *
 * A batch with a producer id (>= 0) is idempotent: its id and epoch must be current
 * (UNKNOWN_PRODUCER, PRODUCER_FENCED), then the partition's producer state decides: append, or
 * answer a retry with the original offsets and `duplicate: true`, or refuse a gap
 * (OUT_OF_ORDER_SEQUENCE) or an old sequence (DUPLICATE_SEQUENCE). A transactional batch must
 * come from a transactional id's current producer, and its partition joins the open
 * transaction (durably) before it is appended (broker/txn/coordinator.ts, beforeAppend).
 * Everything up to the log's append runs synchronously, batch after batch, so appends are
 * issued in request order, the producer state changes in log order, and no EndTxn can decide
 * between a batch's admission and its append.
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
            const header = checkProducerBatch(batch);
            if (header.producerId >= 0) {
              s.producerIds.validate(header.producerId, header.producerEpoch);
              s.transactions.beforeAppend(header.producerId, header.producerEpoch, (header.attributes & ATTR_TRANSACTIONAL) !== 0, topic, partition);
            }
            const { baseOffset, lastOffset, duplicate } = await s.producerStates.forLog(log).append(batch, header);
            return { topic, partition, baseOffset, lastOffset, ...(duplicate === true ? { duplicate } : {}) };
          } catch (err) {
            return { topic, partition, baseOffset: -1, lastOffset: -1, error: partitionError(err) };
          }
        }),
      );
      return { results };
    },
  };
}

function checkProducerBatch(batch: Buffer): BatchHeader {
  const header = verifyBatch(batch);
  const size = header.batchLength + BATCH_OVERHEAD;
  if (batch.length !== size) {
    throw new SluiceError('INVALID_RECORD', `produce carries one batch per entry; found ${batch.length - size} bytes after it`);
  }
  if ((header.attributes & ATTR_CONTROL) !== 0) {
    throw new SluiceError('INVALID_RECORD', 'control batches (transaction markers) are written by the broker, not produced');
  }
  const { producerId, producerEpoch, baseSequence } = header;
  if (producerId < -1) throw new SluiceError('INVALID_RECORD', `producerId ${producerId}: -1 (none) or a producer id from InitProducer`);
  if ((header.attributes & ATTR_TRANSACTIONAL) !== 0 && producerId < 0) {
    throw new SluiceError('INVALID_RECORD', 'a transactional batch needs the producer id and epoch of InitProducer with a transactionalId');
  }
  if (producerId >= 0 && (producerEpoch < 0 || baseSequence < 0)) {
    throw new SluiceError('INVALID_RECORD', `an idempotent batch needs producerEpoch >= 0 and baseSequence >= 0, got ${producerEpoch} and ${baseSequence}`);
  }
  checkRecords(batch);
  return header;
}
