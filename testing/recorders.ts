/**
 * Small wrappers that record what a producer or consumer of the SDK did into a History, so a
 * test does not hand-write events. Each records the invoke before the call and its outcome
 * after; an error is a definite `fail` only when it proves the request had no effect (it was
 * refused before anything was written), otherwise the outcome is `unknown`: a timeout or a cut
 * connection may hide a write that happened.
 */
import type { Message } from '../client/value-codec.js';
import type { PositionChange } from '../client/poll-consumer.js';
import type { Producer, ProducerMessage, RecordMetadata } from '../client/producer.js';
import type { PushMessage } from '../client/push-consumer.js';
import { isSluiceError, type ErrorName } from '../client/protocol/errors.js';
import type { History, RecordRef } from './history.js';

/** Errors that prove a produce was refused before anything was written. */
const REFUSED: ReadonlySet<ErrorName> = new Set<ErrorName>([
  'TOPIC_NOT_FOUND',
  'INVALID_TOPIC',
  'PARTITION_NOT_FOUND',
  'RECORD_TOO_LARGE',
  'INVALID_RECORD',
  'INVALID_REQUEST',
  'INVALID_CONFIG',
]);

function errorName(err: unknown): string {
  return isSluiceError(err) ? err.code : err instanceof Error ? err.name : 'Error';
}

/** The message's value as the string the history follows it by (UTF-8 for bytes). */
export function valueText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  return JSON.stringify(value) ?? String(value);
}

/** A consumed message as the history records it. */
export function recordRef(m: Message): RecordRef {
  return { topic: m.topic, partition: m.partition, offset: m.offset, value: valueText(m.value) };
}

/**
 * Sends one message (its value a string unique to this send) and records the outcome. Resolves
 * to the metadata, or undefined when the send failed (the failure is in the history).
 */
export async function recordSend(history: History, process: string, producer: Producer, message: ProducerMessage & { value: string }, txn?: string): Promise<RecordMetadata | undefined> {
  const base = { process, f: 'send' as const, topic: message.topic, value: message.value, ...(txn === undefined ? {} : { txn }) };
  history.record({ ...base, type: 'invoke' });
  try {
    const meta = await producer.send(message);
    history.record({ ...base, type: 'ok', partition: meta.partition, offset: meta.offset });
    return meta;
  } catch (err) {
    const refused = isSluiceError(err) && REFUSED.has(err.code);
    history.record({ ...base, type: refused ? 'fail' : 'unknown', error: errorName(err) });
    return undefined;
  }
}

/** Records the messages one long poll returned (a poll consumer's `fetch()`, or one message of its iterator). */
export function recordPoll(history: History, process: string, messages: readonly Message[]): void {
  history.record({ process, f: 'poll', type: 'ok', records: messages.map(recordRef) });
}

/** A PollConsumer `onPosition` callback that records each (re)positioning as an `assign`. */
export function positionRecorder(history: History, process: string): (changes: readonly PositionChange[]) => void {
  return (changes) => history.record({ process, f: 'assign', type: 'ok', partitions: changes.map(({ topic, partition, offset }) => ({ topic, partition, offset })) });
}

/** Records a push delivery as the consumer received it. */
export function recordDelivery(history: History, process: string, m: PushMessage): void {
  history.record({ process, f: 'deliver', type: 'ok', records: [recordRef(m)] });
}

/** Acks a push delivery and records the outcome; resolves to whether the broker took the ack. */
export async function recordAck(history: History, process: string, m: PushMessage, options?: { receipt?: boolean }): Promise<boolean> {
  const records = [recordRef(m)];
  history.record({ process, f: 'ack', type: 'invoke', records });
  try {
    await m.ack(options);
    history.record({ process, f: 'ack', type: 'ok', records });
    return true;
  } catch (err) {
    // STALE_ACK / UNKNOWN_DELIVERY: a later attempt owns the message; it comes again.
    const refused = isSluiceError(err) && (err.code === 'STALE_ACK' || err.code === 'UNKNOWN_DELIVERY');
    history.record({ process, f: 'ack', type: refused ? 'fail' : 'unknown', records, error: errorName(err) });
    return false;
  }
}
