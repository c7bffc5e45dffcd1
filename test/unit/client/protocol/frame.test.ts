import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBody, encodeBody } from '../../../../client/protocol/body.js';
import { hasCode } from '../../../../client/protocol/errors.js';
import { FRAME_OVERHEAD, FrameDecoder, FrameFlags, encodeFrame, type Frame } from '../../../../client/protocol/frame.js';
import { fromErrorBody, parsers, toErrorBody } from '../../../../client/protocol/messages/index.js';
import { SluiceError } from '../../../../client/protocol/errors.js';
import { Opcode } from '../../../../client/protocol/opcodes.js';

const frameArb = fc.record({
  opcode: fc.integer({ min: 0, max: 255 }),
  flags: fc.integer({ min: 0, max: 0xffff }),
  correlationId: fc.integer({ min: 0, max: 0xffffffff }),
  body: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
});

function plain(f: Frame): object {
  return { ...f, body: Buffer.from(f.body) };
}

/** Splits `buf` at the given cut points (sorted, deduplicated, inside the buffer). */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    parts.push(buf.subarray(prev, p));
    prev = p;
  }
  parts.push(buf.subarray(prev));
  return parts;
}

describe('frame codec', () => {
  it('round-trips a frame through encode and decode', () => {
    const body = encodeBody({ version: 1, clientId: 'c' });
    const bytes = encodeFrame({ opcode: Opcode.Hello, correlationId: 7, flags: FrameFlags.RESPONSE }, body);
    expect(bytes.length).toBe(FRAME_OVERHEAD + body.length);
    const [frame] = new FrameDecoder(1 << 20).push(bytes);
    expect(frame).toMatchObject({ version: 1, opcode: 1, flags: 1, correlationId: 7 });
    expect(decodeBody((frame as Frame).body)).toEqual({ version: 1, clientId: 'c' });
  });

  it('round-trips every message type through its body parser', () => {
    const hello = { version: 1, clientId: 'svc-1', features: ['x'] };
    expect(parsers.Hello.request(decodeBody(encodeBody(hello)))).toEqual(hello);
    const helloRes = { version: 1, server: 'sluice', serverVersion: '0.1.0', features: [], limits: { maxFrameBytes: 1024, maxBatchBytes: 512, maxInFlight: 4, idleTimeoutMs: 1000, heartbeatIntervalMs: 333 } };
    expect(parsers.Hello.response(decodeBody(encodeBody(helloRes)))).toEqual(helloRes);
    expect(parsers.Ping.request(decodeBody(encodeBody({ nonce: 42 })))).toEqual({ nonce: 42 });
    expect(parsers.Ping.response(decodeBody(encodeBody({})))).toEqual({});
    const err = new SluiceError('OFFSET_OUT_OF_RANGE', 'offset 9 is past the end 5', { details: { start: 0, end: 5 } });
    const back = fromErrorBody(decodeBody(encodeBody(toErrorBody(err))));
    expect(back.code).toBe('OFFSET_OUT_OF_RANGE');
    expect(back.message).toBe(err.message);
    expect(back.details).toEqual({ start: 0, end: 5 });
  });

  it('yields the same frames when fed one byte at a time', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), (frames) => {
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f, f.body)));
        const decoder = new FrameDecoder(1 << 20);
        const out: Frame[] = [];
        for (let i = 0; i < bytes.length; i++) out.push(...decoder.push(bytes.subarray(i, i + 1)));
        expect(out.map(plain)).toEqual(frames.map((f) => ({ version: 1, ...f })));
        expect(decoder.bufferedBytes).toBe(0);
      }),
      { seed: 42, numRuns: 100 },
    );
  });

  it('yields the same frames at arbitrary splits', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f, f.body)));
        const decoder = new FrameDecoder(1 << 20);
        const out = split(bytes, cuts).flatMap((part) => decoder.push(part));
        expect(out.map(plain)).toEqual(frames.map((f) => ({ version: 1, ...f })));
      }),
      { seed: 7, numRuns: 300 },
    );
  });

  it('rejects an oversized length prefix before buffering the frame', () => {
    const decoder = new FrameDecoder(8 << 10);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(0xfffffff0);
    let caught: unknown;
    try {
      decoder.push(prefix);
    } catch (err) {
      caught = err;
    }
    expect(hasCode(caught, 'FRAME_TOO_LARGE')).toBe(true);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('rejects an oversized prefix that arrives split across chunks', () => {
    const decoder = new FrameDecoder(8 << 10);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(1 << 20);
    expect(decoder.push(prefix.subarray(0, 2))).toEqual([]);
    expect(() => decoder.push(prefix.subarray(2))).toThrow(/exceeds the limit/);
  });

  it('rejects a length shorter than the header', () => {
    const bytes = Buffer.from([0, 0, 0, 3, 1, 2, 3]);
    expect(() => new FrameDecoder(1024).push(bytes)).toThrow(/shorter than the 8-byte header/);
  });

  it('accepts a larger limit once raised', () => {
    const decoder = new FrameDecoder(64);
    const big = encodeFrame({ opcode: 2, correlationId: 1 }, Buffer.alloc(100));
    expect(() => new FrameDecoder(64).push(big)).toThrow();
    decoder.maxFrameBytes = 1024;
    expect(decoder.push(big)).toHaveLength(1);
  });
});
