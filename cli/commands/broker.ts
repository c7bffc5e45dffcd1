import { Option, type Command } from 'commander';
import { startBroker } from '../../broker/index.js';
import type { BrokerOptions, FsyncMode } from '../../broker/config.js';
import type { LogLevel } from '../../broker/logger.js';
import { intArg } from '../args.js';

interface BrokerFlags {
  port: number;
  host: string;
  data: string;
  fsync: FsyncMode;
  fsyncIntervalMs: number;
  autoCreateTopics: boolean;
  groupSessionTimeoutMs: number;
  logLevel: LogLevel;
}

/** `sluice broker`: runs the daemon until SIGINT/SIGTERM, then drains and exits 0. */
export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('run the broker daemon')
    .addOption(new Option('--port <port>', 'TCP port (0 picks a free one)').default(7420).argParser(intArg('--port', 0, 65_535)))
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--data <dir>', 'data directory', './sluice-data')
    .addOption(new Option('--fsync <mode>', 'when appends reach the disk before they are acknowledged').choices(['always', 'interval', 'never']).default('always'))
    .addOption(new Option('--fsync-interval-ms <ms>', 'sync period under --fsync interval').default(1000).argParser(intArg('--fsync-interval-ms', 1, 3_600_000)))
    .option('--auto-create-topics', 'create unknown topics on first produce', false)
    .addOption(new Option('--group-session-timeout-ms <ms>', 'remove a consumer-group member not heard from for this long').default(30_000).argParser(intArg('--group-session-timeout-ms', 100, 3_600_000)))
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr)').choices(['debug', 'info', 'warn', 'error', 'silent']).default('info'))
    .action(async (flags: BrokerFlags) => {
      const options: BrokerOptions = {
        port: flags.port,
        host: flags.host,
        dataDir: flags.data,
        fsync: flags.fsync,
        fsyncIntervalMs: flags.fsyncIntervalMs,
        autoCreateTopics: flags.autoCreateTopics,
        groupSessionTimeoutMs: flags.groupSessionTimeoutMs,
        logLevel: flags.logLevel,
      };
      const running = await startBroker(options);
      process.stdout.write(`sluice listening on ${running.address}\n`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: NodeJS.Signals): void => {
          if (stopping) return;
          stopping = true;
          running.broker.log.info({ signal }, 'shutting down');
          running.close().then(resolve, (err: unknown) => {
            running.broker.log.error({ err }, 'unclean shutdown');
            process.exitCode = 1;
            resolve();
          });
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // A storage failure closes the broker by itself; the process must then say so.
        running.broker.whenClosed().then(resolve, resolve);
      });
      const fatal = running.broker.fatalError;
      if (fatal !== undefined) {
        process.stderr.write(`sluice: STORAGE_ERROR: ${fatal.message}\n`);
        process.exitCode = 1;
      }
    });
}
