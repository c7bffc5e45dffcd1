import { connect, type SluiceClient } from '../../client/client.js';
import type { ProduceResponse } from '../../client/protocol/messages/produce.js';

/**
 * An SDK client that reconnects quickly and records every Produce answer it gets, so a test can
 * see the broker answer an idempotent producer's retries as duplicates. The caller destroys
 * `client.connection` when done.
 */
export async function answerRecordingClient(address: string): Promise<{ client: SluiceClient; answers: ProduceResponse[] }> {
  const c = await connect({ broker: address, reconnect: { initialDelayMs: 5, maxDelayMs: 50 } });
  const answers: ProduceResponse[] = [];
  const request = c.connection.request.bind(c.connection);
  c.connection.request = (async (api, body, options) => {
    const res = await request(api, body, options);
    if (api === 'Produce') answers.push(res as ProduceResponse);
    return res;
  }) as typeof c.connection.request;
  return { client: c, answers };
}
