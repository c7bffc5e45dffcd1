import { connect as tcpConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeBody, encodeBody } from './protocol/body.js';
import { SluiceError, isSluiceError } from './protocol/errors.js';
import { FRAME_OVERHEAD, FrameDecoder, FrameFlags, PROTOCOL_VERSION, encodeFrame, type Frame } from './protocol/frame.js';
import { fromErrorBody } from './protocol/messages/error.js';
import { parsers, type ApiName, type HelloResponse, type RequestOf, type ResponseOf } from './protocol/messages/index.js';
import { Opcode } from './protocol/opcodes.js';
import { backoffDelay, sleep } from './internal/backoff.js';
import { DEFAULT_BROKER, parseBrokerAddress, type BrokerAddress } from './internal/broker-address.js';
import { deferred, type Deferred } from './internal/deferred.js';

export interface ConnectionOptions {
  /** `host:port`. Default: env SLUICE_BROKER, else 127.0.0.1:7420. */
  broker?: string;
  /** Sent in Hello; shows up in broker logs. Default `sluice-PID`. */
  clientId?: string;
  /** Per-request timeout unless a request gives its own. Default 30 s. */
  requestTimeoutMs?: number;
  /** How long `connect()` keeps trying before it gives up. Default 10 s. */
  connectTimeoutMs?: number;
  /** Reconnect after a lost connection, with exponential backoff and full jitter. Default on. */
  reconnect?: false | { initialDelayMs?: number; maxDelayMs?: number };
  /** Largest response frame accepted. Default 256 MiB. */
  maxFrameBytes?: number;
  /** Opens the byte stream; defaults to TCP. Tests pass in-memory pairs or proxies. */
  transport?: (address: BrokerAddress) => Duplex;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the connection's request timeout, e.g. for a long poll. */
  timeoutMs?: number;
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closing' | 'closed';

type Api = Exclude<ApiName, 'Hello'>;

interface Pending {
  readonly api: ApiName;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

interface Config {
  readonly address: BrokerAddress;
  readonly clientId: string;
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnect: false | { readonly initialDelayMs: number; readonly maxDelayMs: number };
  readonly maxFrameBytes: number;
  readonly transport: (address: BrokerAddress) => Duplex;
}

/**
 * One multiplexed connection to a broker: requests matched to replies by correlation id,
 * per-request timeouts and AbortSignals, heartbeats, and reconnection with backoff. Requests that
 * were on the wire when a connection dropped fail with CONNECTION_CLOSED (retriable): only the
 * caller knows whether resending is safe. Requests made while reconnecting wait for the new
 * connection, within their timeout.
 */
export class Connection {
  readonly #config: Config;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  readonly #pushListeners = new Map<number, Set<(body: unknown) => void>>();
  #state: ConnectionState = 'connecting';
  #stream: Duplex | undefined;
  #ready: Deferred<void> = deferred();
  #nextId = 1;
  #server: HelloResponse | undefined;
  #lastError: SluiceError | undefined;
  #lastSent = 0;
  /** The stream corked for this tick's writes, if any. */
  #corked: Duplex | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #loop: Promise<void> | undefined;
  /** Set by close() while it waits for the last in-flight request to settle. */
  #onIdle: (() => void) | undefined;

  private constructor(config: Config) {
    this.#config = config;
    this.#ready.promise.catch(() => undefined);
  }

  /** Connects and completes the handshake, retrying within `connectTimeoutMs`. */
  static async connect(options: ConnectionOptions = {}): Promise<Connection> {
    const conn = new Connection(parseConnectionOptions(options));
    conn.#loop = conn.#run();
    const timer = setTimeout(() => {
      conn.destroy(new SluiceError('CONNECTION_CLOSED', `could not connect to ${formatAddress(conn.#config.address)} within ${conn.#config.connectTimeoutMs} ms${conn.#lastError ? `: ${conn.#lastError.message}` : ''}`, { cause: conn.#lastError }));
    }, conn.#config.connectTimeoutMs);
    try {
      await conn.#ready.promise;
      return conn;
    } finally {
      clearTimeout(timer);
    }
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** What the broker said in its Hello reply on the current (or last) connection. */
  get server(): HelloResponse | undefined {
    return this.#server;
  }

  /** Subscribes to state changes; returns the unsubscribe function. */
  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Subscribes to frames the broker sends on its own (e.g. Deliver, opcode 0x42); returns the
   * unsubscribe function. Bodies arrive decoded but unchecked: the listener parses them.
   */
  onPush(opcode: number, listener: (body: unknown) => void): () => void {
    let set = this.#pushListeners.get(opcode);
    if (set === undefined) {
      set = new Set();
      this.#pushListeners.set(opcode, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  async request<K extends Api>(api: K, body: RequestOf<K>, options: RequestOptions = {}): Promise<ResponseOf<K>> {
    const timeoutMs = options.timeoutMs ?? this.#config.requestTimeoutMs;
    const { signal } = options;
    if (this.#state === 'closing' || this.#state === 'closed') throw new SluiceError('CLIENT_CLOSED', 'connection is closed');
    if (signal?.aborted) throw abortError(signal);
    const result = deferred<unknown>();
    let id = 0;
    const timer = setTimeout(() => result.reject(new SluiceError('REQUEST_TIMEOUT', `${api} got no reply within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => result.reject(abortError(signal as AbortSignal));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (this.#state !== 'connected') await Promise.race([this.#ready.promise, result.promise]);
      id = this.#send(api, body, result);
      return (await result.promise) as ResponseOf<K>;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      this.#pending.delete(id);
      if (this.#pending.size === 0) this.#onIdle?.();
    }
  }

  /** Graceful: refuse new requests, let in-flight ones finish, then close. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#setState('closing');
    this.#ready.reject(new SluiceError('CLIENT_CLOSED', 'connection closed by the client'));
    if (this.#pending.size > 0) await new Promise<void>((resolve) => (this.#onIdle = resolve));
    this.#shutdown(new SluiceError('CLIENT_CLOSED', 'connection closed by the client'));
    await this.#loop;
  }

  /** Abrupt: fail everything in flight with `err` (default CONNECTION_CLOSED) and cut the stream. */
  destroy(err: SluiceError = new SluiceError('CONNECTION_CLOSED', 'connection destroyed')): void {
    if (this.#state === 'closed') return;
    this.#shutdown(err);
  }

  #shutdown(err: SluiceError): void {
    this.#setState('closed');
    this.#ready.reject(err);
    this.#failPending(err);
    this.#stream?.destroy();
  }

  #send(api: ApiName, body: unknown, result: Deferred<unknown>): number {
    const stream = this.#stream;
    if (stream === undefined || this.#state !== 'connected') throw new SluiceError('CONNECTION_CLOSED', 'not connected');
    const encoded = encodeBody(body);
    const size = FRAME_OVERHEAD + encoded.length;
    const limit = this.#server?.limits.maxFrameBytes ?? Infinity;
    if (size > limit) {
      // Sending it would only get the connection closed; fail this request alone instead.
      throw new SluiceError('FRAME_TOO_LARGE', `${api} request of ${size} bytes exceeds the broker's limit of ${limit} bytes`, { details: { size, limit } });
    }
    const id = this.#allocateId();
    this.#pending.set(id, { api, resolve: result.resolve, reject: result.reject });
    this.#write(stream, encodeFrame({ opcode: Opcode[api], correlationId: id }, encoded));
    this.#lastSent = Date.now();
    return id;
  }

  /**
   * Every request frame goes out here: the frames of one tick are coalesced into one write
   * syscall (cork now, uncork on the next tick), e.g. a Settle and the Credit it frees, or the
   * requests a producer sends in one go.
   */
  #write(stream: Duplex, frame: Buffer): void {
    if (this.#corked !== stream) {
      this.#corked = stream;
      stream.cork();
      process.nextTick(() => {
        if (this.#corked === stream) this.#corked = undefined;
        stream.uncork();
      });
    }
    stream.write(frame);
  }

  #allocateId(): number {
    // u32 on the wire; 0 is reserved for server-initiated frames.
    do {
      this.#nextId = (this.#nextId + 1) >>> 0;
    } while (this.#nextId === 0 || this.#pending.has(this.#nextId));
    return this.#nextId;
  }

  /** The connection's life: connect, serve until the stream drops, back off, repeat. */
  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#isShut()) {
      try {
        const closed = await this.#establish();
        attempt = 0;
        await closed;
      } catch (err) {
        this.#lastError = isSluiceError(err) ? err : new SluiceError('CONNECTION_CLOSED', (err as Error).message, { cause: err });
        if (isSluiceError(err) && !err.retriable && err.code !== 'CONNECTION_CLOSED') {
          this.#shutdown(err);
          return;
        }
      }
      this.#failPending(this.#lastError ?? new SluiceError('CONNECTION_CLOSED', 'connection lost'));
      if (this.#isShut()) return;
      if (this.#config.reconnect === false) {
        this.#shutdown(this.#lastError ?? new SluiceError('CONNECTION_CLOSED', 'connection lost'));
        return;
      }
      if (this.#state === 'connected') {
        this.#ready = deferred();
        this.#ready.promise.catch(() => undefined);
      }
      this.#setState(this.#server === undefined ? 'connecting' : 'reconnecting');
      await sleep(backoffDelay(attempt++, this.#config.reconnect));
    }
  }

  /** Opens a stream and completes the handshake; resolves to a promise of the stream's end. */
  async #establish(): Promise<Promise<void>> {
    const stream = this.#config.transport(this.#config.address);
    this.#stream = stream;
    const decoder = new FrameDecoder(this.#config.maxFrameBytes);
    const closed = deferred<void>();
    const hello = deferred<unknown>();
    stream.on('error', (err) => {
      this.#lastError = new SluiceError('CONNECTION_CLOSED', `connection to ${formatAddress(this.#config.address)} failed: ${err.message}`, { cause: err });
    });
    stream.once('close', () => {
      clearInterval(this.#heartbeat);
      hello.reject(this.#lastError ?? new SluiceError('CONNECTION_CLOSED', 'connection closed during handshake'));
      closed.resolve();
    });
    stream.on('data', (chunk: Buffer) => {
      try {
        decoder.feed(chunk, (frame) => this.#onFrame(frame, hello));
      } catch (err) {
        this.#lastError = isSluiceError(err) ? err : new SluiceError('MALFORMED_FRAME', String(err));
        stream.destroy();
      }
    });
    this.#lastError = undefined;
    stream.write(encodeFrame({ opcode: Opcode.Hello, correlationId: this.#allocateId() }, encodeBody({ version: PROTOCOL_VERSION, clientId: this.#config.clientId })));
    const timer = setTimeout(() => hello.reject(new SluiceError('HANDSHAKE_TIMEOUT', 'broker did not answer Hello')), this.#config.connectTimeoutMs);
    try {
      this.#server = parsers.Hello.response(await hello.promise);
    } catch (err) {
      stream.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    if (this.#isShut()) {
      stream.destroy();
      return closed.promise;
    }
    this.#startHeartbeat(this.#server.limits.heartbeatIntervalMs);
    this.#setState('connected');
    this.#ready.resolve();
    return closed.promise;
  }

  #onFrame(frame: Frame, hello: Deferred<unknown>): void {
    if (frame.version !== PROTOCOL_VERSION) {
      throw new SluiceError('UNSUPPORTED_VERSION', `broker sent a frame of protocol version ${frame.version}; this client speaks ${PROTOCOL_VERSION}`);
    }
    const isError = (frame.flags & FrameFlags.ERROR) !== 0;
    if (frame.opcode === Opcode.Connection) {
      // The broker is about to close this connection and says why.
      if (isError) this.#lastError = fromErrorBody(decodeBody(frame.body));
      return;
    }
    if ((frame.flags & FrameFlags.RESPONSE) === 0) {
      const listeners = this.#pushListeners.get(frame.opcode);
      if (listeners === undefined || listeners.size === 0) return;
      const body = decodeBody(frame.body);
      for (const listener of listeners) listener(body);
      return;
    }
    if (frame.opcode === Opcode.Hello) {
      if (isError) hello.reject(fromErrorBody(decodeBody(frame.body)));
      else hello.resolve(decodeBody(frame.body));
      return;
    }
    const pending = this.#pending.get(frame.correlationId);
    if (pending === undefined) return; // timed out or aborted already
    this.#pending.delete(frame.correlationId);
    try {
      if (isError) pending.reject(fromErrorBody(decodeBody(frame.body)));
      else pending.resolve(parsers[pending.api].response(decodeBody(frame.body)));
    } catch (err) {
      pending.reject(err);
    }
  }

  #startHeartbeat(intervalMs: number): void {
    clearInterval(this.#heartbeat);
    this.#lastSent = Date.now();
    this.#heartbeat = setInterval(() => {
      if (this.#state !== 'connected' || Date.now() - this.#lastSent < intervalMs) return;
      const stream = this.#stream;
      // A broker that cannot answer a ping within two intervals is gone: cut and reconnect.
      this.request('Ping', {}, { timeoutMs: intervalMs * 2 }).catch((err: unknown) => {
        if (this.#stream === stream && isSluiceError(err) && err.code === 'REQUEST_TIMEOUT') stream?.destroy();
      });
    }, Math.max(10, Math.floor(intervalMs / 2)));
    this.#heartbeat.unref();
  }

  /** A method, not an inline check: the state changes across awaits TypeScript cannot see. */
  #isShut(): boolean {
    return this.#state === 'closed' || this.#state === 'closing';
  }

  #failPending(err: SluiceError): void {
    for (const pending of this.#pending.values()) pending.reject(err);
    this.#pending.clear();
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    for (const listener of this.#listeners) listener(state);
  }
}

function abortError(signal: AbortSignal): SluiceError {
  return new SluiceError('ABORTED', 'request aborted', { cause: signal.reason });
}

function formatAddress(a: BrokerAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function parseConnectionOptions(o: ConnectionOptions): Config {
  const reconnect = o.reconnect === false ? false : { initialDelayMs: o.reconnect?.initialDelayMs ?? 100, maxDelayMs: o.reconnect?.maxDelayMs ?? 5_000 };
  return Object.freeze({
    address: parseBrokerAddress(o.broker ?? process.env['SLUICE_BROKER'] ?? DEFAULT_BROKER),
    clientId: o.clientId ?? `sluice-${process.pid}`,
    requestTimeoutMs: positive(o.requestTimeoutMs, 30_000, 'requestTimeoutMs'),
    connectTimeoutMs: positive(o.connectTimeoutMs, 10_000, 'connectTimeoutMs'),
    reconnect,
    maxFrameBytes: positive(o.maxFrameBytes, 256 << 20, 'maxFrameBytes'),
    transport: o.transport ?? ((a: BrokerAddress) => tcpConnect({ host: a.host, port: a.port, noDelay: true })),
  });
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new SluiceError('INVALID_CONFIG', `connection option ${name} must be a positive number, got ${value}`);
  return value;
}
