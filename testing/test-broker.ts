/**
 * An in-process broker for a service's own tests, with fault knobs: duplicate a delivery, drop
 * an ack, expire the leases of a subscription, crash (a power cut) and restart. The service
 * connects to `address` with the ordinary SDK and records what its handler did; the checker
 * (checker.ts) then says whether anything was lost, duplicated or read out of order.
 *
 * The faults are the ones a push or poll consumer meets in production, made to happen on cue:
 * - a duplicate delivery is a real redelivery: the lease of the delivered message is ended as
 *   soon as it is sent, so the broker delivers it again (attempt + 1) while the first copy is
 *   still being handled, and the first copy's ack gets STALE_ACK;
 * - a dropped ack reaches the broker as "in progress" instead: the client was told it settled,
 *   the broker keeps the delivery in flight and redelivers it when its lease runs out (or at
 *   once with `expireLeases`), as after an ack lost with a connection;
 * - a crash cuts the power of the storage layer (PowerCutIO: writes not yet fsynced are lost),
 *   drops every connection and abandons the broker without a graceful close, then opens the
 *   data directory again on the same port, as a restarted process would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { Broker } from '../broker/broker.js';
import type { BrokerOptions } from '../broker/config.js';
import { PowerCutIO } from '../broker/log/power-cut-io.js';
import { TcpListener } from '../broker/net/listener.js';
import { decodeBody, encodeBody } from '../client/protocol/body.js';
import { encodeFrame, FrameDecoder, FrameFlags, type Frame } from '../client/protocol/frame.js';
import { parseDeliverPush, SettleOp } from '../client/protocol/messages/push.js';
import { Opcode } from '../client/protocol/opcodes.js';

export interface TestBrokerOptions extends Omit<BrokerOptions, 'port' | 'dataDir'> {
  /** Data directory; default a fresh temp directory, removed by `close()`. */
  dataDir?: string;
  /** TCP port; default 0 (a free one). Kept across crashes. */
  port?: number;
}

export interface CrashOptions {
  /**
   * Keep a random part of each file's unsynced tail, as a power cut during writeback does
   * (default false: unsynced bytes are lost whole). Recovery must cut the torn batch.
   */
  tornTails?: boolean;
}

/** What the knobs did so far, for assertions and reports. */
export interface FaultCounts {
  duplicatedDeliveries: number;
  droppedAcks: number;
  expiredLeases: number;
  crashes: number;
}

// Frames the interceptor may see are checked by the broker itself; this only splits them.
const ANY_FRAME = 2 ** 31;

export class TestBroker {
  readonly dataDir: string;
  readonly #options: BrokerOptions;
  readonly #ownsDir: boolean;
  readonly #sockets = new Set<Socket>();
  readonly #counts: FaultCounts = { duplicatedDeliveries: 0, droppedAcks: 0, expiredLeases: 0, crashes: 0 };
  #listener!: TcpListener;
  #crashing: Promise<void> | undefined;
  #closed = false;
  #broker: Broker | undefined;
  #io = new PowerCutIO();
  #duplicates = 0;
  #dropAcks = 0;

  private constructor(options: TestBrokerOptions) {
    this.#ownsDir = options.dataDir === undefined;
    this.dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'sluice-test-broker-'));
    const { port: _port, dataDir: _dir, ...rest } = options;
    this.#options = { logLevel: 'warn', ...rest, dataDir: this.dataDir, port: 0 };
  }

  /** Opens the broker and listens on 127.0.0.1 (or `host`). */
  static async start(options: TestBrokerOptions = {}): Promise<TestBroker> {
    const tb = new TestBroker(options);
    tb.#broker = await Broker.open(tb.#options, { io: tb.#io });
    try {
      tb.#listener = await TcpListener.listen(
        { handleConnection: (stream) => tb.#accept(stream as Socket) },
        tb.#options.host ?? '127.0.0.1',
        options.port ?? 0,
      );
    } catch (err) {
      await tb.#broker.close();
      throw err;
    }
    return tb;
  }

  get port(): number {
    return this.#listener.port;
  }

  /** `host:port` for the SDK's `broker` option or the CLI's `--broker`. */
  get address(): string {
    return `${this.#listener.host}:${this.#listener.port}`;
  }

  /** The broker running now (a new instance after each crash). */
  get broker(): Broker {
    if (this.#broker === undefined) throw new Error('the test broker is restarting');
    return this.#broker;
  }

  /** What the knobs did so far (a copy). */
  get counts(): FaultCounts {
    return { ...this.#counts };
  }

  /** The next `count` push deliveries are each delivered a second time (a redelivery, attempt + 1). */
  duplicateDeliveries(count = 1): void {
    this.#duplicates += count;
  }

  /** The next `count` acks are lost: the broker redelivers those messages when their leases run out. */
  dropAcks(count = 1): void {
    this.#dropAcks += count;
  }

  /** Ends every in-flight lease of `subscription` now: each is redelivered. Returns how many. */
  expireLeases(subscription: string): number {
    const n = this.broker.expireLeases(subscription);
    this.#counts.expiredLeases += n;
    return n;
  }

  /**
   * Pulls the plug and starts again on the same data directory and port: connections drop,
   * whatever was not fsynced is lost (under the default `fsync=always`, nothing acknowledged),
   * push state not yet saved is lost (unsettled deliveries come again). Resolves once the new
   * broker accepts connections.
   */
  async crash(options: CrashOptions = {}): Promise<void> {
    if (this.#crashing !== undefined) throw new Error('a crash is already in progress');
    const broker = this.broker;
    this.#crashing = (async () => {
      this.#broker = undefined;
      for (const socket of this.#sockets) socket.destroy();
      const io = this.#io;
      await broker.halt(() => io.cut(options.tornTails ? { keepUnsynced: (_file, bytes) => Math.floor(Math.random() * bytes) } : {}));
      if (this.#closed) return;
      this.#io = new PowerCutIO();
      this.#broker = await Broker.open(this.#options, { io: this.#io });
      this.#counts.crashes++;
    })();
    try {
      await this.#crashing;
    } finally {
      this.#crashing = undefined;
    }
  }

  /** Graceful close (after a crash in progress); removes the data directory if the test broker made it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const stopped = this.#listener.stopAccepting();
    try {
      await this.#crashing?.catch(() => undefined);
      await this.#broker?.close();
    } finally {
      this.#broker = undefined;
      for (const socket of this.#sockets) socket.destroy();
      await stopped;
      if (this.#ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  #accept(socket: Socket): void {
    const broker = this.#broker;
    if (broker === undefined) {
      socket.destroy(); // restarting: the client reconnects, as it would to a rebooting host
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    broker.handleConnection(this.#intercept(socket, broker), `${socket.remoteAddress}:${socket.remotePort}`);
  }

  /**
   * A stream between the socket and the broker that sees whole frames both ways. Bytes that are
   * not frames end the connection here: the test broker serves SDK clients, and how the broker
   * answers malformed input is the broker's own tests' business.
   */
  #intercept(socket: Socket, broker: Broker): Duplex {
    const inbound = new FrameDecoder(ANY_FRAME);
    const outbound = new FrameDecoder(ANY_FRAME);
    const side: Duplex = new Duplex({
      allowHalfOpen: false,
      read: () => socket.resume(),
      write: (chunk: Buffer, _enc, done) => {
        let flushed = true;
        outbound.feed(chunk, (frame) => {
          flushed = socket.write(reencode(frame, frame.body)) && flushed;
          this.#afterSend(frame, broker);
        });
        // Honour the socket's backpressure, so the broker's slow-consumer accounting still holds.
        if (flushed || socket.destroyed) done();
        else {
          const resume = (): void => {
            socket.off('drain', resume).off('close', resume);
            done();
          };
          socket.once('drain', resume).once('close', resume);
        }
      },
      final: (done) => {
        socket.end();
        done();
      },
      destroy: (err, done) => {
        socket.destroy();
        done(err);
      },
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        inbound.feed(chunk, (frame) => {
          if (!side.push(this.#beforeReceive(frame))) socket.pause();
        });
      } catch {
        socket.destroy();
      }
    });
    socket.on('end', () => side.push(null));
    socket.on('close', () => side.destroy());
    socket.on('error', () => side.destroy());
    return side;
  }

  /** Inbound: a Settle's acks become "in progress" while acks are being dropped. */
  #beforeReceive(frame: Frame): Buffer {
    if (this.#dropAcks === 0 || frame.opcode !== Opcode.Settle || (frame.flags & FrameFlags.RESPONSE) !== 0) return reencode(frame, frame.body);
    const body = decodeBody(frame.body) as { items?: unknown };
    if (!Array.isArray(body.items)) return reencode(frame, frame.body);
    for (const item of body.items as unknown[]) {
      if (this.#dropAcks === 0) break;
      if (Array.isArray(item) && item[3] === SettleOp.Ack) {
        item[3] = SettleOp.InProgress;
        this.#dropAcks--;
        this.#counts.droppedAcks++;
      }
    }
    return reencode(frame, encodeBody(body));
  }

  /** Outbound: after a Deliver goes out, pending duplicates end the leases of its messages so they come again. */
  #afterSend(frame: Frame, broker: Broker): void {
    if (this.#duplicates === 0 || frame.opcode !== Opcode.Deliver) return;
    const deliver = parseDeliverPush(decodeBody(frame.body));
    const subscription = broker.subscriptionOfConsumer(deliver.consumerId);
    if (subscription === undefined) return;
    const doomed = new Set(deliver.offsets.slice(0, this.#duplicates));
    const n = broker.expireLeases(subscription, (partition, offset) => partition === deliver.partition && doomed.has(offset));
    this.#duplicates -= n;
    this.#counts.duplicatedDeliveries += n;
  }
}

function reencode(frame: Frame, body: Uint8Array): Buffer {
  return encodeFrame({ version: frame.version, opcode: frame.opcode, flags: frame.flags, correlationId: frame.correlationId }, body);
}

/** Starts a TestBroker: `const tb = await startTestBroker(); connect({ broker: tb.address })`. */
export function startTestBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  return TestBroker.start(options);
}
