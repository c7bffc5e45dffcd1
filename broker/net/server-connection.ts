import type { Duplex } from 'node:stream';
import { decodeBody, encodeBody } from '../../client/protocol/body.js';
import { SluiceError, isSluiceError, type ErrorName } from '../../client/protocol/errors.js';
import { FrameDecoder, FrameFlags, PROTOCOL_VERSION, encodeFrame, type Frame } from '../../client/protocol/frame.js';
import { parseHelloRequest, type HelloResponse } from '../../client/protocol/messages/hello.js';
import { toErrorBody } from '../../client/protocol/messages/error.js';
import { Opcode } from '../../client/protocol/opcodes.js';
import type { Logger } from '../logger.js';
import { Outbound } from './outbound.js';

/** What a request handler may know of the connection it serves. */
export interface Session {
  readonly id: number;
  readonly clientId: string;
  readonly remoteAddress: string | undefined;
  /** Sends a server-initiated frame (correlation id 0); false if the connection cannot take it. */
  push(opcode: number, body: unknown): boolean;
}

export interface RequestContext {
  readonly session: Session;
  /** Aborted when the connection closes, so parked requests (long polls) can give up. */
  readonly signal: AbortSignal;
}

/** The broker core as a connection sees it: no sockets cross this line. */
export interface RequestHost {
  readonly log: Logger;
  hello(): HelloResponse;
  /** True when `opcode` names a request the broker serves after the handshake. */
  serves(opcode: number): boolean;
  /** Parses and handles one request; resolves to the response body or throws a SluiceError. */
  dispatch(opcode: number, body: unknown, ctx: RequestContext): Promise<unknown>;
}

export interface ConnectionLimits {
  readonly handshakeMaxFrameBytes: number;
  readonly maxFrameBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxInFlight: number;
  readonly maxPendingBytes: number;
}

/** Errors after which the byte stream can no longer be trusted: answer, then close. */
const FATAL: ReadonlySet<ErrorName> = new Set([
  'MALFORMED_FRAME',
  'FRAME_TOO_LARGE',
  'UNSUPPORTED_VERSION',
  'UNKNOWN_OPCODE',
  'HANDSHAKE_REQUIRED',
]);

/** How long a closing connection waits for the peer to read its last frame before destroying. */
const LINGER_MS = 2_000;

let nextSessionId = 1;

/**
 * One client connection on any duplex stream: framing, handshake, limits and backpressure.
 * It knows the wire, not what requests mean; those go to the RequestHost.
 */
export class ServerConnection implements Session {
  readonly id = nextSessionId++;
  readonly remoteAddress: string | undefined;
  #clientId = '';
  readonly #stream: Duplex;
  readonly #host: RequestHost;
  readonly #limits: ConnectionLimits;
  readonly #decoder: FrameDecoder;
  readonly #out: Outbound;
  readonly #abort = new AbortController();
  readonly #queue: Frame[] = [];
  #state: 'handshake' | 'open' | 'draining' | 'closed' = 'handshake';
  #inFlight = 0;
  #paused = false;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #idle: (() => void) | undefined;
  readonly #closed: Promise<void>;

  constructor(stream: Duplex, host: RequestHost, limits: ConnectionLimits, remoteAddress?: string) {
    this.#stream = stream;
    this.#host = host;
    this.#limits = limits;
    this.remoteAddress = remoteAddress;
    this.#decoder = new FrameDecoder(limits.handshakeMaxFrameBytes);
    this.#out = new Outbound(stream, limits.maxPendingBytes, (pending) => {
      host.log.warn({ session: this.id, pending }, 'client stopped reading; disconnecting slow consumer');
      this.#destroy(new SluiceError('SLOW_CONSUMER'));
    });
    this.#closed = new Promise((resolve) => stream.once('close', resolve));
    stream.once('close', () => this.#onClosed());
    stream.on('error', (err) => host.log.debug({ session: this.id, err }, 'connection error'));
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#handshakeTimer = setTimeout(() => this.#fail(new SluiceError('HANDSHAKE_TIMEOUT')), limits.handshakeTimeoutMs);
    this.#resetIdle();
  }

  get clientId(): string {
    return this.#clientId;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  push(opcode: number, body: unknown): boolean {
    if (this.#state === 'closed') return false;
    return this.#out.write(encodeFrame({ opcode, correlationId: 0 }, encodeBody(body)));
  }

  /**
   * Graceful close: stop reading, answer what is in flight, tell the client the broker is going
   * away, then end the stream. After `timeoutMs` the connection is cut regardless.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'draining';
    this.#stream.pause();
    for (const frame of this.#queue.splice(0)) this.#replyError(frame, new SluiceError('SHUTTING_DOWN'));
    const deadline = setTimeout(() => this.#destroy(new SluiceError('SHUTTING_DOWN')), timeoutMs);
    try {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
      this.#sendConnectionError(new SluiceError('SHUTTING_DOWN'));
      this.#end();
      await this.#closed;
    } finally {
      clearTimeout(deadline);
    }
  }

  /** Abrupt close: no goodbye, in-flight replies are dropped. */
  destroy(): void {
    this.#destroy(new SluiceError('SHUTTING_DOWN'));
  }

  #onData(chunk: Buffer): void {
    if (this.#state === 'closed') return;
    this.#resetIdle();
    try {
      this.#decoder.feed(chunk, (frame) => {
        if (this.#isClosed()) return;
        if (this.#paused || this.#queue.length > 0) this.#queue.push(frame);
        else this.#handle(frame);
      });
    } catch (err) {
      this.#fail(asSluiceError(err));
    }
  }

  #handle(frame: Frame): void {
    if (frame.version !== PROTOCOL_VERSION) {
      this.#failFrame(frame, new SluiceError('UNSUPPORTED_VERSION', `frame version ${frame.version} is not supported; this broker speaks ${PROTOCOL_VERSION}`, { details: { supported: [PROTOCOL_VERSION] } }));
      return;
    }
    if (this.#state === 'handshake') {
      this.#handshake(frame);
      return;
    }
    // Replies to server-initiated frames carry no request; receiving them counts as activity only.
    if ((frame.flags & FrameFlags.RESPONSE) !== 0) return;
    if (this.#state === 'draining') {
      this.#replyError(frame, new SluiceError('SHUTTING_DOWN'));
      return;
    }
    if (frame.opcode === Opcode.Hello) {
      this.#failFrame(frame, new SluiceError('HANDSHAKE_REQUIRED', 'Hello was already received on this connection'));
      return;
    }
    if (!this.#host.serves(frame.opcode)) {
      this.#failFrame(frame, new SluiceError('UNKNOWN_OPCODE', `opcode 0x${frame.opcode.toString(16).padStart(2, '0')} is not a request this broker serves`));
      return;
    }
    let body: unknown;
    try {
      body = decodeBody(frame.body);
    } catch (err) {
      this.#failFrame(frame, asSluiceError(err));
      return;
    }
    this.#inFlight++;
    if (this.#inFlight >= this.#limits.maxInFlight) this.#pause();
    this.#host.dispatch(frame.opcode, body, { session: this, signal: this.#abort.signal }).then(
      (response) => this.#settle(frame, response, undefined),
      (err: unknown) => this.#settle(frame, undefined, err),
    );
  }

  #handshake(frame: Frame): void {
    if (frame.opcode !== Opcode.Hello || (frame.flags & FrameFlags.RESPONSE) !== 0) {
      this.#failFrame(frame, new SluiceError('HANDSHAKE_REQUIRED', `the first frame must be a Hello (0x01) request, got opcode 0x${frame.opcode.toString(16).padStart(2, '0')}`));
      return;
    }
    try {
      const hello = parseHelloRequest(decodeBody(frame.body));
      if (hello.version !== PROTOCOL_VERSION) {
        throw new SluiceError('UNSUPPORTED_VERSION', `client protocol version ${hello.version} is not supported; this broker speaks ${PROTOCOL_VERSION}`, { details: { supported: [PROTOCOL_VERSION] } });
      }
      this.#clientId = hello.clientId;
    } catch (err) {
      // A bad Hello leaves nothing to talk about: every handshake error closes.
      const e = asSluiceError(err);
      this.#replyError(frame, e);
      this.#closeAfterError(e);
      return;
    }
    clearTimeout(this.#handshakeTimer);
    this.#state = 'open';
    this.#decoder.maxFrameBytes = this.#limits.maxFrameBytes;
    this.#reply(frame, this.#host.hello());
    this.#host.log.debug({ session: this.id, clientId: this.#clientId, remote: this.remoteAddress }, 'client connected');
  }

  #settle(frame: Frame, response: unknown, err: unknown): void {
    this.#inFlight--;
    if (err === undefined) this.#reply(frame, response);
    else {
      if (!isSluiceError(err)) this.#host.log.error({ session: this.id, opcode: frame.opcode, err }, 'request handler failed');
      this.#replyError(frame, asSluiceError(err));
    }
    if (this.#inFlight === 0 && this.#idle !== undefined) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle();
    }
    if (this.#paused && this.#inFlight < this.#limits.maxInFlight) this.#resume();
  }

  #reply(frame: Frame, response: unknown): void {
    this.#out.write(encodeFrame({ opcode: frame.opcode, flags: FrameFlags.RESPONSE, correlationId: frame.correlationId }, encodeBody(response ?? null)));
  }

  #replyError(frame: Frame, err: SluiceError): void {
    const flags = FrameFlags.RESPONSE | FrameFlags.ERROR;
    this.#out.write(encodeFrame({ opcode: frame.opcode, flags, correlationId: frame.correlationId }, encodeBody(toErrorBody(err))));
  }

  #sendConnectionError(err: SluiceError): void {
    const flags = FrameFlags.RESPONSE | FrameFlags.ERROR;
    this.#out.write(encodeFrame({ opcode: Opcode.Connection, flags, correlationId: 0 }, encodeBody(toErrorBody(err))));
  }

  /** A bad frame we could parse the header of: answer that request, then close. */
  #failFrame(frame: Frame, err: SluiceError): void {
    if (!FATAL.has(err.code)) {
      this.#replyError(frame, err);
      return;
    }
    this.#replyError(frame, err);
    this.#closeAfterError(err);
  }

  /** A connection-level failure (no frame to answer): send a connection error, then close. */
  #fail(err: SluiceError): void {
    if (this.#state === 'closed') return;
    this.#sendConnectionError(err);
    this.#closeAfterError(err);
  }

  /**
   * Stops reading at once, but lets requests already being handled send their replies before
   * the stream ends: a bad frame must not cost the client the answers to its good ones.
   */
  #closeAfterError(err: SluiceError): void {
    this.#host.log.info({ session: this.id, code: err.code, reason: err.message, remote: this.remoteAddress }, 'closing connection');
    this.#state = 'closed';
    this.#queue.length = 0;
    this.#stream.pause();
    if (this.#inFlight === 0) this.#end();
    else {
      this.#idle = () => this.#end();
      setTimeout(() => this.#end(), LINGER_MS).unref();
    }
  }

  #end(): void {
    this.#state = 'closed';
    if (this.#stream.writableEnded) return;
    this.#stream.end();
    // A peer that never reads would keep the socket half-open forever.
    setTimeout(() => this.#stream.destroy(), LINGER_MS).unref();
  }

  #destroy(err: SluiceError): void {
    if (this.#stream.destroyed) return;
    this.#host.log.debug({ session: this.id, code: err.code }, 'destroying connection');
    this.#state = 'closed';
    this.#stream.destroy();
  }

  /** A method, not an inline check, because handling a frame may close the connection. */
  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  #pause(): void {
    this.#paused = true;
    this.#stream.pause();
  }

  #resume(): void {
    this.#paused = false;
    while (this.#queue.length > 0 && !this.#paused && !this.#isClosed()) {
      this.#handle(this.#queue.shift() as Frame);
    }
    if (!this.#paused && this.#state === 'open') this.#stream.resume();
  }

  #resetIdle(): void {
    if (this.#idleTimer !== undefined) {
      this.#idleTimer.refresh();
      return;
    }
    this.#idleTimer = setTimeout(() => {
      // A connection with requests in flight is busy, not idle: it may be paused at the
      // in-flight cap (so its pings go unread) or waiting on a long poll.
      if (this.#inFlight > 0) this.#idleTimer?.refresh();
      else this.#fail(new SluiceError('IDLE_TIMEOUT', `no frame received for ${this.#limits.idleTimeoutMs} ms`));
    }, this.#limits.idleTimeoutMs);
  }

  #onClosed(): void {
    this.#state = 'closed';
    clearTimeout(this.#handshakeTimer);
    clearTimeout(this.#idleTimer);
    this.#abort.abort(new SluiceError('CONNECTION_CLOSED'));
    this.#queue.length = 0;
    if (this.#idle !== undefined) this.#idle();
  }
}

function asSluiceError(err: unknown): SluiceError {
  return isSluiceError(err) ? err : new SluiceError('UNKNOWN', undefined, { cause: err });
}
