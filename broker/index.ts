import { Broker, type BrokerStorage } from './broker.js';
import type { BrokerOptions } from './config.js';
import { TcpListener } from './net/listener.js';

export { Broker, type BrokerStorage } from './broker.js';
export { PowerCutIO, type PowerCutOptions } from './log/power-cut-io.js';
export type { FileIO, FileHandle, FileStat, OpenMode } from './log/file-io.js';
export type { BrokerOptions, BrokerConfig, FsyncMode } from './config.js';
export type { Logger, LogLevel } from './logger.js';

/** A broker listening on TCP; what `startBroker` resolves to. */
export interface RunningBroker {
  readonly host: string;
  readonly port: number;
  /** `host:port`, ready for `--broker` or the SDK's `broker` option. */
  readonly address: string;
  readonly broker: Broker;
  /** Graceful stop: no new connections, in-flight requests finish, storage closes cleanly. */
  close(): Promise<void>;
}

/** Starts an embedded broker, e.g. `startBroker({ port: 0, dataDir })` in a service's own tests. */
export async function startBroker(options: BrokerOptions = {}, storage: BrokerStorage = {}): Promise<RunningBroker> {
  const broker = await Broker.open(options, storage);
  let listener: TcpListener;
  try {
    listener = await TcpListener.listen(broker, broker.config.host, broker.config.port);
  } catch (err) {
    await broker.close();
    throw err;
  }
  const { host, port } = listener;
  // A broker that stops by itself (a storage failure) must stop listening too.
  void broker.whenClosed().then(() => listener.stopAccepting());
  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
    broker,
    close() {
      closing ??= (async () => {
        const stopped = listener.stopAccepting();
        await broker.close();
        await stopped;
      })();
      return closing;
    },
  };
}
