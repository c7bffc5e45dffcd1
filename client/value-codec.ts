import { Packr, Unpackr } from 'msgpackr';
import type { LogRecord, RecordHeader, RecordInput } from './protocol/record-batch.js';

/**
 * How message values become bytes, and back. Values describe themselves with a `content-type`
 * header, so any consumer (or the CLI) can decode what any producer sent:
 *
 *   Buffer / Uint8Array  raw bytes, no header
 *   string               UTF-8, content-type text/plain; charset=utf-8
 *   anything else        msgpack, content-type application/msgpack
 *
 * Raw bytes carry no header, so the hot path (benchmarks, pass-through) pays nothing for it.
 */
export const CONTENT_TYPE = 'content-type';
export const TEXT = 'text/plain; charset=utf-8';
export const MSGPACK = 'application/msgpack';

const packr = new Packr({ useRecords: false, moreTypes: false });
// Values come from other producers, not from the broker's hostile-input boundary, but they are
// still data: no structured-clone records, and maps decode to plain objects.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** Headers as producers give them: one value per key. */
export type MessageHeaders = Readonly<Record<string, string | Buffer>>;

export interface EncodedValue {
  readonly value: Buffer | null;
  readonly contentType: string | undefined;
}

export function encodeValue(value: unknown): EncodedValue {
  if (value === null || value === undefined) return { value: null, contentType: undefined };
  if (Buffer.isBuffer(value)) return { value, contentType: undefined };
  if (value instanceof Uint8Array) return { value: Buffer.from(value.buffer, value.byteOffset, value.byteLength), contentType: undefined };
  if (typeof value === 'string') return { value: Buffer.from(value, 'utf8'), contentType: TEXT };
  return { value: packr.pack(value), contentType: MSGPACK };
}

export function decodeValue(bytes: Buffer | null, contentType: string | undefined): unknown {
  if (bytes === null) return null;
  if (contentType === MSGPACK) return unpackr.unpack(bytes);
  if (contentType === TEXT) return bytes.toString('utf8');
  return bytes;
}

export function encodeKey(key: Buffer | string | null | undefined): Buffer | null {
  if (key === null || key === undefined) return null;
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

const NO_RECORD_HEADERS: readonly RecordHeader[] = Object.freeze([]) as readonly RecordHeader[];

/**
 * Builds the record the batch encoder takes from a user's message. Raw values without headers
 * share one frozen empty header list. (The producer writes records itself, see
 * internal/accumulator.ts; this is for code that builds batches with encodeRecordBatch.)
 */
export function toRecordInput(key: Buffer | string | null | undefined, value: unknown, headers: MessageHeaders | undefined, timestamp: number | undefined): RecordInput {
  let bytes: Buffer | null;
  let contentType: string | undefined;
  if (Buffer.isBuffer(value)) bytes = value;
  else {
    const encoded = encodeValue(value);
    bytes = encoded.value;
    contentType = encoded.contentType;
  }
  let list: readonly RecordHeader[] = NO_RECORD_HEADERS;
  if (headers !== undefined) {
    const keys = Object.keys(headers);
    if (keys.length > 0) {
      const own: RecordHeader[] = [];
      for (const k of keys) {
        const v = headers[k]!;
        own.push({ key: k, value: typeof v === 'string' ? Buffer.from(v, 'utf8') : v });
      }
      list = own;
    }
  }
  if (contentType !== undefined && (headers === undefined || !(CONTENT_TYPE in headers))) {
    const header = { key: CONTENT_TYPE, value: Buffer.from(contentType, 'utf8') };
    list = list === NO_RECORD_HEADERS ? [header] : [...list, header];
  }
  const k = encodeKey(key);
  return timestamp === undefined ? { key: k, value: bytes, headers: list } : { key: k, value: bytes, headers: list, timestamp };
}

/** A consumed message, decoded. `value` follows the content-type header (see above). */
export interface Message<V = unknown> {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly key: Buffer | null;
  readonly value: V;
  /** Header values as bytes; a key repeated in the record keeps its last value. */
  readonly headers: Readonly<Record<string, Buffer>>;
}

export function toMessage(topic: string, partition: number, record: LogRecord): Message {
  // No prototype: a header named __proto__ is just a header.
  const headers = Object.create(null) as Record<string, Buffer>;
  for (const h of record.headers) headers[h.key] = h.value;
  const contentType = headers[CONTENT_TYPE]?.toString('utf8');
  return { topic, partition, offset: record.offset, timestamp: record.timestamp, key: record.key, value: decodeValue(record.value, contentType), headers };
}
