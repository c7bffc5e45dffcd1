import { createServer, connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeBody } from '../../../../client/protocol/body.js';
import { FrameFlags, encodeFrame } from '../../../../client/protocol/frame.js';
import { Opcode } from '../../../../client/protocol/opcodes.js';
import type { HelloResponse } from '../../../../client/protocol/messages/hello.js';
import { deferred } from '../../../../client/internal/deferred.js';
import { ServerConnection, type ConnectionLimits, type RequestHost } from '../../../../broker/net/server-connection.js';
import { duplexPair } from '../../../helpers/duplex-pair.js';
import { MemoryLogger } from '../../../helpers/logger.js';
import { RawPeer, errorOf } from '../../../helpers/raw-peer.js';

const LIMITS: ConnectionLimits = {
  handshakeMaxFrameBytes: 8 << 10,
  maxFrameBytes: 1 << 20,
  handshakeTimeoutMs: 5_000,
  idleTimeoutMs: 5_000,
  maxInFlight: 4,
  maxPendingBytes: 1 << 20,
};

/** A host whose Ping handler can be held open, to observe in-flight limits. */
class FakeHost implements RequestHost {
  readonly log = new MemoryLogger();
  readonly started: number[] = [];
  readonly gates: Array<() => void> = [];
  hold = false;
  responseBytes = 0;
  hello(): HelloResponse {
    return { version: 1, server: 'fake', serverVersion: '0', features: [], limits: { maxFrameBytes: LIMITS.maxFrameBytes, maxBatchBytes: 1 << 20, maxInFlight: LIMITS.maxInFlight, idleTimeoutMs: 1000, heartbeatIntervalMs: 300 } };
  }
  serves(opcode: number): boolean {
    return opcode === Opcode.Ping;
  }
  async dispatch(_opcode: number, body: unknown): Promise<unknown> {
    this.started.push((body as { nonce: number }).nonce);
    if (this.hold) {
      const gate = deferred<void>();
      this.gates.push(() => gate.resolve());
      await gate.promise;
    }
    return this.responseBytes > 0 ? { pad: Buffer.alloc(this.responseBytes) } : body;
  }
}

function open(limits: Partial<ConnectionLimits> = {}, host = new FakeHost()): { peer: RawPeer; host: FakeHost; conn: ServerConnection } {
  const [client, server] = duplexPair();
  const conn = new ServerConnection(server, host, { ...LIMITS, ...limits });
  return { peer: new RawPeer(client), host, conn };
}

async function openReady(limits: Partial<ConnectionLimits> = {}): Promise<{ peer: RawPeer; host: FakeHost; conn: ServerConnection }> {
  const c = open(limits);
  c.peer.hello();
  await c.peer.waitFrames(1);
  expect(c.peer.frames[0]?.isError).toBe(false);
  return c;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('ServerConnection handshake', () => {
  it('answers Hello with the server limits, then serves requests', async () => {
    const { peer } = await openReady();
    expect(peer.frames[0]).toMatchObject({ opcode: Opcode.Hello, flags: FrameFlags.RESPONSE, correlationId: 1 });
    expect((peer.frames[0]?.body as HelloResponse).limits.maxInFlight).toBe(4);
    peer.send(Opcode.Ping, { nonce: 9 }, 2);
    await peer.waitFrames(2);
    expect(peer.frames[1]).toMatchObject({ opcode: Opcode.Ping, correlationId: 2, body: { nonce: 9 }, isError: false });
  });

  it('refuses a first frame that is not Hello, and closes', async () => {
    const { peer } = open();
    peer.send(Opcode.Ping, {}, 5);
    await peer.waitClosed();
    expect(errorOf(peer.frames[0]).name).toBe('HANDSHAKE_REQUIRED');
    expect(peer.frames[0]?.correlationId).toBe(5);
  });

  it('refuses an unsupported protocol version in Hello', async () => {
    const { peer } = open();
    peer.send(Opcode.Hello, { version: 99, clientId: 'x' }, 1);
    await peer.waitClosed();
    expect(errorOf(peer.frames[0])).toMatchObject({ name: 'UNSUPPORTED_VERSION' });
  });

  it('refuses a frame header with an unsupported version', async () => {
    const { peer } = open();
    peer.send(Opcode.Hello, { version: 1, clientId: 'x' }, 1, 7);
    await peer.waitClosed();
    expect(errorOf(peer.frames[0]).message).toMatch(/frame version 7/);
  });

  it('refuses a second Hello', async () => {
    const { peer } = await openReady();
    peer.hello('again', 2);
    await peer.waitClosed();
    expect(errorOf(peer.frames[1]).name).toBe('HANDSHAKE_REQUIRED');
  });

  it('closes a connection that sends no Hello in time', async () => {
    const { peer } = open({ handshakeTimeoutMs: 50 });
    await peer.waitClosed();
    expect(peer.frames[0]?.opcode).toBe(Opcode.Connection);
    expect(errorOf(peer.frames[0]).name).toBe('HANDSHAKE_TIMEOUT');
  });

  it('caps frames at 8 KiB before the handshake and raises the cap after it', async () => {
    const early = open();
    early.peer.send(Opcode.Hello, { version: 1, clientId: 'x'.repeat(9000) }, 1);
    await early.peer.waitClosed();
    expect(errorOf(early.peer.frames[0]).name).toBe('FRAME_TOO_LARGE');

    const { peer } = await openReady();
    peer.send(Opcode.Ping, { nonce: 1, pad: 'y'.repeat(20_000) }, 2);
    await peer.waitFrames(2);
    expect(peer.frames[1]?.isError).toBe(false);
  });
});

describe('ServerConnection bad input', () => {
  it('closes on an unknown opcode', async () => {
    const { peer } = await openReady();
    peer.send(0xee, {}, 2);
    await peer.waitClosed();
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'UNKNOWN_OPCODE' });
    expect(errorOf(peer.frames[1]).message).toMatch(/0xee/);
  });

  it('closes on a body that is not msgpack', async () => {
    const { peer } = await openReady();
    const frame = Buffer.from([0, 0, 0, 10, 1, Opcode.Ping, 0, 0, 0, 0, 0, 3, 0xc1, 0xc1]);
    peer.write(frame);
    await peer.waitClosed();
    expect(errorOf(peer.frames[1]).name).toBe('MALFORMED_FRAME');
  });

  it('answers a well-framed but invalid request and stays open', async () => {
    const host = new FakeHost();
    host.dispatch = async (_op, body) => {
      const { parsers } = await import('../../../../client/protocol/messages/index.js');
      return parsers.Ping.request(body);
    };
    const { peer } = open({}, host);
    peer.hello();
    peer.send(Opcode.Ping, { nonce: 'seven' }, 2);
    peer.send(Opcode.Ping, { nonce: 7 }, 3);
    await peer.waitFrames(3);
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'INVALID_REQUEST' });
    expect(errorOf(peer.frames[1]).message).toMatch(/Ping.nonce must be an integer/);
    expect(peer.frames[2]?.body).toEqual({ nonce: 7 });
    expect(peer.isClosed).toBe(false);
  });

  it('closes an idle connection', async () => {
    const { peer } = await openReady({ idleTimeoutMs: 80 });
    await peer.waitClosed();
    expect(errorOf(peer.frames[1])).toMatchObject({ name: 'IDLE_TIMEOUT' });
  });
});

describe('ServerConnection flow control', () => {
  it('stops reading at the in-flight cap and resumes when replies go out', async () => {
    const { peer, host } = await openReady({ maxInFlight: 2 });
    host.hold = true;
    for (let i = 1; i <= 5; i++) peer.send(Opcode.Ping, { nonce: i }, 10 + i);
    await new Promise((r) => setTimeout(r, 50));
    expect(host.started).toEqual([1, 2]);
    host.gates.shift()?.();
    await new Promise((r) => setTimeout(r, 20));
    expect(host.started).toEqual([1, 2, 3]);
    host.hold = false;
    for (const gate of host.gates.splice(0)) gate();
    await peer.waitFrames(6);
    expect(peer.frames.slice(1).map((f) => (f.body as { nonce: number }).nonce).sort()).toEqual([1, 2, 3, 4, 5]);
  });

  it('cuts a client that stops reading once its pending output passes the cap', async () => {
    const host = new FakeHost();
    host.responseBytes = 256 << 10;
    const server = createServer((socket) => new ServerConnection(socket, host, { ...LIMITS, maxPendingBytes: 512 << 10 }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const port = (server.address() as { port: number }).port;
    const socket: Socket = connect({ port, host: '127.0.0.1' });
    await new Promise((r) => socket.once('connect', r));
    const peer = new RawPeer(socket);
    peer.hello();
    await peer.waitFrames(1);
    socket.pause(); // stop reading: the kernel buffers fill, then the broker's queue
    for (let i = 0; i < 60; i++) peer.send(Opcode.Ping, { nonce: i }, i + 2);
    await peer.waitFor(() => host.log.records.some((r) => r.message?.includes('slow consumer')), 10_000);
    socket.resume();
    await peer.waitClosed(10_000);
    expect(peer.frames.length).toBeLessThan(61);
  });

  it('drains: finishes in-flight requests, refuses queued ones, says goodbye', async () => {
    const { peer, host, conn } = await openReady({ maxInFlight: 1 });
    host.hold = true;
    // One write, so both frames are decoded together and the second waits behind the cap.
    peer.write(Buffer.concat([encodeFrame({ opcode: Opcode.Ping, correlationId: 2 }, encodeBody({ nonce: 1 })), encodeFrame({ opcode: Opcode.Ping, correlationId: 3 }, encodeBody({ nonce: 2 }))]));
    await new Promise((r) => setTimeout(r, 30));
    const drained = conn.drain(5_000);
    host.gates.shift()?.();
    await drained;
    await peer.waitClosed();
    const byId = new Map(peer.frames.map((f) => [f.correlationId, f]));
    expect(byId.get(2)?.body).toEqual({ nonce: 1 });
    expect(errorOf(byId.get(3)).name).toBe('SHUTTING_DOWN');
    expect(errorOf(peer.frames.at(-1)).name).toBe('SHUTTING_DOWN');
    expect(peer.frames.at(-1)?.opcode).toBe(Opcode.Connection);
  });
});

describe('ServerConnection regressions', () => {
  it('answers requests already in flight before closing for a bad frame', async () => {
    const { peer, host } = await openReady();
    host.hold = true;
    const badPrefix = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    peer.write(Buffer.concat([encodeFrame({ opcode: Opcode.Ping, correlationId: 2 }, encodeBody({ nonce: 5 })), badPrefix]));
    await new Promise((r) => setTimeout(r, 30));
    host.gates.shift()?.();
    await peer.waitClosed();
    const byId = new Map(peer.frames.map((f) => [f.correlationId, f]));
    expect(byId.get(2)?.body).toEqual({ nonce: 5 });
    expect(errorOf(peer.frames.find((f) => f.opcode === Opcode.Connection)).name).toBe('FRAME_TOO_LARGE');
  });

  it('does not idle-timeout a connection that is busy at its in-flight cap', async () => {
    const { peer, host } = await openReady({ maxInFlight: 1, idleTimeoutMs: 100 });
    host.hold = true;
    peer.send(Opcode.Ping, { nonce: 1 }, 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(peer.isClosed).toBe(false);
    host.gates.shift()?.();
    await peer.waitFrames(2);
    expect(peer.frames[1]?.body).toEqual({ nonce: 1 });
  });

  it('refuses a response-flagged frame before the handshake', async () => {
    const { peer } = open();
    peer.write(encodeFrame({ opcode: Opcode.Ping, flags: FrameFlags.RESPONSE, correlationId: 3 }, encodeBody({})));
    await peer.waitClosed();
    expect(errorOf(peer.frames[0]).name).toBe('HANDSHAKE_REQUIRED');
  });
});
