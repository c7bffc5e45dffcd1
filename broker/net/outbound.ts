import type { Duplex } from 'node:stream';

/**
 * The single write path of a connection. Every outbound frame goes through `write`, which
 *  - coalesces the frames of one tick into one syscall (cork now, uncork on the next tick), and
 *  - counts bytes handed to the stream but not yet flushed to the kernel. When a peer stops
 *    reading and that count passes `maxPendingBytes`, `onOverflow` fires once and nothing more
 *    is queued: a frozen client costs the broker a bounded amount of memory, never more.
 */
export class Outbound {
  readonly #stream: Duplex;
  readonly #maxPendingBytes: number;
  readonly #onOverflow: (pendingBytes: number) => void;
  #pendingBytes = 0;
  #corked = false;
  #overflowed = false;

  constructor(stream: Duplex, maxPendingBytes: number, onOverflow: (pendingBytes: number) => void) {
    this.#stream = stream;
    this.#maxPendingBytes = maxPendingBytes;
    this.#onOverflow = onOverflow;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Queues one encoded frame; returns false once the connection is over its limit or closed. */
  write(frame: Buffer): boolean {
    if (this.#overflowed || this.#stream.destroyed || this.#stream.writableEnded) return false;
    if (!this.#corked) {
      this.#corked = true;
      this.#stream.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#stream.uncork();
      });
    }
    const size = frame.length;
    this.#pendingBytes += size;
    this.#stream.write(frame, () => {
      this.#pendingBytes -= size;
    });
    if (this.#pendingBytes > this.#maxPendingBytes) {
      this.#overflowed = true;
      this.#onOverflow(this.#pendingBytes);
      return false;
    }
    return true;
  }
}
