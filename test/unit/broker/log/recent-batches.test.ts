import { describe, expect, it } from 'vitest';
import { RecentBatches } from '../../../../broker/log/recent-batches.js';

/** A fake batch of `size` bytes whose every byte is `tag`, in a buffer of its own (Buffer.alloc does not pool). */
function batch(tag: number, size = 10): Buffer {
  return Buffer.alloc(size, tag);
}

/** The tags of the fake batches in a read, in order. */
function tags(buf: Buffer | undefined, size = 10): number[] | undefined {
  if (buf === undefined) return undefined;
  const out: number[] = [];
  for (let pos = 0; pos < buf.length; pos += size) out.push(buf[pos]!);
  return out;
}

/** Batches 1..n of 10 bytes and 2 offsets each: batch i holds offsets 2i and 2i + 1. */
function filled(n: number, maxBytes = 1000): RecentBatches {
  const recent = new RecentBatches(maxBytes);
  for (let i = 1; i <= n; i++) recent.add(batch(i), 2 * i, 2 * i + 1);
  return recent;
}

describe('RecentBatches', () => {
  it('answers like a file read: whole batches from the one holding the offset, at least one, up to maxBytes', () => {
    const recent = filled(5);
    expect(tags(recent.read(2, 1000, 12))).toEqual([1, 2, 3, 4, 5]);
    expect(tags(recent.read(5, 1000, 12))).toEqual([2, 3, 4, 5]);
    expect(tags(recent.read(5, 25, 12))).toEqual([2, 3]);
    expect(tags(recent.read(5, 0, 12))).toEqual([2]);
    // Nothing at or past the limit (the high watermark).
    expect(tags(recent.read(4, 1000, 8))).toEqual([2, 3]);
    expect(recent.read(8, 1000, 8)).toBeUndefined();
  });

  it('returns a single batch as it is, without a copy', () => {
    const recent = new RecentBatches(1000);
    const only = batch(7);
    recent.add(only, 0, 1);
    expect(recent.read(1, 1000, 2)).toBe(only);
  });

  it('does not answer offsets older than what it holds', () => {
    const recent = filled(3);
    expect(recent.read(1, 1000, 8)).toBeUndefined();
    expect(tags(recent.read(2, 1000, 8))).toEqual([1, 2, 3]);
  });

  it('drops the oldest batches past its budget', () => {
    const recent = filled(10, 35);
    expect(recent.bytes).toBe(30);
    expect(recent.read(15, 1000, 22)).toBeUndefined();
    expect(tags(recent.read(16, 1000, 22))).toEqual([8, 9, 10]);
  });

  it('keeps answering through many evictions (the array is compacted, not shifted)', () => {
    const recent = new RecentBatches(30);
    for (let i = 0; i < 1000; i++) recent.add(batch(i % 256), i, i);
    expect(recent.bytes).toBe(30);
    expect(recent.read(996, 1000, 1000)).toBeUndefined();
    expect(tags(recent.read(997, 1000, 1000))).toEqual([997 % 256, 998 % 256, 999 % 256]);
  });

  it('starts over when a batch does not follow the last one, and holds nothing larger than its budget', () => {
    const recent = filled(3);
    recent.add(batch(9), 100, 100);
    expect(recent.read(2, 1000, 101)).toBeUndefined();
    expect(tags(recent.read(100, 1000, 101))).toEqual([9]);
    recent.add(batch(10, 2000), 101, 101);
    expect(recent.bytes).toBe(0);
    expect(recent.read(100, 1000, 102)).toBeUndefined();
  });

  it('copies a batch that is a small view of a larger buffer, and keeps one that is most of its buffer', () => {
    const recent = new RecentBatches(1000);
    const chunk = Buffer.alloc(100, 1);
    const small = chunk.subarray(0, 10);
    recent.add(small, 0, 0);
    const held = recent.read(0, 1000, 1)!;
    expect(held).toEqual(small);
    expect(held.buffer).not.toBe(chunk.buffer);
    const large = Buffer.alloc(100, 2).subarray(0, 60);
    recent.add(large, 1, 1);
    expect(recent.read(1, 1000, 2)).toBe(large);
  });

  it('with a budget of 0 holds nothing', () => {
    const recent = filled(3, 0);
    expect(recent.bytes).toBe(0);
    expect(recent.read(2, 1000, 8)).toBeUndefined();
  });
});
