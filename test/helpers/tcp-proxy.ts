import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

/** The fault modes in force: shared by every connection and both directions. */
interface Modes {
  stalled: boolean;
  delayMs: number;
  trickle: boolean;
}

interface Counters {
  /** Bytes forwarded (both directions). */
  forwarded: number;
  /** Socket writes made to forward them: one per byte while trickling. */
  writes: number;
}

/**
 * One direction of one connection. Bytes queue here in arrival order and leave as the modes
 * allow; there is one queue and one head, so no mode (or change of mode) can reorder bytes.
 */
class Pipe {
  readonly #out: Socket;
  readonly #modes: Modes;
  readonly #counters: Counters;
  readonly #queue: Array<{ bytes: Buffer; arrived: number }> = [];
  /** Cancels the timer or immediate that will pump next; set while one is pending. */
  #pending: (() => void) | undefined;

  constructor(out: Socket, modes: Modes, counters: Counters) {
    this.#out = out;
    this.#modes = modes;
    this.#counters = counters;
  }

  push(bytes: Buffer): void {
    this.#queue.push({ bytes, arrived: Date.now() });
    this.#pump();
  }

  /** The modes changed: drop whatever wait was scheduled under the old ones and look again. */
  kick(): void {
    this.cancel();
    this.#pump();
  }

  cancel(): void {
    this.#pending?.();
    this.#pending = undefined;
  }

  #pump(): void {
    if (this.#pending !== undefined) return;
    while (!this.#modes.stalled && this.#queue.length > 0 && !this.#out.destroyed) {
      const head = this.#queue[0]!;
      // Delay is latency, not throughput: each chunk leaves `delayMs` after it arrived, so
      // chunks that arrived together leave together (and a stall counts towards the delay).
      const wait = head.arrived + this.#modes.delayMs - Date.now();
      if (wait > 0) {
        const timer = setTimeout(() => this.#resume(), wait);
        this.#pending = () => clearTimeout(timer);
        return;
      }
      if (!this.#modes.trickle) {
        this.#write(head.bytes);
        this.#queue.shift();
        continue;
      }
      this.#write(head.bytes.subarray(0, 1));
      if (head.bytes.length === 1) this.#queue.shift();
      else head.bytes = head.bytes.subarray(1);
      // One byte per turn of the event loop, so the receiver reads (nearly) every byte on its
      // own and must reassemble every frame, header included, from 1-byte pieces.
      const immediate = setImmediate(() => this.#resume());
      this.#pending = () => clearImmediate(immediate);
      return;
    }
  }

  #resume(): void {
    this.#pending = undefined;
    this.#pump();
  }

  #write(bytes: Buffer): void {
    this.#counters.forwarded += bytes.length;
    this.#counters.writes++;
    this.#out.write(bytes);
  }
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  readonly toBroker: Pipe;
  readonly toClient: Pipe;
}

/**
 * A TCP proxy in front of a broker that injects network faults, for every connection it carries
 * and in both directions unless said otherwise:
 *
 * - `dropReplies()`: broker-to-client bytes are thrown away as they arrive (requests still
 *   reach the broker, so it does the work and the client never learns the outcome); `cut()`
 *   destroys both sides, and the client's requests fail with CONNECTION_CLOSED although the
 *   broker did the work. `loseRepliesAndCut(ms)` and `cutOnNextReply()` combine the two.
 * - `stall()` / `unstall()`: bytes are held, connections stay open; released in order.
 * - `delay(ms)`: every chunk is forwarded `ms` after it arrived, in order.
 * - `trickle()`: bytes are forwarded one at a time, one per event-loop turn.
 *
 * The modes combine (a stalled, delayed, trickling link releases its backlog byte by byte) and
 * outlive `cut()`: connections made afterwards get them too. `target` can be changed (a broker
 * restarted on another port); new connections go there.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  readonly #modes: Modes = { stalled: false, delayMs: 0, trickle: false };
  readonly #counters: Counters = { forwarded: 0, writes: 0 };
  #targetPort: number;
  #dropReplies = false;
  /** Set by cutOnNextReply(): resolves its promise; the next reply bytes cut everything. */
  #cutOnReply: (() => void) | undefined;
  /** Bytes of replies thrown away so far. */
  dropped = 0;
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(server: Server, targetPort: number) {
    this.#server = server;
    this.#targetPort = targetPort;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    const proxy = new TcpProxy(server, targetPort);
    server.on('connection', (client) => proxy.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy not listening');
    return address.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  set targetPort(port: number) {
    this.#targetPort = port;
  }

  /** Bytes forwarded so far and the socket writes that carried them (equal while trickling). */
  get stats(): Readonly<Counters> {
    return { ...this.#counters };
  }

  /** From now on replies are thrown away (requests still reach the broker). */
  dropReplies(drop = true): void {
    this.#dropReplies = drop;
  }

  /** Holds all bytes, both directions, without closing anything, until `unstall()`. */
  stall(): void {
    this.#modes.stalled = true;
  }

  /** Releases what `stall()` held, in arrival order (still subject to delay and trickle). */
  unstall(): void {
    this.#modes.stalled = false;
    this.#kick();
  }

  /** Forwards each chunk `ms` after it arrived (0: at once). */
  delay(ms: number): void {
    this.#modes.delayMs = ms;
    this.#kick();
  }

  /** Forwards one byte per event-loop turn, so frames arrive split at every byte. */
  trickle(on = true): void {
    this.#modes.trickle = on;
    this.#kick();
  }

  /**
   * Destroys every connection (both sides), stops dropping replies and disarms (resolves)
   * `cutOnNextReply()`. Bytes still held or delayed are lost with their connection, as on a
   * real cut.
   */
  cut(): void {
    this.#dropReplies = false;
    const armed = this.#cutOnReply;
    this.#cutOnReply = undefined;
    armed?.();
    for (const { client, upstream, toBroker, toClient } of this.#pairs) {
      toBroker.cancel();
      toClient.cancel();
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  /** Drops replies for `windowMs`, then cuts: the broker processed what arrived meanwhile, the client heard none of it. */
  async loseRepliesAndCut(windowMs: number): Promise<void> {
    this.dropReplies();
    await new Promise((r) => setTimeout(r, windowMs));
    this.cut();
  }

  /**
   * The "processed but never answered" fault, without guessing a window: the next bytes the
   * broker sends (the reply to a request it has just processed) are thrown away and every
   * connection is cut right there. Resolves once it has cut. Arm it, then make the request.
   */
  cutOnNextReply(): Promise<void> {
    return new Promise((resolve) => {
      this.#cutOnReply = resolve;
    });
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #kick(): void {
    for (const { toBroker, toClient } of this.#pairs) {
      toBroker.kick();
      toClient.kick();
    }
  }

  #accept(client: Socket): void {
    this.accepted++;
    const upstream = tcpConnect({ port: this.#targetPort, host: '127.0.0.1' });
    // Without Nagle, single-byte writes leave as single-byte segments instead of being merged.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pair: Pair = {
      client,
      upstream,
      toBroker: new Pipe(upstream, this.#modes, this.#counters),
      toClient: new Pipe(client, this.#modes, this.#counters),
    };
    this.#pairs.add(pair);
    const close = (): void => {
      this.#pairs.delete(pair);
      pair.toBroker.cancel();
      pair.toClient.cancel();
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.on('data', (chunk: Buffer) => pair.toBroker.push(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (this.#cutOnReply !== undefined) {
        this.dropped += chunk.length;
        this.cut();
      } else if (this.#dropReplies) this.dropped += chunk.length;
      else pair.toClient.push(chunk);
    });
  }
}
