import type { PushConsumer, PushMessage } from '../../client/push-consumer.js';

/** Receives `n` messages from a push consumer, failing after `timeoutMs`. */
export async function take(c: PushConsumer, n: number, timeoutMs = 5_000): Promise<PushMessage[]> {
  const out: PushMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const m = await c.receive({ timeoutMs: Math.max(1, deadline - Date.now()) });
    if (m === undefined) throw new Error(`got ${out.length} of ${n} messages within ${timeoutMs} ms`);
    out.push(m);
  }
  return out;
}
