import { connect } from '../../client/client.js';
import { startChildBroker, type ChildBroker } from './child-broker.js';
import type { BenchConfig, Workload } from './config.js';
import { Progress } from './progress.js';
import { benchReport, type BenchReport, type RunResult } from './report.js';
import { runConsumeWorkload } from './workloads/consume.js';
import type { WorkloadRunner } from './workloads/context.js';
import { runE2eWorkload } from './workloads/e2e.js';
import { runProduceWorkload } from './workloads/produce.js';

const RUNNERS: Record<Workload, WorkloadRunner> = {
  produce: runProduceWorkload,
  consume: runConsumeWorkload,
  e2e: runE2eWorkload,
};

/**
 * Runs the benchmark `config.runs` times and reports medians. One broker serves all runs (the
 * child the bench starts, or --broker); each run gets a fresh topic, deleted afterwards, and
 * fresh connections, so runs do not see each other's data or consumer state.
 */
export async function runBench(config: BenchConfig, progress = new Progress()): Promise<BenchReport> {
  let child: ChildBroker | undefined;
  if (config.broker === undefined) child = await startChildBroker({ fsync: config.fsync ?? 'always', nodeArgs: config.brokerNodeArgs });
  const broker = config.broker ?? child!.address;
  try {
    const client = await connect({ broker, clientId: 'sluice-bench-admin', reconnect: false, connectTimeoutMs: 10_000 });
    const admin = client.admin();
    try {
      const id = `${Date.now().toString(36)}-${process.pid}`;
      const runs: RunResult[] = [];
      for (let r = 1; r <= config.runs; r++) {
        const topic = `sluice-bench-${config.workload}-${id}-${r}`;
        await admin.createTopic(topic, { partitions: config.partitions });
        try {
          const label = config.runs > 1 ? `run ${r}/${config.runs} ` : '';
          runs.push(await RUNNERS[config.workload]({ config, broker, topic, name: topic, progress, label }));
        } finally {
          progress.stop();
          await admin.deleteTopic(topic).catch(() => undefined);
        }
      }
      return benchReport(config, runs);
    } finally {
      await client.close();
    }
  } finally {
    await child?.stop();
  }
}
