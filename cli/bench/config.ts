import { parseProducerOptions } from '../../client/producer.js';
import { SluiceError } from '../../client/protocol/errors.js';

export type Workload = 'produce' | 'consume' | 'e2e';
export type ConsumerKind = 'poll' | 'push';
export type FsyncMode = 'always' | 'interval' | 'never';

export const WORKLOADS: readonly Workload[] = ['produce', 'consume', 'e2e'];

/** The flags of `sluice bench` as commander hands them over (undefined: not given). */
export interface BenchOptions {
  messageSize: number;
  count?: number;
  duration?: number;
  producers: number;
  consumers: number;
  partitions: number;
  batchSize?: number;
  lingerMs?: number;
  maxInFlight?: number;
  window?: number;
  fsync: FsyncMode;
  consumer: ConsumerKind;
  prefetch: number;
  rate: number;
  warmup?: number;
  runs: number;
  brokerNodeArgs?: string;
}

/** A parsed, fully defaulted benchmark: what `config` in the JSON result reports. */
export interface BenchConfig {
  readonly workload: Workload;
  readonly messageSize: number;
  /** Messages per run (split over the producers), or undefined when the run is timed by durationMs. */
  readonly count: number | undefined;
  readonly durationMs: number | undefined;
  readonly producers: number;
  readonly consumers: number;
  readonly partitions: number;
  /** Producer maxBatchBytes. */
  readonly batchSize: number;
  readonly lingerMs: number;
  readonly maxInFlight: number;
  /** Sends outstanding (sent, not yet acknowledged) per producer. */
  readonly window: number;
  /** The broker's fsync mode when the bench starts its own broker; undefined against --broker. */
  readonly fsync: FsyncMode | undefined;
  readonly consumer: ConsumerKind;
  /** Push consumer prefetch (credit window). */
  readonly prefetch: number;
  /** Target msgs/s over all producers; 0: as fast as the window allows. */
  readonly rate: number;
  /** e2e: ms of sending and receiving before anything is recorded. */
  readonly warmupMs: number;
  readonly runs: number;
  /** `host:port` of a running broker, or undefined: the bench starts its own as a child process. */
  readonly broker: string | undefined;
  /** Extra node flags for the child broker (e.g. `--cpu-prof`). */
  readonly brokerNodeArgs: readonly string[];
}

const DEFAULT_COUNT = 100_000;
/** e2e carries the send time (a float64) in the first bytes of each value. */
export const STAMP_BYTES = 8;
const MAX_WINDOW = 10_000;
/** Bytes outstanding per producer for the default window: half the SDK's default buffer, so send() never waits inside it. */
const WINDOW_BYTES = 16 * 1024 * 1024;

/** Turns the flags into a frozen config, or throws INVALID_CONFIG naming the flag. */
export function parseBenchConfig(workload: Workload, o: BenchOptions, broker: string | undefined): BenchConfig {
  if (!WORKLOADS.includes(workload)) throw invalid(`workload must be one of ${WORKLOADS.join(', ')}, got ${JSON.stringify(workload)}`);
  if (o.count !== undefined && o.duration !== undefined) throw invalid('give --count or --duration, not both');
  if (workload !== 'e2e' && (o.warmup ?? 0) > 0) throw invalid('--warmup applies to e2e only');
  if (workload === 'e2e' && o.messageSize < STAMP_BYTES) throw invalid(`e2e needs --message-size of at least ${STAMP_BYTES} (the send time travels in the value)`);
  // The SDK's defaults, except linger under e2e: a latency run should not wait 5 ms per batch.
  let sdk;
  try {
    sdk = parseProducerOptions({
      ...(o.batchSize === undefined ? {} : { maxBatchBytes: o.batchSize }),
      ...(o.maxInFlight === undefined ? {} : { maxInFlight: o.maxInFlight }),
      lingerMs: o.lingerMs ?? (workload === 'e2e' ? 0 : parseProducerOptions().lingerMs),
    });
  } catch (err) {
    throw invalid(`producer settings: ${(err as Error).message}`);
  }
  const window = o.window ?? Math.max(1, Math.min(MAX_WINDOW, Math.floor(WINDOW_BYTES / (o.messageSize + 64))));
  return Object.freeze({
    workload,
    messageSize: o.messageSize,
    count: o.duration === undefined ? (o.count ?? DEFAULT_COUNT) : undefined,
    durationMs: o.duration,
    producers: o.producers,
    consumers: o.consumers,
    partitions: o.partitions,
    batchSize: sdk.maxBatchBytes,
    lingerMs: sdk.lingerMs,
    maxInFlight: sdk.maxInFlight,
    window,
    fsync: broker === undefined ? o.fsync : undefined,
    consumer: o.consumer,
    prefetch: o.prefetch,
    rate: o.rate,
    warmupMs: o.warmup ?? 0,
    runs: o.runs,
    broker,
    brokerNodeArgs: Object.freeze((o.brokerNodeArgs ?? '').split(/\s+/).filter((a) => a !== '')),
  });
}

/** The config as the JSON result reports it (no undefined fields, the broker named). */
export function configJson(c: BenchConfig): Record<string, unknown> {
  return {
    messageSize: c.messageSize,
    ...(c.count === undefined ? {} : { count: c.count }),
    ...(c.durationMs === undefined ? {} : { durationMs: c.durationMs }),
    producers: c.producers,
    ...(c.workload === 'produce' ? {} : { consumers: c.consumers, consumer: c.consumer }),
    ...(c.workload !== 'produce' && c.consumer === 'push' ? { prefetch: c.prefetch } : {}),
    partitions: c.partitions,
    batchSize: c.batchSize,
    lingerMs: c.lingerMs,
    maxInFlight: c.maxInFlight,
    window: c.window,
    ...(c.workload === 'e2e' ? { rate: c.rate, warmupMs: c.warmupMs } : {}),
    broker: c.broker ?? 'child',
    fsync: c.fsync ?? null,
    runs: c.runs,
  };
}

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_CONFIG', message);
}
