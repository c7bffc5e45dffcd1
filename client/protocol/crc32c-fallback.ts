/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) in plain JS, slice-by-8. Used only when
 * the native @node-rs/crc32 module cannot load on this platform; crc32c.ts picks one.
 */

const POLY = 0x82f63b78;

// TABLE[k * 256 + b] is the CRC of byte b followed by k zero bytes, so eight input bytes fold
// into the register with eight lookups and no per-bit work.
const TABLE = new Uint32Array(8 * 256);
for (let b = 0; b < 256; b++) {
  let c = b;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  TABLE[b] = c;
}
for (let b = 0; b < 256; b++) {
  for (let k = 1; k < 8; k++) {
    const prev = TABLE[(k - 1) * 256 + b]!;
    TABLE[k * 256 + b] = (prev >>> 8) ^ TABLE[prev & 0xff]!;
  }
}

/**
 * CRC-32C of `buf`, continuing from `initial` (the CRC of the bytes before, 0 to start).
 * Returns an unsigned 32-bit number.
 */
export function crc32cFallback(buf: Uint8Array, initial = 0): number {
  const t = TABLE;
  let crc = ~initial;
  let i = 0;
  const end8 = buf.length - (buf.length % 8);
  while (i < end8) {
    const lo = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      t[0x700 + (lo & 0xff)]! ^
      t[0x600 + ((lo >>> 8) & 0xff)]! ^
      t[0x500 + ((lo >>> 16) & 0xff)]! ^
      t[0x400 + (lo >>> 24)]! ^
      t[0x300 + buf[i + 4]!]! ^
      t[0x200 + buf[i + 5]!]! ^
      t[0x100 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
    i += 8;
  }
  while (i < buf.length) crc = (crc >>> 8) ^ t[(crc ^ buf[i++]!) & 0xff]!;
  return ~crc >>> 0;
}
