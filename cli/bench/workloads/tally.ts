import type { Meter } from '../progress.js';

/** No message for this long means something is stuck: the bench fails instead of hanging. */
const STALL_MS = 30_000;

/**
 * What the consumers of one run have received, and when they are done: once `target` messages
 * arrived (the target may be set late, when producers timed by --duration finish). `done`
 * rejects on the first failure or after STALL_MS without progress.
 */
export class Tally implements Meter {
  done = 0;
  /** performance.now() when the target was reached. */
  finishedAt = 0;
  finished = false;
  readonly whenDone: Promise<void>;
  #target: number;
  #lastProgressAt = performance.now();
  /** performance.now() of the last add(): when the last message arrived. */
  #lastAddAt = performance.now();
  #resolve!: () => void;
  #reject!: (err: unknown) => void;
  readonly #watchdog: NodeJS.Timeout;

  constructor(target: number | undefined) {
    this.#target = target ?? Infinity;
    this.whenDone = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.whenDone.catch(() => undefined);
    this.#watchdog = setInterval(() => {
      if (performance.now() - this.#lastProgressAt > STALL_MS) {
        this.fail(new Error(`no message for ${STALL_MS / 1000} s: received ${this.done} of ${Number.isFinite(this.#target) ? this.#target : 'the messages sent'}`));
      }
    }, 1_000);
    this.#watchdog.unref();
  }

  get target(): number {
    return this.#target;
  }

  add(n: number): void {
    if (n === 0 || this.finished) return;
    this.done += n;
    this.#lastAddAt = performance.now();
    this.#lastProgressAt = this.#lastAddAt;
    if (this.done >= this.#target) this.#finish(this.#lastAddAt);
  }

  setTarget(n: number): void {
    this.#target = n;
    this.#lastProgressAt = performance.now();
    // Everything may have arrived before the producers saw their last ack: the run ended then.
    if (this.done >= n) this.#finish(this.#lastAddAt);
  }

  fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.#watchdog);
    this.#reject(err);
  }

  #finish(at: number): void {
    this.finished = true;
    this.finishedAt = at;
    clearInterval(this.#watchdog);
    this.#resolve();
  }
}
