/**
 * CRC-32C (Castagnoli), the checksum of Kafka's RecordBatch v2 and of Sluice's record batches.
 * (node:zlib's crc32 is IEEE CRC-32, a different polynomial.)
 *
 * Uses the native SIMD implementation from @node-rs/crc32. It is loaded with createRequire
 * rather than a static import so that a platform without a prebuilt binary falls back to the
 * JS implementation instead of failing to start; a binary that answers the standard check value
 * wrongly is treated the same way.
 */
import { createRequire } from 'node:module';
import { crc32cFallback } from './crc32c-fallback.js';

type Crc32cFn = (buf: Uint8Array, initial: number) => number;

/** CRC-32C of ASCII "123456789", the catalogue check value. */
export const CRC32C_CHECK = 0xe3069283;
const CHECK_INPUT = new Uint8Array([0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39]);

function loadNative(): Crc32cFn | undefined {
  try {
    const mod = createRequire(import.meta.url)('@node-rs/crc32') as { crc32c?: unknown };
    if (typeof mod.crc32c !== 'function') return undefined;
    const fn = mod.crc32c as Crc32cFn;
    return fn(CHECK_INPUT, 0) >>> 0 === CRC32C_CHECK ? fn : undefined;
  } catch {
    return undefined;
  }
}

const native = loadNative();

/** Which implementation `crc32c` runs: the native module or the JS fallback. */
export const crc32cBackend: 'native' | 'js' = native === undefined ? 'js' : 'native';

const impl: Crc32cFn = native ?? crc32cFallback;

/**
 * CRC-32C of `buf`, continuing from `initial` (the CRC of the bytes before, 0 to start), so
 * `crc32c(b, crc32c(a))` equals `crc32c(a ++ b)`. Returns an unsigned 32-bit number.
 */
export function crc32c(buf: Uint8Array, initial = 0): number {
  return impl(buf, initial >>> 0) >>> 0;
}
