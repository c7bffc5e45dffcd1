/**
 * A broker process whose power can be cut (run by BrokerProcess with `script`, compiled by
 * child-script.ts). It takes the CLI's `broker` flags that the scenarios use and prints the
 * same listening line; on SIGUSR2 its storage loses whatever was not fsynced (PowerCutIO, with
 * a random part of each unsynced tail kept, as a cut during writeback leaves) and it SIGKILLs
 * itself, so nothing after the cut reaches the disk or a client.
 */
import { parseArgs } from 'node:util';
import { PowerCutIO, startBroker } from '../../broker/index.js';
import type { FsyncMode, LogLevel } from '../../broker/index.js';

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: {
    port: { type: 'string', default: '0' },
    data: { type: 'string' },
    fsync: { type: 'string', default: 'always' },
    'fsync-interval-ms': { type: 'string', default: '1000' },
    'group-session-timeout-ms': { type: 'string', default: '30000' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

const io = new PowerCutIO();
const running = await startBroker(
  {
    port: Number(values.port),
    dataDir: values.data,
    fsync: values.fsync as FsyncMode,
    fsyncIntervalMs: Number(values['fsync-interval-ms']),
    groupSessionTimeoutMs: Number(values['group-session-timeout-ms']),
    logLevel: values['log-level'] as LogLevel,
  },
  { io },
);
process.stdout.write(`sluice listening on ${running.address}\n`);
process.on('SIGUSR2', () => {
  // Connections drop first, so nothing after the cut is answered; then the power goes.
  const cut = () => io.cut({ keepUnsynced: (_file, bytes) => Math.floor(Math.random() * bytes) });
  void running.broker.halt(cut).finally(() => process.kill(process.pid, 'SIGKILL'));
});
process.once('SIGTERM', () => void running.close().then(() => process.exit(0)));
