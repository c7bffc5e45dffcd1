import type { Connection } from '../../client/connection.js';
import { fromErrorBody } from '../../client/protocol/messages/error.js';
import { encodeRecordBatch } from '../../client/protocol/record-batch.js';
import { toRecordInput, type MessageHeaders } from '../../client/value-codec.js';

export interface TestMessage {
  readonly key?: string;
  readonly value: unknown;
  readonly headers?: MessageHeaders;
}

/** Appends messages to one partition in one batch with a raw Produce request; returns the base offset. */
export async function produceRaw(conn: Connection, topic: string, partition: number, messages: readonly TestMessage[]): Promise<number> {
  const batch = encodeRecordBatch(messages.map((m) => toRecordInput(m.key, m.value, m.headers, undefined)));
  const res = await conn.request('Produce', { batches: [{ topic, partition, batch }] });
  const result = res.results[0];
  if (result === undefined) throw new Error('no produce result');
  if (result.error !== undefined) throw fromErrorBody(result.error);
  return result.baseOffset;
}
