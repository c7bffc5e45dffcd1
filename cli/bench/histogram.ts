import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

export interface LatencySummary {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/**
 * Latencies in microseconds in Node's HDR histogram (node:perf_hooks createHistogram: 3
 * significant figures, so a percentile is within 0.1% of the true value). Values are recorded
 * as they come; nothing is kept per sample.
 */
export class LatencyHistogram {
  readonly #h: RecordableHistogram = createHistogram();

  /** Records a duration given in milliseconds (performance.now() differences). */
  recordMs(ms: number): void {
    // The histogram's floor is 1; a sub-microsecond duration counts as 1 µs.
    const us = Math.round(ms * 1000);
    this.#h.record(us >= 1 ? us : 1);
  }

  get count(): number {
    return this.#h.count;
  }

  summary(): LatencySummary {
    if (this.#h.count === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      p50: this.#h.percentile(50),
      p90: this.#h.percentile(90),
      p99: this.#h.percentile(99),
      p999: this.#h.percentile(99.9),
      max: this.#h.max,
    };
  }
}
