/** A counter the hot loops bump; the progress line reads it on its own timer. */
export interface Meter {
  done: number;
}

const INTERVAL_MS = 250;

/**
 * One status line on stderr, rewritten in place with \r: phase, messages done (of the total
 * when known) and the rate over the last interval. Only on a TTY: piped or redirected output
 * (CI, `--json | jq`) stays clean. The timer is unref'd and never touches the hot path.
 */
export class Progress {
  readonly #enabled: boolean;
  #timer: NodeJS.Timeout | undefined;
  #dirty = false;

  constructor(enabled = process.stderr.isTTY === true) {
    this.#enabled = enabled;
  }

  /** Shows `meter` under `label` until the next start() or stop(). */
  start(label: string, meter: Meter, total: number | undefined): void {
    this.stop();
    if (!this.#enabled) return;
    let lastDone = meter.done;
    let lastAt = performance.now();
    const render = (): void => {
      const now = performance.now();
      const rate = ((meter.done - lastDone) * 1000) / Math.max(1, now - lastAt);
      lastDone = meter.done;
      lastAt = now;
      const of = total === undefined ? '' : ` / ${total.toLocaleString('en-US')}`;
      process.stderr.write(`\r${label}: ${meter.done.toLocaleString('en-US')}${of} msgs  ${Math.round(rate).toLocaleString('en-US')} msgs/s\x1b[K`);
      this.#dirty = true;
    };
    this.#timer = setInterval(render, INTERVAL_MS);
    this.#timer.unref();
  }

  /** Stops updating and clears the line. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#dirty) process.stderr.write('\r\x1b[K');
    this.#dirty = false;
  }
}
