/** The storage engine's public surface: what the broker core imports from broker/log. */
export { PartitionLog, type AppendResult } from './partition-log.js';
export type { FsyncMode, LogSink, PartitionLogOptions, PartitionLogConfig } from './options.js';
export { LogManager, type LogManagerOptions } from './log-manager.js';
export { NodeFileIO, nodeFileIO, type FileIO, type FileHandle, type FileStat, type OpenMode } from './file-io.js';
export { controlRecordKey, scanBatchHeaders, type HeaderScanOptions, type HeaderScanResult, type HeaderSource, type ScannedBatch } from './batch-headers.js';
export { readWholeFile, writeFileAtomic } from './file-io.js';
