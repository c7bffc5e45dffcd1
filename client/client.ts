import { Admin } from './admin.js';
import { Connection, type ConnectionOptions } from './connection.js';
import { PollConsumer, type PollConsumerOptions } from './poll-consumer.js';
import { Producer, type ProducerOptions } from './producer.js';
import { PushConsumer, type PushConsumerOptions } from './push-consumer.js';
import { SluiceError } from './protocol/errors.js';

/** Something the client created and must stop before its connection closes. */
interface Closeable {
  close(): Promise<void>;
}

/**
 * The SDK's front door: one connection, and the producers, admin and consumers built on it.
 * `close()` stops what the client created (producers flush first), then closes the connection.
 */
export class SluiceClient {
  readonly connection: Connection;
  readonly #owned = new Set<Closeable>();
  #closing: Promise<void> | undefined;

  /** Use `connect()`; this wraps a connection that is already open. */
  constructor(connection: Connection) {
    this.connection = connection;
  }

  producer(options?: ProducerOptions): Producer {
    return this.#own(new Producer(this.connection, options));
  }

  admin(): Admin {
    return new Admin(this.connection);
  }

  /** A long-poll consumer; `close()` of this client closes it (commit, leave) before the connection. */
  pollConsumer(options: PollConsumerOptions): PollConsumer {
    return this.#own(new PollConsumer(this.connection, options));
  }

  /**
   * A push-subscription consumer (call `start()` or iterate it); `close()` of this client closes
   * it (waits for yielded messages to be settled, gives the rest back) before the connection.
   */
  pushConsumer(options: PushConsumerOptions): PushConsumer {
    return this.#own(new PushConsumer(this.connection, options));
  }

  /** Graceful and idempotent: flush and close owned producers and consumers, then the connection. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const owned = [...this.#owned];
      this.#owned.clear();
      const results = await Promise.allSettled(owned.map((o) => o.close()));
      await this.connection.close();
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    })();
    return this.#closing;
  }

  #own<T extends Closeable>(resource: T): T {
    if (this.#closing !== undefined) throw new SluiceError('CLIENT_CLOSED', 'client is closed');
    this.#owned.add(resource);
    return resource;
  }
}

/** Connects to a broker (default: env SLUICE_BROKER, else 127.0.0.1:7420) and completes the handshake. */
export async function connect(options?: ConnectionOptions): Promise<SluiceClient> {
  return new SluiceClient(await Connection.connect(options));
}
