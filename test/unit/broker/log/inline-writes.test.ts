/**
 * The inline-write policy on a fake clock and hand-run turns of the loop: which writes may block
 * the loop, and when it sends them back to the thread pool.
 */
import { describe, expect, it } from 'vitest';
import { InlineWrites, type InlineWritesOptions } from '../../../../broker/log/inline-writes.js';

/** The settings most tests pin, so that they do not depend on the defaults (which one test checks). */
const PINNED: InlineWritesOptions = { quietMs: 10, maxShare: 0.5, windowMs: 100, backoffMs: 1000 };

function harness(options: InlineWritesOptions = {}, base: InlineWritesOptions = PINNED) {
  let clock = 0;
  let turnEnds: (() => void)[] = [];
  const policy = new InlineWrites({ ...base, ...options, now: () => clock, nextTurn: (fn) => turnEnds.push(fn) });
  return {
    policy,
    /** An admitted write that takes `ms`; returns whether it ran inline. Pool writes complete at once. */
    write(bytes: number, ms = 0.3): boolean {
      if (!policy.admit(bytes)) {
        policy.poolDone();
        return false;
      }
      const startedAt = clock;
      clock += ms;
      policy.ranInline(startedAt);
      return true;
    },
    nextTurn(): void {
      const ends = turnEnds;
      turnEnds = [];
      for (const fn of ends) fn();
    },
    advance(ms: number): void {
      clock += ms;
    },
  };
}

describe('InlineWrites', () => {
  it('runs a small write inline and a large one in the pool', () => {
    const h = harness({ maxBytes: 1000 });
    expect(h.write(1000)).toBe(true);
    h.nextTurn();
    expect(h.write(1001)).toBe(false);
    expect(h.policy.stats).toEqual({ inline: 1, pool: 1, backoffs: 0 });
  });

  it('runs one write inline per turn of the loop; the others of that turn go to the pool', () => {
    const h = harness();
    expect([h.write(100), h.write(100), h.write(100)]).toEqual([true, false, false]);
    h.nextTurn();
    h.advance(10);
    expect(h.write(100)).toBe(true);
  });

  it('sends writes to the pool while a pool write is in flight, and for quietMs after', () => {
    const h = harness();
    expect(h.policy.admit(1 << 20)).toBe(false);
    expect(h.write(100)).toBe(false);
    h.nextTurn();
    h.advance(50);
    expect(h.write(100)).toBe(false);
    h.policy.poolDone();
    h.advance(9);
    expect(h.write(100)).toBe(false);
    h.advance(10);
    expect(h.write(100)).toBe(true);
  });

  it('caps the share of the loop spent in inline writes per window', () => {
    const h = harness();
    // 0.5 of a 100 ms window: five 10 ms writes, then the pool until the window ends.
    const ran: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      ran.push(h.write(100, 10));
      h.nextTurn();
    }
    expect(ran).toEqual([true, true, true, true, true, false]);
    h.advance(50);
    expect(h.write(100, 10)).toBe(true);
  });

  it('after a slow inline write, uses the pool for the backoff period', () => {
    const h = harness({ slowMs: 10 });
    expect(h.write(100, 25)).toBe(true);
    expect(h.policy.stats.backoffs).toBe(1);
    h.nextTurn();
    h.advance(500);
    expect(h.write(100)).toBe(false);
    h.advance(500);
    expect(h.write(100)).toBe(true);
  });

  it('returns to the loop under a steady stream of commits: its own pool writes do not count as busy', () => {
    const h = harness({ slowMs: 10 });
    const every1ms = (n: number): boolean[] =>
      Array.from({ length: n }, () => {
        h.nextTurn();
        h.advance(1);
        return h.write(100, 0.3);
      });
    // After a large write: the pool for quietMs, then the loop again.
    expect(h.policy.admit(1 << 20)).toBe(false);
    h.policy.poolDone();
    const afterLarge = every1ms(12);
    expect(afterLarge.slice(0, 9).every((ran) => !ran)).toBe(true);
    expect(afterLarge.slice(10).every((ran) => ran)).toBe(true);
    // After a slow write: the pool for the backoff, then the loop again.
    h.nextTurn();
    expect(h.write(100, 25)).toBe(true);
    const afterSlow = every1ms(1100);
    expect(afterSlow.slice(0, 900).every((ran) => !ran)).toBe(true);
    expect(afterSlow.slice(1000).every((ran) => ran)).toBe(true);
  });

  it('defaults to what the docs promise: 64 KiB, 10 ms quiet, half of each 100 ms, 25 ms slow, 1 s backoff', () => {
    const h = harness({}, {});
    // Each write in a turn of its own, so only the rules under test decide.
    const write = (bytes: number, ms: number): boolean => {
      h.nextTurn();
      return h.write(bytes, ms);
    };
    expect(write(64 * 1024, 0)).toBe(true);
    expect(write(64 * 1024 + 1, 0)).toBe(false);
    h.advance(9.9);
    expect(write(100, 0)).toBe(false);
    h.advance(0.1);
    // The window began at 0: three 20 ms writes pass 50 ms of it, then the pool until 100.
    expect([write(100, 20), write(100, 20), write(100, 20), write(100, 0)]).toEqual([true, true, true, false]);
    h.advance(30);
    expect(write(100, 25)).toBe(true);
    expect(h.policy.stats.backoffs).toBe(0);
    expect(write(100, 26)).toBe(true);
    expect(h.policy.stats.backoffs).toBe(1);
    h.advance(999);
    expect(write(100, 0)).toBe(false);
    h.advance(1);
    expect(write(100, 0)).toBe(true);
  });

  it('maxBytes 0 sends every write to the pool', () => {
    const h = harness({ maxBytes: 0 });
    expect(h.write(1)).toBe(false);
  });
});
