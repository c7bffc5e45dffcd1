import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
}

/**
 * A TCP proxy in front of a broker that can lose replies: the fault an idempotent producer
 * exists for. Client-to-broker bytes are always forwarded, so the broker processes every
 * request; while replies are dropped, broker-to-client bytes are thrown away, so the client
 * never learns the outcome; `cut()` then destroys both sides, and the client's requests fail
 * with CONNECTION_CLOSED although the broker did the work.
 *
 * `target` can be changed (a broker restarted on another port); new connections go there.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<Pair>();
  #targetPort: number;
  #dropReplies = false;
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

  /** From now on replies are thrown away (requests still reach the broker). */
  dropReplies(drop = true): void {
    this.#dropReplies = drop;
  }

  /** Destroys every connection (both sides) and stops dropping replies. */
  cut(): void {
    this.#dropReplies = false;
    for (const { client, upstream } of this.#pairs) {
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

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.accepted++;
    const upstream = tcpConnect({ port: this.#targetPort, host: '127.0.0.1' });
    const pair: Pair = { client, upstream };
    this.#pairs.add(pair);
    const close = (): void => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (this.#dropReplies) this.dropped += chunk.length;
      else client.write(chunk);
    });
  }
}
