import { fields, optInt } from '../shape.js';

/**
 * Ping (0x02): a heartbeat and round-trip probe. Clients send it when they have been quiet for
 * the heartbeat interval, so the broker's idle timer sees traffic and the client learns that the
 * broker still answers. The broker echoes `nonce`.
 *
 *   request  = { nonce?: int }
 *   response = { nonce?: int }
 */
export interface PingBody {
  readonly nonce?: number;
}

export function parsePing(body: unknown): PingBody {
  if (body === null || body === undefined) return {};
  const nonce = optInt(fields(body, 'Ping'), 'nonce', 'Ping');
  return nonce === undefined ? {} : { nonce };
}
