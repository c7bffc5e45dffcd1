import { connect, type SluiceClient } from '../../../client/client.js';
import type { BenchConfig } from '../config.js';
import type { Progress } from '../progress.js';
import type { RunResult } from '../report.js';

/** What a workload gets for one run: a fresh topic (with --partitions) on the target broker. */
export interface RunContext {
  readonly config: BenchConfig;
  readonly broker: string;
  readonly topic: string;
  /** Name for the run's consumer group or push subscription. */
  readonly name: string;
  readonly progress: Progress;
  /** Prefix for the progress line, e.g. `run 2/5 `. */
  readonly label: string;
}

export type WorkloadRunner = (ctx: RunContext) => Promise<RunResult>;

/** One connection per producer or consumer, as separate services would have. */
export function openClients(broker: string, n: number, role: string): Promise<SluiceClient[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => connect({ broker, clientId: `sluice-bench-${role}-${i}`, reconnect: false, connectTimeoutMs: 10_000 })));
}

/** Graceful close after a good run; after a failure, cut the connections instead of draining them. */
export async function closeClients(clients: readonly SluiceClient[], graceful: boolean): Promise<void> {
  if (!graceful) {
    for (const c of clients) c.connection.destroy();
    return;
  }
  await Promise.all(clients.map((c) => c.close()));
}

/** Runs `body` with clients that are closed afterwards, gracefully only if `body` succeeded. */
export async function withClients<T>(broker: string, n: number, role: string, body: (clients: SluiceClient[]) => Promise<T>): Promise<T> {
  const clients = await openClients(broker, n, role);
  let ok = false;
  try {
    const result = await body(clients);
    ok = true;
    return result;
  } finally {
    await closeClients(clients, ok);
  }
}
