import { SluiceError } from './errors.js';

/**
 * Tiny readers that turn a decoded body (`unknown`) into typed fields, naming the exact path of
 * whatever is wrong. They check shape only; what a value means is the broker's business.
 */
export type Fields = Readonly<Record<string, unknown>>;

export function invalid(path: string, expected: string, got: unknown): never {
  throw new SluiceError('INVALID_REQUEST', `${path} must be ${expected}, got ${kindOf(got)}`, { details: { path } });
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Buffer.isBuffer(value)) return 'binary';
  return typeof value;
}

export function fields(value: unknown, path: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Buffer.isBuffer(value)) {
    invalid(path, 'a map', value);
  }
  return value as Fields;
}

export interface IntRange {
  readonly min?: number;
  readonly max?: number;
}

/** No bounds beyond a safe integer. Shared, so that the common case allocates nothing. */
const ANY_INT: IntRange = Object.freeze({});

export function int(o: Fields, key: string, path: string, range: IntRange = ANY_INT): number {
  const v = o[key];
  const min = range.min ?? Number.MIN_SAFE_INTEGER;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    invalid(`${path}.${key}`, `an integer in [${min}, ${max}]`, v);
  }
  return v;
}

export function optInt(o: Fields, key: string, path: string, range: IntRange = ANY_INT): number | undefined {
  return o[key] === undefined || o[key] === null ? undefined : int(o, key, path, range);
}

export function str(o: Fields, key: string, path: string, maxLength = 1024): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length > maxLength) invalid(`${path}.${key}`, `a string of at most ${maxLength} characters`, v);
  return v;
}

export function optStr(o: Fields, key: string, path: string, maxLength = 1024): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : str(o, key, path, maxLength);
}

export function bool(o: Fields, key: string, path: string, fallback: boolean): boolean {
  const v = o[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') invalid(`${path}.${key}`, 'a boolean', v);
  return v;
}

export function bin(o: Fields, key: string, path: string): Buffer {
  const v = o[key];
  if (!Buffer.isBuffer(v)) invalid(`${path}.${key}`, 'binary', v);
  return v;
}

export function list<T>(o: Fields, key: string, path: string, item: (v: unknown, path: string) => T, maxLength = 10_000): T[] {
  const v = o[key];
  if (!Array.isArray(v) || v.length > maxLength) invalid(`${path}.${key}`, `an array of at most ${maxLength} items`, v);
  return v.map((x, i) => item(x, `${path}.${key}[${i}]`));
}

export function optList<T>(o: Fields, key: string, path: string, item: (v: unknown, path: string) => T, maxLength = 10_000): T[] | undefined {
  return o[key] === undefined || o[key] === null ? undefined : list(o, key, path, item, maxLength);
}

export function strItem(maxLength = 1024): (v: unknown, path: string) => string {
  return (v, path) => {
    if (typeof v !== 'string' || v.length > maxLength) invalid(path, `a string of at most ${maxLength} characters`, v);
    return v;
  };
}

export function oneOf<T extends string>(o: Fields, key: string, path: string, options: readonly T[], fallback?: T): T {
  const v = o[key];
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) invalid(`${path}.${key}`, `one of ${options.join(', ')}`, v);
  return v as T;
}
