import fc from 'fast-check';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBody } from '../../client/protocol/body.js';
import { encodeFrame } from '../../client/protocol/frame.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import { Connection } from '../../client/connection.js';
import { startBroker, type RunningBroker } from '../../broker/index.js';
import { MemoryLogger } from '../helpers/logger.js';
import { RawPeer, errorOf } from '../helpers/raw-peer.js';
import { tempDir } from '../helpers/temp-dir.js';

let broker: RunningBroker;
let healthy: Connection;
const dir = tempDir();

beforeAll(async () => {
  broker = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger(), handshakeTimeoutMs: 500 });
  healthy = await Connection.connect({ broker: broker.address, clientId: 'healthy' });
});

afterAll(async () => {
  await healthy.close();
  await broker.close();
  dir.remove();
});

async function misbehave(act: (peer: RawPeer) => void): Promise<RawPeer> {
  const peer = await RawPeer.tcp(broker.port);
  act(peer);
  await peer.waitClosed();
  // The broker still serves everyone else.
  expect(await healthy.request('Ping', { nonce: 1 })).toEqual({ nonce: 1 });
  return peer;
}

describe('bad frames over TCP', () => {
  it('malformed body: MALFORMED_FRAME and close', async () => {
    const peer = await misbehave((p) => {
      p.hello();
      p.write(Buffer.from([0, 0, 0, 9, 1, Opcode.Ping, 0, 0, 0, 0, 0, 2, 0xc1]));
    });
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'MALFORMED_FRAME', code: 2 });
    expect(peer.frames[1]?.correlationId).toBe(2);
  });

  it('oversized frame: FRAME_TOO_LARGE and close, before the broker buffers it', async () => {
    const peer = await misbehave((p) => {
      p.hello();
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(2_000_000_000);
      p.write(prefix);
    });
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'FRAME_TOO_LARGE' });
    expect(errorOf(peer.frames[1]).message).toMatch(/exceeds the limit of 8388608 bytes/);
  });

  it('truncated body: MALFORMED_FRAME and close', async () => {
    const body = encodeBody({ nonce: 12345, pad: 'abcdefgh' });
    const cut = body.subarray(0, body.length - 4);
    const peer = await misbehave((p) => {
      p.hello();
      p.write(encodeFrame({ opcode: Opcode.Ping, correlationId: 3 }, cut));
    });
    expect(errorOf(peer.frames[1]).name).toBe('MALFORMED_FRAME');
  });

  it('a frame cut off by the client closing is dropped without harm', async () => {
    const frame = encodeFrame({ opcode: Opcode.Ping, correlationId: 3 }, encodeBody({ nonce: 1 }));
    await misbehave((p) => {
      p.hello();
      p.write(frame.subarray(0, 7));
      p.destroy();
    });
  });

  it('unknown opcode: UNKNOWN_OPCODE and close', async () => {
    const peer = await misbehave((p) => {
      p.hello();
      p.send(0x7f, {}, 4);
    });
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'UNKNOWN_OPCODE', code: 5 });
  });

  it('out of order: a request before Hello gets HANDSHAKE_REQUIRED and close', async () => {
    const peer = await misbehave((p) => p.send(Opcode.Ping, {}, 1));
    expect(errorOf(peer.frames[0])).toMatchObject({ name: 'HANDSHAKE_REQUIRED' });
  });

  it('out of order: a second Hello gets HANDSHAKE_REQUIRED and close', async () => {
    const peer = await misbehave((p) => {
      p.hello('a', 1);
      p.hello('b', 2);
    });
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'HANDSHAKE_REQUIRED' });
  });

  it('silence after connecting: HANDSHAKE_TIMEOUT and close', async () => {
    const peer = await misbehave(() => undefined);
    expect(errorOf(peer.frames[0])).toMatchObject({ name: 'HANDSHAKE_TIMEOUT' });
  });
});

describe('fuzzing a live broker', () => {
  /** Sends `bytes` on a fresh socket and gives the broker a moment to react, then hangs up. */
  function throwBytes(bytes: Buffer, afterHello: boolean): Promise<void> {
    return new Promise((resolve) => {
      const socket = connect({ port: broker.port, host: '127.0.0.1' });
      socket.on('error', () => undefined);
      socket.on('data', () => undefined);
      socket.once('connect', () => {
        if (afterHello) socket.write(encodeFrame({ opcode: Opcode.Hello, correlationId: 1 }, encodeBody({ version: 1, clientId: 'fuzz' })));
        socket.write(bytes);
        setTimeout(() => socket.destroy(), 5);
      });
      socket.once('close', () => resolve());
    });
  }

  const lengthPrefixed = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 64 })).map(([len, rest]) => {
    const b = Buffer.alloc(4 + rest.length);
    b.writeUInt32BE(len);
    b.set(rest, 4);
    return b;
  });
  const headerShaped = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 })).map(([version, opcode, body]) =>
    encodeFrame({ opcode, correlationId: 9, version: version % 3 === 0 ? 1 : version }, body),
  );
  const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)), lengthPrefixed, headerShaped);

  it('survives random bytes and random length prefixes, then serves a well-formed client', async () => {
    await fc.assert(
      fc.asyncProperty(bytesArb, fc.boolean(), async (bytes, afterHello) => {
        await throwBytes(bytes, afterHello);
      }),
      { seed: 20261121, numRuns: 150 },
    );
    const fresh = await Connection.connect({ broker: broker.address, clientId: 'after-fuzz' });
    expect(await fresh.request('Ping', { nonce: 77 })).toEqual({ nonce: 77 });
    await fresh.close();
    expect(await healthy.request('Ping', { nonce: 2 })).toEqual({ nonce: 2 });
  });
});
