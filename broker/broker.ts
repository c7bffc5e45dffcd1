import type { Duplex } from 'node:stream';
import { PROTOCOL_VERSION } from '../client/protocol/frame.js';
import { parsers, type ApiName, type HelloResponse } from '../client/protocol/messages/index.js';
import { opcodeName } from '../client/protocol/opcodes.js';
import { parseBrokerConfig, type BrokerConfig, type BrokerOptions } from './config.js';
import type { HandledApi, Handler, HandlerTable } from './handlers/handler.js';
import { handlePing } from './handlers/ping.js';
import { createLogger, type Logger } from './logger.js';
import { ServerConnection, type RequestContext, type RequestHost } from './net/server-connection.js';
import { SLUICE_VERSION } from './version.js';

/**
 * The broker core: owns storage and state, and answers requests through one handler per request
 * type. It never sees a socket; `handleConnection` takes any duplex stream.
 */
export class Broker implements RequestHost {
  readonly config: BrokerConfig;
  readonly log: Logger;
  readonly #connections = new Set<ServerConnection>();
  readonly #handlers: HandlerTable;
  #closing: Promise<void> | undefined;

  private constructor(config: BrokerConfig) {
    this.config = config;
    this.log = config.logger ?? createLogger(config.logLevel);
    this.#handlers = {
      Ping: handlePing,
    };
  }

  static async open(options: BrokerOptions = {}): Promise<Broker> {
    return new Broker(parseBrokerConfig(options));
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  handleConnection(stream: Duplex, remoteAddress?: string): void {
    if (this.#closing !== undefined) {
      stream.destroy();
      return;
    }
    const conn = new ServerConnection(stream, this, this.config, remoteAddress);
    this.#connections.add(conn);
    stream.once('close', () => this.#connections.delete(conn));
  }

  hello(): HelloResponse {
    return {
      version: PROTOCOL_VERSION,
      server: 'sluice',
      serverVersion: SLUICE_VERSION,
      features: [],
      limits: {
        maxFrameBytes: this.config.maxFrameBytes,
        maxInFlight: this.config.maxInFlight,
        idleTimeoutMs: this.config.idleTimeoutMs,
        heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      },
    };
  }

  serves(opcode: number): boolean {
    const name = opcodeName(opcode);
    return name !== undefined && name in this.#handlers;
  }

  async dispatch(opcode: number, body: unknown, ctx: RequestContext): Promise<unknown> {
    const name = opcodeName(opcode) as HandledApi;
    const request = parsers[name].request(body);
    const handler = this.#handlers[name] as Handler<ApiName>;
    return handler(request as never, ctx);
  }

  /** Graceful: drain every connection (in-flight requests finish), then close storage. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const timeout = this.config.shutdownTimeoutMs;
    await Promise.all([...this.#connections].map((c) => c.drain(timeout)));
  }
}
