import { SluiceError } from './errors.js';

/**
 * Frame grammar (docs/protocol.md, "Frames"), all integers big-endian:
 *
 *   frame   = length:u32 header body
 *   header  = version:u8 opcode:u8 flags:u16 correlationId:u32
 *   body    = msgpack value, (length - 8) bytes
 *
 * `length` counts every byte after itself, so the smallest legal frame is 12 bytes with an empty
 * body. The decoder checks `length` against the current limit before it buffers a byte of the
 * frame, so a hostile prefix costs the broker 4 bytes of memory, not 4 GiB.
 */
export const PROTOCOL_VERSION = 1;
export const LENGTH_PREFIX_BYTES = 4;
export const HEADER_BYTES = 8;
export const FRAME_OVERHEAD = LENGTH_PREFIX_BYTES + HEADER_BYTES;

export const FrameFlags = {
  /** Set on every reply; requests and server pushes leave it clear. */
  RESPONSE: 0x0001,
  /** The body is an error object `{ code, name, message, details? }` (docs/protocol.md, "Errors"). */
  ERROR: 0x0002,
} as const;

export interface Frame {
  readonly version: number;
  readonly opcode: number;
  readonly flags: number;
  readonly correlationId: number;
  readonly body: Buffer;
}

export interface FrameHeaderFields {
  readonly opcode: number;
  readonly flags?: number;
  readonly correlationId: number;
  readonly version?: number;
}

/** Writes one frame: header fields plus an already-encoded body. */
export function encodeFrame(fields: FrameHeaderFields, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_OVERHEAD + body.length);
  out.writeUInt32BE(HEADER_BYTES + body.length, 0);
  out.writeUInt8(fields.version ?? PROTOCOL_VERSION, 4);
  out.writeUInt8(fields.opcode, 5);
  out.writeUInt16BE(fields.flags ?? 0, 6);
  out.writeUInt32BE(fields.correlationId >>> 0, 8);
  out.set(body, FRAME_OVERHEAD);
  return out;
}

/**
 * Incremental frame decoder: `feed(chunk, onFrame)` delivers the frames completed by that chunk
 * and keeps the rest. Chunks may split a frame anywhere, including inside the length prefix. Frames that
 * arrive whole within one chunk are returned as views of it, without a copy.
 */
export class FrameDecoder {
  #maxFrameBytes: number;
  /** Bytes of an incomplete frame (or prefix) carried over from earlier chunks. */
  #partial: Buffer | null = null;
  /** When #partial holds a known-size frame, how many of its bytes are filled in. */
  #filled = 0;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** The largest frame accepted, counting the 4-byte prefix; raised after the handshake. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  set maxFrameBytes(limit: number) {
    this.#maxFrameBytes = limit;
  }

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.#partial === null ? 0 : this.#filled;
  }

  /**
   * Feeds one chunk: calls `onFrame` for each frame it completes, in order. Bad bytes (a length
   * over the limit or under the header size) throw, but only after every frame before them has
   * been delivered, so a peer's last good request is still answered.
   */
  feed(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    let pos = 0;
    if (this.#partial !== null) {
      pos = this.#fillPartial(chunk, onFrame);
      if (this.#partial !== null) return;
    }
    while (chunk.length - pos >= LENGTH_PREFIX_BYTES) {
      const total = this.#frameSize(chunk.readUInt32BE(pos));
      if (chunk.length - pos >= total) {
        onFrame(parseFrame(chunk.subarray(pos, pos + total)));
        pos += total;
      } else {
        this.#partial = Buffer.allocUnsafe(total);
        this.#filled = chunk.copy(this.#partial, 0, pos);
        return;
      }
    }
    if (pos < chunk.length) {
      // Fewer than 4 bytes: keep them until the length prefix is whole.
      this.#partial = Buffer.from(chunk.subarray(pos));
      this.#filled = this.#partial.length;
    }
  }

  /** `feed` collecting into an array; on bad bytes the frames before them are lost with the throw. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    this.feed(chunk, (f) => frames.push(f));
    return frames;
  }

  /** Continues the carried-over frame; returns how many bytes of `chunk` it consumed. */
  #fillPartial(chunk: Buffer, onFrame: (frame: Frame) => void): number {
    let partial = this.#partial as Buffer;
    let pos = 0;
    if (partial.length < LENGTH_PREFIX_BYTES) {
      // Still assembling the prefix itself.
      const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
      partial.copy(prefix, 0, 0, this.#filled);
      const need = LENGTH_PREFIX_BYTES - this.#filled;
      const take = Math.min(need, chunk.length);
      chunk.copy(prefix, this.#filled, 0, take);
      pos = take;
      if (take < need) {
        this.#partial = prefix.subarray(0, this.#filled + take);
        this.#filled += take;
        return pos;
      }
      const total = this.#frameSize(prefix.readUInt32BE(0));
      partial = Buffer.allocUnsafe(total);
      prefix.copy(partial);
      this.#partial = partial;
      this.#filled = LENGTH_PREFIX_BYTES;
    }
    const take = Math.min(partial.length - this.#filled, chunk.length - pos);
    chunk.copy(partial, this.#filled, pos, pos + take);
    this.#filled += take;
    pos += take;
    if (this.#filled === partial.length) {
      this.#partial = null;
      this.#filled = 0;
      onFrame(parseFrame(partial));
    }
    return pos;
  }

  /** Validates a length prefix and returns the whole frame's size. */
  #frameSize(length: number): number {
    if (length < HEADER_BYTES) {
      throw new SluiceError('MALFORMED_FRAME', `frame length ${length} is shorter than the ${HEADER_BYTES}-byte header`);
    }
    const total = length + LENGTH_PREFIX_BYTES;
    if (total > this.#maxFrameBytes) {
      throw new SluiceError('FRAME_TOO_LARGE', `frame of ${total} bytes exceeds the limit of ${this.#maxFrameBytes} bytes`, {
        details: { size: total, limit: this.#maxFrameBytes },
      });
    }
    return total;
  }
}

function parseFrame(buf: Buffer): Frame {
  return {
    version: buf.readUInt8(4),
    opcode: buf.readUInt8(5),
    flags: buf.readUInt16BE(6),
    correlationId: buf.readUInt32BE(8),
    body: buf.subarray(FRAME_OVERHEAD),
  };
}
