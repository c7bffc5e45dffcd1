import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface ConnectionSink {
  handleConnection(stream: Duplex, remoteAddress?: string): void;
}

/**
 * The TCP edge: accepts sockets and hands them to the broker. It owns no protocol logic, so the
 * same broker serves TLS or in-memory streams through `handleConnection` directly.
 */
export class TcpListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.#server = server;
  }

  static listen(sink: ConnectionSink, host: string, port: number): Promise<TcpListener> {
    const server = createServer({ noDelay: true });
    const listener = new TcpListener(server);
    server.on('connection', (socket) => {
      listener.#sockets.add(socket);
      socket.once('close', () => listener.#sockets.delete(socket));
      sink.handleConnection(socket, `${socket.remoteAddress}:${socket.remotePort}`);
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve(listener);
      });
    });
  }

  get host(): string {
    const addr = this.#server.address();
    return typeof addr === 'object' && addr !== null ? addr.address : '';
  }

  get port(): number {
    const addr = this.#server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : 0;
  }

  get connectionCount(): number {
    return this.#sockets.size;
  }

  /** Stops accepting; existing connections are the broker's to drain. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
