/**
 * The one error table of Sluice. Broker, SDK, CLI and docs/protocol.md all take their codes from
 * here; test/unit/docs/error-table.test.ts keeps the docs in step with it.
 *
 * A wire code never changes meaning once released. `retriable` says whether the same request may
 * succeed if sent again unchanged (possibly on a new connection).
 */
export const ERROR_TABLE = {
  UNKNOWN: { code: 1, retriable: false, message: 'Unexpected server error' },
  MALFORMED_FRAME: { code: 2, retriable: false, message: 'Frame could not be decoded' },
  FRAME_TOO_LARGE: { code: 3, retriable: false, message: 'Frame exceeds the maximum frame size' },
  UNSUPPORTED_VERSION: { code: 4, retriable: false, message: 'Protocol version not supported' },
  UNKNOWN_OPCODE: { code: 5, retriable: false, message: 'Unknown opcode' },
  HANDSHAKE_REQUIRED: { code: 6, retriable: false, message: 'The first frame must be Hello, sent once' },
  HANDSHAKE_TIMEOUT: { code: 7, retriable: true, message: 'No Hello within the handshake timeout' },
  INVALID_REQUEST: { code: 8, retriable: false, message: 'Request body is not valid for its opcode' },
  IDLE_TIMEOUT: { code: 9, retriable: true, message: 'Connection idle for too long' },
  SLOW_CONSUMER: { code: 10, retriable: true, message: 'Client stopped reading; pending output exceeded the limit' },
  SHUTTING_DOWN: { code: 11, retriable: true, message: 'Broker is shutting down' },
  REQUEST_TIMEOUT: { code: 12, retriable: true, message: 'Request timed out' },
  CONNECTION_CLOSED: { code: 13, retriable: true, message: 'Connection closed' },
  ABORTED: { code: 14, retriable: false, message: 'Operation aborted' },
  INVALID_CONFIG: { code: 15, retriable: false, message: 'Invalid configuration' },
  CLIENT_CLOSED: { code: 16, retriable: false, message: 'The client was closed by its owner' },

  CORRUPT_RECORD: { code: 20, retriable: false, message: 'Record batch failed its integrity check' },
  INVALID_RECORD: { code: 21, retriable: false, message: 'Record batch is not well formed' },
  OFFSET_OUT_OF_RANGE: { code: 22, retriable: false, message: 'Offset is outside the log' },
  STORAGE_ERROR: { code: 23, retriable: false, message: 'Storage failure; the broker is stopping' },
  RECORD_TOO_LARGE: { code: 24, retriable: false, message: 'Record batch exceeds the size limit' },

  TOPIC_NOT_FOUND: { code: 30, retriable: false, message: 'Topic does not exist' },
  TOPIC_ALREADY_EXISTS: { code: 31, retriable: false, message: 'Topic already exists' },
  INVALID_TOPIC: { code: 32, retriable: false, message: 'Invalid topic name' },
  PARTITION_NOT_FOUND: { code: 33, retriable: false, message: 'Partition does not exist' },

  UNKNOWN_MEMBER: { code: 40, retriable: false, message: 'Unknown group member' },
  FENCED_MEMBER_EPOCH: { code: 41, retriable: false, message: 'Member epoch is stale; the member was fenced' },
  GROUP_NOT_FOUND: { code: 42, retriable: false, message: 'Consumer group does not exist' },
  NOT_ASSIGNED: { code: 43, retriable: false, message: 'Partition is not assigned to this member' },
  GROUP_NOT_EMPTY: { code: 44, retriable: false, message: 'Consumer group still has active members' },

  STALE_ACK: { code: 50, retriable: false, message: 'The delivery attempt was superseded by a redelivery' },
  UNKNOWN_DELIVERY: { code: 51, retriable: false, message: 'No such delivery' },
  SUBSCRIPTION_NOT_FOUND: { code: 52, retriable: false, message: 'Subscription does not exist' },
  UNKNOWN_CONSUMER: { code: 53, retriable: false, message: 'No such consumer on this connection' },
  SUBSCRIPTION_CONFLICT: { code: 54, retriable: false, message: 'Subscription exists with a different topic' },

  OUT_OF_ORDER_SEQUENCE: { code: 60, retriable: false, message: 'Batch sequence number leaves a gap' },
  PRODUCER_FENCED: { code: 61, retriable: false, message: 'A newer producer with the same id or transactional id took over' },
  DUPLICATE_SEQUENCE: { code: 62, retriable: false, message: 'Batch was already written, too long ago to return its offsets' },
  UNKNOWN_PRODUCER: { code: 63, retriable: false, message: 'Producer id is not known to the broker' },
  INVALID_TXN_STATE: { code: 64, retriable: false, message: 'Operation not valid in the transaction state' },
  TRANSACTION_ABORTED: { code: 65, retriable: false, message: 'The transaction was aborted' },
  UNSTABLE_OFFSETS: { code: 66, retriable: true, message: 'An unfinished transaction holds offsets of this group; retry shortly' },
} as const satisfies Record<string, { code: number; retriable: boolean; message: string }>;

export type ErrorName = keyof typeof ERROR_TABLE;

const BY_WIRE_CODE = new Map<number, ErrorName>(
  Object.entries(ERROR_TABLE).map(([name, e]) => [e.code, name as ErrorName]),
);

/** Looks up the stable name for a numeric wire code; unknown codes map to UNKNOWN. */
export function errorNameOf(wireCode: number): ErrorName {
  return BY_WIRE_CODE.get(wireCode) ?? 'UNKNOWN';
}

// A registered symbol, so `isSluiceError` holds across duplicate installs of the package.
const MARK = Symbol.for('sluice.error');

export interface SluiceErrorOptions {
  /** Machine-readable facts about the failure, e.g. the valid offset range. Sent on the wire. */
  details?: Readonly<Record<string, unknown>>;
  cause?: unknown;
}

/**
 * Every failure Sluice reports. `code` is the stable name (match on it, never on `message`),
 * `wireCode` the number on the wire, `retriable` whether resending may succeed.
 */
export class SluiceError extends Error {
  override readonly name = 'SluiceError';
  readonly code: ErrorName;
  readonly wireCode: number;
  readonly retriable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorName, message?: string, options: SluiceErrorOptions = {}) {
    const entry = ERROR_TABLE[code];
    super(message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.wireCode = entry.code;
    this.retriable = entry.retriable;
    this.details = options.details;
    Object.defineProperty(this, MARK, { value: true });
  }
}

export function isSluiceError(err: unknown): err is SluiceError {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[MARK] === true;
}

/** True when `err` is a SluiceError with the given code. */
export function hasCode(err: unknown, code: ErrorName): err is SluiceError {
  return isSluiceError(err) && err.code === code;
}
