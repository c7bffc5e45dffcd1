import { fields, int, list, optList, str, strItem } from '../shape.js';

/**
 * Hello (0x01): the client's first frame, sent once. Until it is answered the broker accepts
 * nothing else and caps frames at the pre-handshake limit (8 KiB).
 *
 *   request  = { version: u8, clientId: str(<=256), features?: [str] }
 *   response = { version: u8, server: str, serverVersion: str, features: [str],
 *                limits: { maxFrameBytes, maxBatchBytes, maxInFlight, idleTimeoutMs, heartbeatIntervalMs } }
 */
export interface HelloRequest {
  readonly version: number;
  readonly clientId: string;
  readonly features?: readonly string[];
}

export interface ServerLimits {
  /** Largest frame the broker accepts after the handshake, length prefix included. */
  readonly maxFrameBytes: number;
  /** Largest record batch a Produce may carry (RECORD_TOO_LARGE above it). */
  readonly maxBatchBytes: number;
  /** Requests a connection may have unanswered before the broker stops reading from it. */
  readonly maxInFlight: number;
  /** The broker closes a connection that sends nothing for this long. */
  readonly idleTimeoutMs: number;
  /** How often a client should send Ping when it has nothing else to send. */
  readonly heartbeatIntervalMs: number;
}

export interface HelloResponse {
  readonly version: number;
  readonly server: string;
  readonly serverVersion: string;
  readonly features: readonly string[];
  readonly limits: ServerLimits;
}

export function parseHelloRequest(body: unknown): HelloRequest {
  const o = fields(body, 'Hello');
  const features = optList(o, 'features', 'Hello', strItem(64), 64);
  return {
    version: int(o, 'version', 'Hello', { min: 0, max: 255 }),
    clientId: str(o, 'clientId', 'Hello', 256),
    ...(features === undefined ? {} : { features }),
  };
}

export function parseHelloResponse(body: unknown): HelloResponse {
  const o = fields(body, 'HelloResponse');
  const l = fields(o['limits'], 'HelloResponse.limits');
  const path = 'HelloResponse.limits';
  return {
    version: int(o, 'version', 'HelloResponse', { min: 0, max: 255 }),
    server: str(o, 'server', 'HelloResponse'),
    serverVersion: str(o, 'serverVersion', 'HelloResponse'),
    features: list(o, 'features', 'HelloResponse', strItem(64), 256),
    limits: {
      maxFrameBytes: int(l, 'maxFrameBytes', path, { min: 1 }),
      maxBatchBytes: int(l, 'maxBatchBytes', path, { min: 1 }),
      maxInFlight: int(l, 'maxInFlight', path, { min: 1 }),
      idleTimeoutMs: int(l, 'idleTimeoutMs', path, { min: 1 }),
      heartbeatIntervalMs: int(l, 'heartbeatIntervalMs', path, { min: 1 }),
    },
  };
}
