import { mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../client/protocol/errors.js';

/**
 * One broker per data directory: two brokers appending to the same segment files would corrupt
 * them. The lock file holds the owner's pid; a lock left by a process that is gone (kill -9) is
 * taken over, so a crash never blocks the restart that recovers from it.
 */
/** Data dirs this process holds, to tell its own live lock from one a previous run left behind. */
const heldHere = new Set<string>();

export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, '.lock');
  const key = realpathSync(dataDir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      heldHere.add(key);
      return () => {
        heldHere.delete(key);
        rmSync(path, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(readFileSync(path, 'utf8'), 10);
      // Our own pid in the file is ours only if this process took it; otherwise it is a previous
      // run's (in a container the broker is often pid 1 every time).
      const live = owner === process.pid ? heldHere.has(key) : Number.isInteger(owner) && isAlive(owner);
      if (live) {
        throw new SluiceError('INVALID_CONFIG', `data directory ${dataDir} is in use by process ${owner}`, { details: { dataDir, pid: owner } });
      }
      rmSync(path, { force: true });
    }
  }
  throw new SluiceError('INVALID_CONFIG', `could not lock data directory ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
