import type { Message } from '../client/value-codec.js';

/** A value as text: strings as they are, bytes as UTF-8, anything else as JSON. */
export function valueText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return JSON.stringify(value);
}

/** The JSON line `consume --json` prints for a message (the CLI contract). */
export function messageJson(m: Message): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.headers)) headers[k] = v.toString('utf8');
  return {
    topic: m.topic,
    partition: m.partition,
    offset: m.offset,
    key: m.key === null ? null : m.key.toString('utf8'),
    value: Buffer.isBuffer(m.value) ? m.value.toString('utf8') : m.value,
    headers,
    timestamp: m.timestamp,
  };
}
