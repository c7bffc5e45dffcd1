/**
 * Big-endian int64 fields as JS numbers, without BigInt on the hot path: the high half signed,
 * the low half unsigned. Offsets, timestamps and producer ids are safe integers (|n| < 2^53), so
 * the double is exact; callers that read untrusted bytes check Number.isSafeInteger themselves.
 */
const TWO_32 = 4_294_967_296;

export function writeInt64BE(buf: Buffer, value: number, at: number): void {
  const hi = Math.floor(value / TWO_32);
  buf.writeInt32BE(hi, at);
  buf.writeUInt32BE(value - hi * TWO_32, at + 4);
}

export function readInt64BE(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
}
