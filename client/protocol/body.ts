import { Packr, Unpackr } from 'msgpackr';
import { SluiceError } from './errors.js';

/**
 * Frame bodies are msgpack. Wire data is hostile until proven otherwise, so decoding goes
 * through `decodeBody`, which bounds what a body may contain and refuses anything that is not
 * plain data: msgpackr's extension types (Date, Set, Error, RegExp, typed arrays, records) would
 * otherwise hand class instances built from bytes a peer chose to the handlers.
 *
 * msgpackr offers no per-instance switch to turn its built-in extensions off (only a global
 * registry, which would change msgpackr for the application embedding the SDK), so such values
 * are built by msgpackr's own fixed constructors and then refused here, before any handler sees
 * them. The frame size limit bounds the work a peer can cause that way.
 */
export interface BodyLimits {
  /** Deepest nesting of arrays and maps. */
  readonly maxDepth: number;
  /** Most elements in one array. */
  readonly maxArrayLength: number;
  /** Most keys in one map. */
  readonly maxMapKeys: number;
  /** Longest string, in UTF-16 code units. */
  readonly maxStringLength: number;
  /** Longest map key, in UTF-16 code units. */
  readonly maxKeyLength: number;
  /** Largest binary value, in bytes. */
  readonly maxBinaryBytes: number;
  /** Most values in the whole body. */
  readonly maxValues: number;
}

export const DEFAULT_BODY_LIMITS: BodyLimits = Object.freeze({
  maxDepth: 16,
  maxArrayLength: 100_000,
  maxMapKeys: 1_024,
  maxStringLength: 1 << 20,
  maxKeyLength: 256,
  maxBinaryBytes: 64 << 20,
  maxValues: 1_000_000,
});

/** Keys that could reach an object's prototype chain; msgpackr turns `__proto__` into `__proto_`. */
const FORBIDDEN_KEYS = new Set(['__proto__', '__proto_', 'constructor', 'prototype']);

// useRecords off: plain maps only. int64AsType 'number': no BigInt surprises in handlers.
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number', encodeUndefinedAsNil: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeBody(value: unknown): Buffer {
  return packr.pack(value);
}

export function decodeBody(bytes: Uint8Array, limits: BodyLimits = DEFAULT_BODY_LIMITS): unknown {
  if (bytes.length === 0) return null;
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (err) {
    throw new SluiceError('MALFORMED_FRAME', `body is not valid msgpack: ${(err as Error).message}`, { cause: err });
  }
  checkPlain(value, limits);
  return value;
}

// The walk's stack, shared by every call (decoding is synchronous and never re-entered): two
// parallel arrays instead of a [value, depth] pair per value, since every frame body goes through
// here on both the broker and the client.
const pending: unknown[] = [];
const depths: number[] = [];

/** Walks the decoded value iteratively (no recursion for a peer to exhaust). */
function checkPlain(root: unknown, limits: BodyLimits): void {
  try {
    walkPlain(root, limits);
  } finally {
    // Hold no references to the body once the check is over (a refusal leaves entries behind).
    pending.length = 0;
    depths.length = 0;
  }
}

function walkPlain(root: unknown, limits: BodyLimits): void {
  pending.push(root);
  depths.push(0);
  let values = 0;
  while (pending.length > 0) {
    const value = pending.pop();
    const depth = depths.pop() as number;
    if (++values > limits.maxValues) refuse(`more than ${limits.maxValues} values`);
    if (value === null || value === undefined || typeof value === 'boolean' || typeof value === 'number') continue;
    if (typeof value === 'string') {
      if (value.length > limits.maxStringLength) refuse(`string longer than ${limits.maxStringLength}`);
      continue;
    }
    if (value instanceof Uint8Array && value.constructor === Buffer) {
      if (value.length > limits.maxBinaryBytes) refuse(`binary larger than ${limits.maxBinaryBytes} bytes`);
      continue;
    }
    if (depth >= limits.maxDepth) refuse(`nesting deeper than ${limits.maxDepth}`);
    if (Array.isArray(value)) {
      if (value.length > limits.maxArrayLength) refuse(`array longer than ${limits.maxArrayLength}`);
      for (const item of value) {
        pending.push(item);
        depths.push(depth + 1);
      }
      continue;
    }
    if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      const keys = Object.keys(value);
      if (keys.length > limits.maxMapKeys) refuse(`map with more than ${limits.maxMapKeys} keys`);
      for (const key of keys) {
        if (FORBIDDEN_KEYS.has(key)) refuse(`forbidden key "${key}"`);
        if (key.length > limits.maxKeyLength) refuse(`map key longer than ${limits.maxKeyLength}`);
        pending.push((value as Record<string, unknown>)[key]);
        depths.push(depth + 1);
      }
      continue;
    }
    refuse(`unsupported value type ${describe(value)}`);
  }
}

function describe(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  return (value as object).constructor?.name ?? 'object';
}

function refuse(why: string): never {
  throw new SluiceError('MALFORMED_FRAME', `body refused: ${why}`);
}
