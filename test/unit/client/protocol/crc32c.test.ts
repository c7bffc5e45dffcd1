import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32cFallback } from '../../../../client/protocol/crc32c-fallback.js';
import { CRC32C_CHECK, crc32c, crc32cBackend } from '../../../../client/protocol/crc32c.js';

const BUDGET = { interruptAfterTimeLimit: 10_000 };
const CHECK_INPUT = Buffer.from('123456789', 'ascii');

/** Bit-at-a-time CRC-32C straight from the polynomial: the slowest, most obvious reference. */
function bitwiseCrc32c(buf: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of buf) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe('crc32c', () => {
  it('gives the catalogue check value with both implementations', () => {
    expect(CRC32C_CHECK).toBe(0xe3069283);
    expect(crc32c(CHECK_INPUT)).toBe(0xe3069283);
    expect(crc32cFallback(CHECK_INPUT)).toBe(0xe3069283);
    expect(bitwiseCrc32c(CHECK_INPUT)).toBe(0xe3069283);
  });

  it('uses the native module where a prebuilt binary exists', () => {
    if (process.platform === 'linux' && process.arch === 'x64') expect(crc32cBackend).toBe('native');
  });

  it('returns the initial value for empty input and unsigned results', () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32cFallback(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(0), 0xdeadbeef)).toBe(0xdeadbeef);
    expect(crc32cFallback(new Uint8Array(0), 0xdeadbeef)).toBe(0xdeadbeef);
    expect(crc32c(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toBeGreaterThanOrEqual(0);
  });

  it('agrees between native, fallback and the bitwise reference on random input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const expected = bitwiseCrc32c(bytes);
        expect(crc32c(bytes)).toBe(expected);
        expect(crc32cFallback(bytes)).toBe(expected);
      }),
      BUDGET,
    );
  });

  it('continues from an initial value across any split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (bytes, at) => {
        const cut = bytes.length === 0 ? 0 : at % (bytes.length + 1);
        const a = bytes.subarray(0, cut);
        const b = bytes.subarray(cut);
        const whole = crc32c(bytes);
        expect(crc32c(b, crc32c(a))).toBe(whole);
        expect(crc32cFallback(b, crc32cFallback(a))).toBe(whole);
      }),
      BUDGET,
    );
  });

  it('reads only the view it is given, wherever it sits in its ArrayBuffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.nat(16), fc.nat(16), (bytes, before, after) => {
        const big = new Uint8Array(before + bytes.length + after).fill(0xa5);
        big.set(bytes, before);
        const view = big.subarray(before, before + bytes.length);
        const expected = bitwiseCrc32c(bytes);
        expect(crc32c(view)).toBe(expected);
        expect(crc32cFallback(view)).toBe(expected);
        expect(crc32c(Buffer.from(view.buffer, view.byteOffset, view.byteLength))).toBe(expected);
      }),
      BUDGET,
    );
  });

  it('handles a large buffer identically (slice-by-8 main loop and tail)', () => {
    const big = Buffer.alloc(1_000_003);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2_654_435_761) >>> 24;
    expect(crc32cFallback(big)).toBe(crc32c(big));
  });
});
