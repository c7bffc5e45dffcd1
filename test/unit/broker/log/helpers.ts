/** Shared fixtures for the storage engine tests: batches, file systems, a silent logger. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeBatches, encodeRecordBatch } from '../../../../client/protocol/record-batch.js';
import type { PartitionLog } from '../../../../broker/log/partition-log.js';
import { CrashFS } from '../../../../broker/log/crash-fs.js';
import { type FileIO, NodeFileIO, nodeFileIO } from '../../../../broker/log/file-io.js';
import { InlineWrites } from '../../../../broker/log/inline-writes.js';
import type { LogSink } from '../../../../broker/log/options.js';

/** A batch of `count` records whose values encode `tag` and the record index. */
export function makeBatch(tag: string, count = 1, options: { timestamp?: number; valueBytes?: number } = {}): Buffer {
  const records = [];
  for (let i = 0; i < count; i++) {
    const prefix = `${tag}:${i}`;
    const value = options.valueBytes && options.valueBytes > prefix.length ? prefix.padEnd(options.valueBytes, '.') : prefix;
    records.push({ value: Buffer.from(value), timestamp: options.timestamp ?? 1_000_000 });
  }
  return encodeRecordBatch(records);
}

export interface Captured extends LogSink {
  warnings: { fields: object; message: string | undefined }[];
}

/** A logger that records warnings instead of printing them. */
export function captureLogger(): Captured {
  const warnings: Captured['warnings'] = [];
  return { warnings, info: () => {}, warn: (fields, message) => warnings.push({ fields, message }) };
}

export interface FsFixture {
  name: string;
  io: FileIO;
  root: string;
  /** Reads a file's current bytes behind the log's back. */
  readFile(file: string): Buffer;
  /** Replaces a file's bytes durably behind the log's back (disk damage, a torn tail). */
  writeFile(file: string, data: Buffer): void;
  removeFile(file: string): void;
  cleanup(): void;
}

/** The two FileIO implementations the contract suites run against. */
export const fileSystems: { name: string; make(): FsFixture }[] = [
  {
    name: 'CrashFS',
    make: () => {
      const io = new CrashFS();
      return {
        name: 'CrashFS',
        io,
        root: '/data',
        readFile: (f) => io.readFileSync(f),
        writeFile: (f, d) => io.writeFileSync(f, d),
        removeFile: (f) => io.removeFileSync(f),
        cleanup: () => {},
      };
    },
  },
  // The default policy writes small buffers on the event loop; the second runs every write
  // through the thread pool, so both paths of NodeFileIO keep the contract.
  realFs('node:fs', nodeFileIO),
  realFs('node:fs, thread pool only', new NodeFileIO(new InlineWrites({ maxBytes: 0 }))),
];

function realFs(name: string, io: FileIO): { name: string; make: () => FsFixture } {
  return {
    name,
    make: () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-log-'));
      return {
        name,
        io,
        root,
        readFile: (f) => fs.readFileSync(f),
        writeFile: (f, d) => fs.writeFileSync(f, d),
        removeFile: (f) => fs.rmSync(f),
        cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
      };
    },
  };
}

/** Every record value of the log from its start to its high watermark, in order. */
export async function logValues(log: PartitionLog): Promise<string[]> {
  const out: string[] = [];
  for (let off = log.startOffset; off < log.highWatermark; ) {
    const recs = decodeBatches(await log.read(off, 1 << 20));
    out.push(...recs.map((r) => r.value!.toString()));
    off = recs[recs.length - 1]!.offset + 1;
  }
  return out;
}
