import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FsyncMode } from './config.js';

/** This build's CLI entry point: dist/cli/bench/child-broker.js -> dist/cli/main.js. */
const CLI = fileURLToPath(new URL('../main.js', import.meta.url));
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

export interface ChildBroker {
  /** `host:port` it listens on. */
  readonly address: string;
  /** SIGTERM (graceful: a --cpu-prof profile gets written), SIGKILL if it lingers; then removes the data dir. */
  stop(): Promise<void>;
}

/**
 * Runs `sluice broker` as a child process on a fresh temp data dir and port 0, so the broker
 * and the load generator each get their own event loop (and core), as in production. Resolves
 * once the child prints `sluice listening on HOST:PORT`. If this process exits any other way
 * (an error, Ctrl-C), the child is killed and the dir removed on the way out.
 */
export async function startChildBroker(options: { fsync: FsyncMode; nodeArgs?: readonly string[] }): Promise<ChildBroker> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-bench-broker-'));
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, 'broker', '--port', '0', '--data', dataDir, '--fsync', options.fsync, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    // Keep the tail only: enough to explain a failure.
    stderr = (stderr + d.toString()).slice(-4_096);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const emergency = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    emergency();
    process.stderr.write('\n');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', emergency);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const detach = (): void => {
    process.off('exit', emergency);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  try {
    const address = await listeningAddress(child, () => stderr);
    return {
      address,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dataDir, { recursive: true, force: true });
        detach();
      },
    };
  } catch (err) {
    emergency();
    detach();
    throw err;
  }
}

function listeningAddress(child: ChildProcess, stderr: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`the bench broker did not start within ${START_TIMEOUT_MS} ms: ${stderr().trim()}`)), START_TIMEOUT_MS);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /sluice listening on (\S+)/.exec(out);
      if (m === null) return;
      cleanup();
      // Nothing else is read from stdout; keep draining it so the child never blocks on a full pipe.
      child.stdout?.resume();
      resolve(m[1]!);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => fail(new Error(`the bench broker exited (${signal ?? code}) before listening: ${stderr().trim()}`));
    const fail = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}
