import { afterEach, describe, expect, it } from 'vitest';
import { Connection, type ConnectionState } from '../../client/connection.js';
import { hasCode, isSluiceError } from '../../client/protocol/errors.js';
import { startBroker } from '../../broker/index.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { MemoryLogger } from '../helpers/logger.js';
import { tempDir } from '../helpers/temp-dir.js';
import { rejection } from '../helpers/async.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function processBroker(): Promise<BrokerProcess> {
  const dir = tempDir();
  const bp = await BrokerProcess.start({ dataDir: dir.path });
  cleanups.push(dir.remove, async () => {
    bp.resume();
    await bp.kill();
  });
  return bp;
}

describe('SDK connection', () => {
  it('completes the handshake and learns the broker limits', async () => {
    const dir = tempDir();
    const broker = await startBroker({ port: 0, dataDir: dir.path, logger: new MemoryLogger(), idleTimeoutMs: 900 });
    cleanups.push(dir.remove, () => broker.close());
    const conn = await Connection.connect({ broker: broker.address, clientId: 'limits' });
    cleanups.push(() => conn.close());
    expect(conn.server?.limits).toEqual({ maxFrameBytes: 8 << 20, maxBatchBytes: 1 << 20, maxInFlight: 128, idleTimeoutMs: 900, heartbeatIntervalMs: 300 });
    // Heartbeats keep a quiet connection alive past the broker's idle timeout.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(conn.state).toBe('connected');
    expect(await conn.request('Ping', { nonce: 3 })).toEqual({ nonce: 3 });
  });

  it('times out a request the broker never answers, and honours AbortSignal', async () => {
    const bp = await processBroker();
    const conn = await Connection.connect({ broker: bp.address, reconnect: false });
    cleanups.push(() => conn.destroy());
    bp.pause();
    const timedOut = await rejection(conn.request('Ping', {}, { timeoutMs: 100 }));
    expect(hasCode(timedOut, 'REQUEST_TIMEOUT')).toBe(true);
    expect((timedOut as { retriable: boolean }).retriable).toBe(true);
    const ac = new AbortController();
    const pending = conn.request('Ping', {}, { signal: ac.signal });
    ac.abort(new Error('user gave up'));
    expect(hasCode(await rejection(pending), 'ABORTED')).toBe(true);
    bp.resume();
    expect(await conn.request('Ping', { nonce: 5 })).toEqual({ nonce: 5 });
  });

  it('reconnects with backoff after the broker restarts', async () => {
    const bp = await processBroker();
    const conn = await Connection.connect({ broker: bp.address, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    cleanups.push(() => conn.close());
    const states: ConnectionState[] = [];
    conn.onStateChange((s) => states.push(s));
    await bp.kill();
    await new Promise((r) => setTimeout(r, 100));
    expect(conn.state).toBe('reconnecting');
    // A request made while the broker is down waits for the new connection.
    const waiting = conn.request('Ping', { nonce: 8 }, { timeoutMs: 10_000 });
    await bp.restart();
    expect(await waiting).toEqual({ nonce: 8 });
    expect(states).toContain('reconnecting');
    expect(states.at(-1)).toBe('connected');
  });

  it('fails requests on the wire with a retriable error when the connection drops', async () => {
    const bp = await processBroker();
    const conn = await Connection.connect({ broker: bp.address, reconnect: false });
    bp.pause();
    const inFlight = rejection(conn.request('Ping', {}));
    await new Promise((r) => setTimeout(r, 50));
    await bp.kill();
    const err = await inFlight;
    expect(isSluiceError(err) && err.retriable).toBe(true);
    expect(conn.state).toBe('closed');
  });

  it('gives up connecting after connectTimeoutMs with a clear error', async () => {
    const err = await rejection(Connection.connect({ broker: '127.0.0.1:1', connectTimeoutMs: 300 }));
    expect(hasCode(err, 'CONNECTION_CLOSED')).toBe(true);
    expect((err as Error).message).toMatch(/could not connect to 127.0.0.1:1 within 300 ms/);
  });

  it('close() waits for in-flight requests; destroy() fails them', async () => {
    const bp = await processBroker();
    const a = await Connection.connect({ broker: bp.address });
    const b = await Connection.connect({ broker: bp.address });
    bp.pause();
    const graceful = a.request('Ping', { nonce: 1 });
    const abrupt = b.request('Ping', { nonce: 2 });
    await new Promise((r) => setTimeout(r, 30));
    const closing = a.close();
    b.destroy();
    expect(hasCode(await rejection(abrupt), 'CONNECTION_CLOSED')).toBe(true);
    expect(hasCode(await rejection(a.request('Ping', {})), 'CLIENT_CLOSED')).toBe(true);
    bp.resume();
    expect(await graceful).toEqual({ nonce: 1 });
    await closing;
    expect(a.state).toBe('closed');
  });
});

describe('broker process shutdown', () => {
  it('SIGTERM drains in-flight requests, says goodbye, and exits 0', async () => {
    const bp = await processBroker();
    const conns = await Promise.all([1, 2, 3].map(() => Connection.connect({ broker: bp.address, reconnect: false })));
    const results = conns.flatMap((c, i) => Array.from({ length: 50 }, (_, j) => c.request('Ping', { nonce: i * 100 + j }).then((r) => ({ ok: r }), (e: unknown) => ({ err: e }))));
    const exit = bp.stop('SIGTERM');
    const settled = await Promise.all(results);
    expect(await exit).toEqual({ code: 0, signal: null });
    for (const r of settled) {
      // Every request is either answered or failed with a retriable error: none vanishes.
      if ('err' in r) expect(isSluiceError(r.err) && r.err.retriable).toBe(true);
      else expect(r.ok).toHaveProperty('nonce');
    }
    for (const c of conns) expect(c.state).toBe('closed');
  });
});
