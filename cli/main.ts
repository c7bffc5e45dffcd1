#!/usr/bin/env node
import { Command, Option } from 'commander';
import { isSluiceError } from '../client/protocol/errors.js';
import { SLUICE_VERSION } from '../broker/version.js';
import { registerBenchCommand } from './commands/bench.js';
import { registerBrokerCommand } from './commands/broker.js';
import { registerConsumeCommand } from './commands/consume.js';
import { registerDlqCommands } from './commands/dlq.js';
import { registerGroupCommands } from './commands/group.js';
import { registerProduceCommand } from './commands/produce.js';
import { registerSubscriptionCommands } from './commands/subscription.js';
import { registerTopicCommands } from './commands/topic.js';
import { DEFAULT_BROKER } from '../client/internal/broker-address.js';

/**
 * The CLI contract (shared/DESIGN.md): global --broker and --json, exit 0 on success and a
 * one-line error on stderr with a non-zero exit otherwise.
 */
const program = new Command('sluice')
  .description('Sluice message broker: run it, produce, consume, administer and benchmark')
  .version(SLUICE_VERSION)
  .addOption(new Option('--broker <host:port>', 'broker address').env('SLUICE_BROKER').default(DEFAULT_BROKER))
  .option('--json', 'machine-readable output (one JSON object per line)', false)
  .showHelpAfterError()
  .configureOutput({ outputError: (str, write) => write(str) });

registerBrokerCommand(program);
registerTopicCommands(program);
registerProduceCommand(program);
registerConsumeCommand(program);
registerGroupCommands(program);
registerSubscriptionCommands(program);
registerDlqCommands(program);
registerBenchCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = isSluiceError(err) ? `${err.code}: ` : '';
  process.stderr.write(`sluice: ${code}${(err as Error).message}\n`);
  process.exitCode = 1;
}
