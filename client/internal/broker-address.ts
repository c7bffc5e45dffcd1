import { SluiceError } from '../protocol/errors.js';

export const DEFAULT_BROKER = '127.0.0.1:7420';

export interface BrokerAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `host:port` (or `[v6]:port`), as given to `--broker`, SLUICE_BROKER or the SDK. */
export function parseBrokerAddress(address: string): BrokerAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address.trim());
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port < 1 || port > 65_535) {
    throw new SluiceError('INVALID_CONFIG', `broker address must look like host:port, got ${JSON.stringify(address)}`);
  }
  return { host: (match[1] ?? match[2]) as string, port };
}
