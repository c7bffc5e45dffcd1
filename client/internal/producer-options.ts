import { SluiceError } from '../protocol/errors.js';
import { MAX_TOPIC_LENGTH } from '../protocol/messages/common.js';
import { MAX_TRANSACTIONAL_ID_LENGTH } from '../protocol/messages/producer.js';

export interface ProducerOptions {
  /** How long a batch waits for more records before it is sent. 0: the next turn of the event loop. Default 5 ms. */
  lingerMs?: number;
  /** A batch is sealed before it would pass this size (estimated from above). 1 KiB to 1 MiB, the broker's batch limit. Default 512 KiB. */
  maxBatchBytes?: number;
  /** Produce requests on the wire at once. Default 5. */
  maxInFlight?: number;
  /** Resends of a batch after a retriable error, with backoff. Default 5. */
  retries?: number;
  /** Per-request timeout. Default: the connection's. */
  requestTimeoutMs?: number;
  /** How long a topic's partition count is trusted before it is looked up again. Default 30 s. */
  metadataMaxAgeMs?: number;
  /** Bytes of records batched or in flight before `send()` waits for acks. At least maxBatchBytes. Default 32 MiB. */
  maxBufferedBytes?: number;
  /**
   * Idempotent produce (docs/semantics.md, "The idempotent producer"): the producer gets a
   * producer id from the broker (InitProducer, once, before its first batch) and numbers each
   * partition's records, so a batch resent after a lost reply is recognised and answered with
   * its original offsets instead of being written twice. Default true; `false` sends plain
   * batches (at-least-once: a retry can duplicate).
   */
  idempotent?: boolean;
  /**
   * Makes the producer transactional: `transaction()` writes to several partitions, and commits
   * consumed offsets or push acks, all or nothing. The id names the producer across restarts:
   * a new instance with the same id fences the old one (PRODUCER_FENCED) and aborts what it left
   * open. Every send must then happen inside `transaction()`. Up to 249 characters.
   */
  transactionalId?: string;
  /** The broker aborts a transaction left open longer than this. 100 ms to 1 h. Default 60 s. */
  transactionTimeoutMs?: number;
}

export type ProducerConfig = Readonly<
  Required<Omit<ProducerOptions, 'requestTimeoutMs' | 'transactionalId'>> & { requestTimeoutMs: number | undefined; transactionalId: string | undefined }
>;

export const KIB = 1024;
/** The broker's per-batch limit (broker/log/options.ts, maxBatchBytes). */
const BROKER_MAX_BATCH_BYTES = 1024 * KIB;
/** Room for a request's framing and each entry's msgpack map (topic name included). */
export const REQUEST_OVERHEAD = 1024;
export const ENTRY_OVERHEAD = MAX_TOPIC_LENGTH + 64;
/** The Produce codec's limit on entries per request (client/protocol/messages/produce.ts). */
export const MAX_ENTRIES = 4_096;

const DEFAULTS = { lingerMs: 5, maxBatchBytes: 512 * KIB, maxInFlight: 5, retries: 5, metadataMaxAgeMs: 30_000, maxBufferedBytes: 32 * 1024 * KIB, idempotent: true, transactionTimeoutMs: 60_000 };

/** Parses producer options once: unknown keys and bad values are INVALID_CONFIG naming the option. */
export function parseProducerOptions(options: ProducerOptions = {}): ProducerConfig {
  if (typeof options !== 'object' || options === null) throw new SluiceError('INVALID_CONFIG', 'producer options must be an object');
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(key in DEFAULTS) && key !== 'requestTimeoutMs' && key !== 'transactionalId') throw new SluiceError('INVALID_CONFIG', `unknown producer option ${JSON.stringify(key)}`, { details: { option: key } });
  }
  const maxBatchBytes = intOption(o, 'maxBatchBytes', KIB, BROKER_MAX_BATCH_BYTES);
  const idempotent = o['idempotent'] ?? DEFAULTS.idempotent;
  if (typeof idempotent !== 'boolean') throw new SluiceError('INVALID_CONFIG', `producer option idempotent must be a boolean, got ${String(idempotent)}`, { details: { option: 'idempotent' } });
  const transactionalId = o['transactionalId'];
  if (transactionalId !== undefined) {
    if (typeof transactionalId !== 'string' || transactionalId.length === 0 || transactionalId.length > MAX_TRANSACTIONAL_ID_LENGTH) {
      throw new SluiceError('INVALID_CONFIG', `producer option transactionalId must be a string of 1 to ${MAX_TRANSACTIONAL_ID_LENGTH} characters`, { details: { option: 'transactionalId' } });
    }
    if (!idempotent) throw new SluiceError('INVALID_CONFIG', 'a transactional producer is idempotent: drop `idempotent: false` or `transactionalId`', { details: { option: 'idempotent' } });
  }
  return Object.freeze({
    lingerMs: intOption(o, 'lingerMs', 0, 60_000),
    maxBatchBytes,
    maxInFlight: intOption(o, 'maxInFlight', 1, 1_024),
    retries: intOption(o, 'retries', 0, 1_000),
    requestTimeoutMs: o['requestTimeoutMs'] === undefined ? undefined : intOption(o, 'requestTimeoutMs', 1, 3_600_000),
    metadataMaxAgeMs: intOption(o, 'metadataMaxAgeMs', 0, 86_400_000),
    maxBufferedBytes: intOption(o, 'maxBufferedBytes', maxBatchBytes, 2 ** 31),
    idempotent,
    transactionalId,
    transactionTimeoutMs: intOption(o, 'transactionTimeoutMs', 100, 3_600_000),
  });
}

function intOption(o: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = o[key] ?? DEFAULTS[key as keyof typeof DEFAULTS];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new SluiceError('INVALID_CONFIG', `producer option ${key} must be an integer in [${min}, ${max}], got ${String(v)}`, { details: { option: key } });
  }
  return v;
}
