import { Argument, Option, type Command } from 'commander';
import { intArg } from '../args.js';
import { parseBenchConfig, WORKLOADS, type BenchOptions, type Workload } from '../bench/config.js';
import { formatTable } from '../bench/report.js';
import { runBench } from '../bench/run.js';
import { globals } from '../context.js';

const MAX_INT = Number.MAX_SAFE_INTEGER;

/**
 * `sluice bench produce|consume|e2e`: throughput and latency percentiles against the broker it
 * starts as a child process (default) or a running one (--broker). docs/performance.md says what
 * each workload measures.
 */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('benchmark: msgs/s, MB/s and latency percentiles (starts its own broker unless --broker is given)')
    .addArgument(new Argument('<workload>', 'produce (send -> ack), consume (drain a backlog) or e2e (send -> receive at --rate)').choices(WORKLOADS))
    .addOption(new Option('--message-size <bytes>', 'value size').default(100).argParser(intArg('--message-size', 1, 1024 * 1024)))
    .addOption(new Option('--count <n>', 'messages per run (default 100000)').argParser(intArg('--count', 1, MAX_INT)))
    .addOption(new Option('--duration <ms>', 'send for this long instead of --count').argParser(intArg('--duration', 1, 86_400_000)))
    .addOption(new Option('--producers <n>', 'producers, one connection each').default(1).argParser(intArg('--producers', 1, 256)))
    .addOption(new Option('--consumers <n>', 'consumers, one connection each (consume, e2e)').default(1).argParser(intArg('--consumers', 1, 256)))
    .addOption(new Option('--partitions <n>', 'partitions of the bench topic').default(1).argParser(intArg('--partitions', 1, 10_000)))
    .addOption(new Option('--batch-size <bytes>', 'producer maxBatchBytes (default: the SDK default)').argParser(intArg('--batch-size', 1024, 1024 * 1024)))
    .addOption(new Option('--linger-ms <ms>', 'producer lingerMs (default: the SDK default; 0 for e2e)').argParser(intArg('--linger-ms', 0, 60_000)))
    .addOption(new Option('--max-in-flight <n>', 'producer maxInFlight (default: the SDK default)').argParser(intArg('--max-in-flight', 1, 1_024)))
    .addOption(new Option('--window <n>', 'sends outstanding per producer (default: 10000, fewer for large messages)').argParser(intArg('--window', 1, 1_000_000)))
    .addOption(new Option('--fsync <mode>', 'fsync mode of the broker the bench starts').choices(['always', 'interval', 'never']).default('always'))
    .addOption(new Option('--consumer <kind>', 'consumer kind (consume, e2e)').choices(['poll', 'push']).default('poll'))
    .addOption(new Option('--prefetch <n>', 'push consumer prefetch').default(1_000).argParser(intArg('--prefetch', 1, 100_000)))
    .addOption(new Option('--rate <n>', 'target msgs/s over all producers (e2e, produce); 0: as fast as possible').default(0).argParser(intArg('--rate', 0, 100_000_000)))
    .addOption(new Option('--warmup <ms>', 'e2e: send and receive for this long before recording').default(0).argParser(intArg('--warmup', 0, 3_600_000)))
    .addOption(new Option('--runs <n>', 'repeat and report medians').default(1).argParser(intArg('--runs', 1, 1_000)))
    .option('--broker-node-args <args>', 'node flags for the broker the bench starts, e.g. "--cpu-prof --cpu-prof-dir=prof"')
    .action(async (workload: Workload, o: BenchOptions, cmd: Command) => {
      const flags = globals(cmd);
      const root = rootOf(cmd);
      // --broker (or SLUICE_BROKER) targets a running broker; left at its default, bench starts its own.
      const external = root.getOptionValueSource('broker') !== 'default' && root.getOptionValueSource('broker') !== undefined;
      if (external && cmd.getOptionValueSource('fsync') === 'cli') process.stderr.write('sluice bench: --fsync applies only to the broker bench starts; ignored with --broker\n');
      const config = parseBenchConfig(workload, o, external ? flags.broker : undefined);
      const report = await runBench(config);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      process.stdout.write(`${formatTable(config, report)}\n`);
      if (config.rate > 0 && report.msgsPerSec < config.rate * 0.95) {
        process.stdout.write(`note: ${report.msgsPerSec.toLocaleString('en-US')} msgs/s achieved of ${config.rate.toLocaleString('en-US')} targeted: the load generator or the broker did not keep up\n`);
      }
    });
}

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent !== null) c = c.parent;
  return c;
}
