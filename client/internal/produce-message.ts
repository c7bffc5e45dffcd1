import type { ProducerMessage } from '../producer.js';
import { SluiceError } from '../protocol/errors.js';
import { MAX_TOPIC_LENGTH } from '../protocol/messages/common.js';
import { BATCH_HEADER_SIZE } from '../protocol/record-batch.js';
import { CONTENT_TYPE, TEXT, encodeValue } from '../value-codec.js';
import { NO_HEADERS, RECORD_FIXED_OVERHEAD, recordFixedSize, sendClock, type FlatHeaders, type RecordValue } from './accumulator.js';

/** Parts of a message once checked and encoded (prepareMessage fills these, send() reads them at once). */
export interface Prepared {
  topic: string;
  partition: number | undefined;
  key: Buffer | null;
  value: RecordValue;
  headers: FlatHeaders;
  timestamp: number;
  fixed: number;
}

/**
 * Checks a message and encodes its parts into `out`; throws what send() rejects with.
 * `maxBatchBytes` is the producer's current batch limit (a record must fit a batch).
 */
export function prepareMessage(m: ProducerMessage, out: Prepared, maxBatchBytes: number): void {
  if (typeof m !== 'object' || m === null) throw new SluiceError('INVALID_RECORD', 'a message must be an object');
  const { topic, partition, key, headers } = m;
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) {
    throw new SluiceError('INVALID_TOPIC', `topic must be a string of 1 to ${MAX_TOPIC_LENGTH} characters, got ${typeof topic === 'string' ? `${topic.length} characters` : typeof topic}`);
  }
  if (partition !== undefined && (!Number.isInteger(partition) || partition < 0 || partition > 0x7fffffff)) {
    throw new SluiceError('PARTITION_NOT_FOUND', `partition must be a non-negative integer, got ${String(partition)}`, { details: { topic, partition } });
  }
  let keyBytes: Buffer | null;
  if (key === undefined || key === null) keyBytes = null;
  else if (Buffer.isBuffer(key)) keyBytes = key;
  else if (typeof key === 'string') keyBytes = Buffer.from(key, 'utf8');
  else if ((key as unknown) instanceof Uint8Array) keyBytes = Buffer.from(key as Uint8Array);
  else throw new SluiceError('INVALID_RECORD', 'key must be a string, a Buffer or null');
  let timestamp = m.timestamp;
  if (timestamp === undefined) timestamp = sendClock();
  else if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new SluiceError('INVALID_RECORD', `timestamp must be a non-negative integer (ms), got ${String(timestamp)}`);

  let value: RecordValue;
  let contentType: string | undefined;
  const v = m.value;
  if (Buffer.isBuffer(v)) value = v;
  else if (v === null || v === undefined) value = null;
  else if (typeof v === 'string') {
    value = v;
    contentType = TEXT;
  } else {
    try {
      const encoded = encodeValue(v);
      value = encoded.value;
      contentType = encoded.contentType;
    } catch (err) {
      throw new SluiceError('INVALID_RECORD', `value could not be encoded: ${(err as Error).message}`, { cause: err });
    }
  }

  let flat: FlatHeaders = NO_HEADERS;
  if (headers !== undefined) {
    if (typeof headers !== 'object' || headers === null) throw new SluiceError('INVALID_RECORD', 'headers must be an object');
    const keys = Object.keys(headers);
    if (keys.length > 0) {
      const list: (string | Buffer)[] = [];
      for (const k of keys) {
        const hv = headers[k];
        if (typeof hv !== 'string' && !(hv instanceof Uint8Array)) throw new SluiceError('INVALID_RECORD', `header ${JSON.stringify(k)} must be a string or a Buffer`);
        list.push(k, hv); // a plain Uint8Array is written as it is, like a Buffer
      }
      flat = list;
    }
  }
  if (contentType !== undefined && (headers === undefined || !(CONTENT_TYPE in headers))) {
    flat = flat === NO_HEADERS ? [CONTENT_TYPE, contentType] : [...flat, CONTENT_TYPE, contentType];
  }

  const fixed = recordFixedSize(keyBytes, value, flat);
  // An upper bound of the record's size, so a batch never exceeds maxBatchBytes.
  if (fixed + RECORD_FIXED_OVERHEAD + BATCH_HEADER_SIZE > maxBatchBytes) {
    const size = fixed + RECORD_FIXED_OVERHEAD;
    throw new SluiceError('RECORD_TOO_LARGE', `message of about ${size} bytes does not fit a batch of maxBatchBytes ${maxBatchBytes}`, { details: { size } });
  }
  out.topic = topic;
  out.partition = partition;
  out.key = keyBytes;
  out.value = value;
  out.headers = flat;
  out.timestamp = timestamp;
  out.fixed = fixed;
}
