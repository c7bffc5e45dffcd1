/**
 * The two small files in a partition directory that tell recovery how much to trust.
 *
 * `recovery-point`: ASCII decimal offset and a newline. Every segment whose base offset is below
 * it has been sealed with its log and index files fdatasynced; recovery trusts those segments
 * without reading them. Replaced atomically (temp file, fsync, rename, fsync dir).
 *
 * `.clean-shutdown`: empty; written (and the directory fsynced) as the last step of close(),
 * removed (and the directory fsynced) at open before anything is appended. When present at open,
 * the active segment was synced with its indexes too, so even its full scan is skipped.
 */
import path from 'node:path';
import { type FileIO, readWholeFile, writeFileAtomic } from './file-io.js';

export const RECOVERY_POINT_FILE = 'recovery-point';
export const CLEAN_SHUTDOWN_FILE = '.clean-shutdown';

export async function readRecoveryPoint(io: FileIO, dir: string): Promise<number | undefined> {
  const buf = await readWholeFile(io, path.join(dir, RECOVERY_POINT_FILE));
  if (!buf) return undefined;
  const m = /^(\d{1,16})\n$/.exec(buf.toString('latin1'));
  const value = m ? Number(m[1]) : Number.NaN;
  return Number.isSafeInteger(value) ? value : undefined;
}

export function writeRecoveryPoint(io: FileIO, dir: string, offset: number): Promise<void> {
  return writeFileAtomic(io, path.join(dir, RECOVERY_POINT_FILE), Buffer.from(`${offset}\n`, 'latin1'));
}

export async function writeCleanShutdown(io: FileIO, dir: string): Promise<void> {
  const fh = await io.open(path.join(dir, CLEAN_SHUTDOWN_FILE), 'create');
  await fh.close();
  await io.fsyncDir(dir);
}

/** Removes the marker if present; returns whether it was. Durable before it returns. */
export async function takeCleanShutdown(io: FileIO, dir: string): Promise<boolean> {
  const file = path.join(dir, CLEAN_SHUTDOWN_FILE);
  if ((await io.stat(file)) === undefined) return false;
  await io.unlink(file);
  await io.fsyncDir(dir);
  return true;
}
