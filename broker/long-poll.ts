import type { PartitionLog } from './log/index.js';

/**
 * Parks a long poll until any of `logs` moves its high watermark past what the caller saw
 * (`seen[i]`), `timeoutMs` passes, or any signal aborts. Subscribing before re-checking the
 * watermarks closes the gap where an append lands between the read and the wait.
 */
export function waitForAppend(logs: readonly PartitionLog[], seen: readonly number[], timeoutMs: number, signals: readonly AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    const unsubscribes: Array<() => void> = [];
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      for (const u of unsubscribes) u();
      for (const signal of signals) signal.removeEventListener('abort', done);
      resolve();
    };
    for (const log of logs) unsubscribes.push(log.onVisible(done));
    for (const signal of signals) signal.addEventListener('abort', done, { once: true });
    if (signals.some((signal) => signal.aborted) || logs.some((log, i) => log.highWatermark > (seen[i] ?? 0))) {
      done();
      return;
    }
    timer = setTimeout(done, timeoutMs);
  });
}
