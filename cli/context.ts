import type { Command } from 'commander';
import { connect, type SluiceClient } from '../client/client.js';

export interface GlobalFlags {
  readonly broker: string;
  readonly json: boolean;
}

/** The global flags, wherever in the command tree the action runs. */
export function globals(command: Command): GlobalFlags {
  const o = command.optsWithGlobals<{ broker: string; json: boolean }>();
  return { broker: o.broker, json: o.json === true };
}

/** Connects for one CLI command: no reconnect loop, a short connect timeout, always closed after. */
export async function withClient<T>(command: Command, run: (client: SluiceClient, flags: GlobalFlags) => Promise<T>): Promise<T> {
  const flags = globals(command);
  const client = await connect({ broker: flags.broker, clientId: 'sluice-cli', reconnect: false, connectTimeoutMs: 5_000 });
  try {
    return await run(client, flags);
  } finally {
    await client.close();
  }
}

/** Writes one line to stdout: a JSON object under --json, the human text otherwise. */
export function emit(flags: GlobalFlags, json: unknown, human: string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(json)}\n` : `${human}\n`);
}
