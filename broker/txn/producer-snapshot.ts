/**
 * The producer-state snapshot of one partition: `DIR/producer-state.snapshot`, so that opening
 * a partition rescans only the log written after it, not the whole log.
 *
 * Format: one JSON document,
 *
 *   { "version": 1, "coveredOffset": N, "producers": [...], "aborted": [...] }
 *
 * where producers and aborted are ProducerStateData (producer-state.ts) and coveredOffset is the
 * log end offset the state reflects: every batch below it, none at or above it. Written only
 * once the log is readable up to coveredOffset (durable under fsync=always), replaced
 * atomically (temp file, fdatasync, rename, fsync of the directory: file-io.ts writeFileAtomic);
 * the log's recovery removes a temp file a crash left behind.
 *
 * A snapshot is a cache: one that is missing, unreadable, of another version, or that claims
 * more than the log holds (the log lost its tail under fsync=interval/never) is ignored and the
 * state is rebuilt from the whole log.
 */
import path from 'node:path';
import { type FileIO, readWholeFile, writeFileAtomic } from '../log/index.js';
import type { AbortedTxn, ProducerStateData } from './producer-state.js';
import { RECENT_BATCHES } from './producer-state.js';
import { MAX_SEQUENCE } from './sequence.js';

export const PRODUCER_SNAPSHOT_FILE = 'producer-state.snapshot';
const VERSION = 1;
const MAX_EPOCH = 0x7fff;

export interface ProducerSnapshot extends ProducerStateData {
  readonly coveredOffset: number;
}

export type SnapshotLoad =
  | { readonly status: 'missing' }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'ok'; readonly snapshot: ProducerSnapshot };

export function snapshotPath(dir: string): string {
  return path.join(dir, PRODUCER_SNAPSHOT_FILE);
}

export async function writeProducerSnapshot(io: FileIO, dir: string, snapshot: ProducerSnapshot): Promise<void> {
  const doc = { version: VERSION, coveredOffset: snapshot.coveredOffset, producers: snapshot.producers, aborted: snapshot.aborted };
  await writeFileAtomic(io, snapshotPath(dir), Buffer.from(JSON.stringify(doc), 'utf8'));
}

/**
 * Removes the snapshot, durably. For a snapshot ahead of its log: left in place it would be
 * loaded by a later open once new appends pass its offset, describing batches that were lost.
 */
export async function removeProducerSnapshot(io: FileIO, dir: string): Promise<void> {
  if ((await io.stat(snapshotPath(dir))) === undefined) return;
  await io.unlink(snapshotPath(dir));
  await io.fsyncDir(dir);
}

export async function readProducerSnapshot(io: FileIO, dir: string): Promise<SnapshotLoad> {
  let buf: Buffer | undefined;
  try {
    buf = await readWholeFile(io, snapshotPath(dir));
  } catch (err) {
    return { status: 'invalid', reason: `unreadable: ${(err as Error).message}` };
  }
  if (buf === undefined) return { status: 'missing' };
  try {
    return { status: 'ok', snapshot: parseProducerSnapshot(JSON.parse(buf.toString('utf8'))) };
  } catch (err) {
    return { status: 'invalid', reason: (err as Error).message };
  }
}

/** Checks every field of a parsed snapshot document; throws an Error naming the first bad one. */
export function parseProducerSnapshot(doc: unknown): ProducerSnapshot {
  const o = obj(doc, 'snapshot');
  if (o['version'] !== VERSION) throw new Error(`snapshot version ${String(o['version'])}, expected ${VERSION}`);
  const coveredOffset = int(o['coveredOffset'], 'coveredOffset', 0, Number.MAX_SAFE_INTEGER);
  const offset = (v: unknown, name: string): number => int(v, name, 0, coveredOffset - 1);
  const seen = new Set<number>();
  const producers = arr(o['producers'], 'producers').map((raw, i) => {
    const where = `producers[${i}]`;
    const p = obj(raw, where);
    const producerId = int(p['producerId'], `${where}.producerId`, 0, Number.MAX_SAFE_INTEGER);
    if (seen.has(producerId)) throw new Error(`${where}: producer ${producerId} appears twice`);
    seen.add(producerId);
    const batches = arr(p['batches'], `${where}.batches`).map((b, j) => {
      const t = arr(b, `${where}.batches[${j}]`);
      if (t.length !== 4) throw new Error(`${where}.batches[${j}] must have 4 fields`);
      const firstSeq = int(t[0], `${where}.batches[${j}][0]`, 0, MAX_SEQUENCE);
      const lastSeq = int(t[1], `${where}.batches[${j}][1]`, 0, MAX_SEQUENCE);
      const baseOffset = offset(t[2], `${where}.batches[${j}][2]`);
      const lastOffset = offset(t[3], `${where}.batches[${j}][3]`);
      if (lastOffset < baseOffset) throw new Error(`${where}.batches[${j}]: last offset before base offset`);
      return [firstSeq, lastSeq, baseOffset, lastOffset] as const;
    });
    if (batches.length > RECENT_BATCHES) throw new Error(`${where}: more than ${RECENT_BATCHES} batches`);
    return {
      producerId,
      epoch: int(p['epoch'], `${where}.epoch`, 0, MAX_EPOCH),
      lastSequence: p['lastSequence'] === null ? null : int(p['lastSequence'], `${where}.lastSequence`, -1, MAX_SEQUENCE),
      lastTimestamp: int(p['lastTimestamp'], `${where}.lastTimestamp`, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
      txnFirstOffset: p['txnFirstOffset'] === null ? null : offset(p['txnFirstOffset'], `${where}.txnFirstOffset`),
      batches,
    };
  });
  let previous = -1;
  const aborted = arr(o['aborted'], 'aborted').map((raw, i): AbortedTxn => {
    const where = `aborted[${i}]`;
    const t = obj(raw, where);
    const txn = {
      producerId: int(t['producerId'], `${where}.producerId`, 0, Number.MAX_SAFE_INTEGER),
      firstOffset: offset(t['firstOffset'], `${where}.firstOffset`),
      lastOffset: offset(t['lastOffset'], `${where}.lastOffset`),
    };
    if (txn.lastOffset < txn.firstOffset || txn.lastOffset <= previous) throw new Error(`${where}: offsets out of order`);
    previous = txn.lastOffset;
    return txn;
  });
  return { coveredOffset, producers, aborted };
}

function obj(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${name} must be an object`);
  return v as Record<string, unknown>;
}

function arr(v: unknown, name: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${name} must be an array`);
  return v;
}

function int(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new Error(`${name} must be an integer in [${min}, ${max}]`);
  return v;
}
