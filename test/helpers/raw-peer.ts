import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeBody, encodeBody } from '../../client/protocol/body.js';
import { FrameDecoder, FrameFlags, PROTOCOL_VERSION, encodeFrame, type Frame } from '../../client/protocol/frame.js';
import { Opcode } from '../../client/protocol/opcodes.js';

export interface DecodedFrame extends Omit<Frame, 'body'> {
  readonly body: unknown;
  readonly isError: boolean;
}

/**
 * A protocol peer with no SDK logic: writes raw bytes, collects decoded frames, and notices when
 * the other side closes. Tests use it to misbehave on purpose.
 */
export class RawPeer {
  readonly frames: DecodedFrame[] = [];
  readonly closed: Promise<void>;
  readonly #stream: Duplex;
  readonly #decoder = new FrameDecoder(1 << 30);
  #waiters: Array<() => void> = [];
  #isClosed = false;

  constructor(stream: Duplex) {
    this.#stream = stream;
    stream.on('data', (chunk: Buffer) => {
      this.#decoder.feed(chunk, (f) => {
        this.frames.push({ ...f, body: decodeBody(f.body), isError: (f.flags & FrameFlags.ERROR) !== 0 });
      });
      this.#notify();
    });
    stream.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      stream.once('close', () => {
        this.#isClosed = true;
        this.#notify();
        resolve();
      }),
    );
  }

  static tcp(port: number, host = '127.0.0.1'): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host }, () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Resolves once `predicate` holds, re-checking on every frame and every 10 ms. */
  async waitFor(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  write(bytes: Uint8Array): void {
    if (!this.#stream.destroyed) this.#stream.write(bytes);
  }

  send(opcode: number, body: unknown, correlationId: number, version = PROTOCOL_VERSION): void {
    this.write(encodeFrame({ opcode, correlationId, version }, encodeBody(body)));
  }

  hello(clientId = 'raw', correlationId = 1): void {
    this.send(Opcode.Hello, { version: PROTOCOL_VERSION, clientId }, correlationId);
  }

  /** Waits until `count` frames have arrived (or the peer closed), up to `timeoutMs`. */
  async waitFrames(count: number, timeoutMs = 5_000): Promise<DecodedFrame[]> {
    await this.#until(() => this.frames.length >= count || this.#isClosed, timeoutMs);
    return this.frames;
  }

  async waitClosed(timeoutMs = 5_000): Promise<void> {
    await this.#until(() => this.#isClosed, timeoutMs);
  }

  destroy(): void {
    this.#stream.destroy();
  }

  async #until(done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the broker');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** The error body of a frame, for assertions. */
export function errorOf(frame: DecodedFrame | undefined): { name: string; code: number; message: string } {
  if (frame === undefined || !frame.isError) throw new Error(`expected an error frame, got ${JSON.stringify(frame)}`);
  return frame.body as { name: string; code: number; message: string };
}
