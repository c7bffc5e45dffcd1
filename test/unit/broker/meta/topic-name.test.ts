import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../../../client/protocol/errors.js';
import {
  MAX_SEGMENT_BYTES,
  MIN_SEGMENT_BYTES,
  validatePartitionCount,
  validateTopicConfig,
  validateTopicName,
} from '../../../../broker/meta/topic-name.js';

function errorOf(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SluiceError) return err;
    throw err;
  }
  throw new Error('expected a SluiceError');
}

describe('validateTopicName', () => {
  it('accepts legal names', () => {
    for (const name of ['orders', 'a', 'Orders.v2', 'my_topic-1', 'a'.repeat(249)]) {
      expect(validateTopicName(name)).toBe(name);
    }
  });

  it.each([
    [42, /must be a string, got number/],
    [null, /must be a string, got null/],
    [['x'], /must be a string, got an array/],
    ['', /must not be empty/],
    ['a'.repeat(250), /250 bytes long; the limit is 249/],
    ['has space', /contains " "; only ASCII letters/],
    ['slash/name', /contains "\/"/],
    ['colon:name', /contains ":"/],
    ['héllo', /contains "é"/],
    ['😀', /contains "😀"/],
    ['.', /starts with '\.'/],
    ['..', /starts with '\.'/],
    ['.orders', /reserved for the broker/],
  ])('refuses %j with INVALID_TOPIC saying why', (name, message) => {
    const err = errorOf(() => validateTopicName(name));
    expect(err.code).toBe('INVALID_TOPIC');
    expect(err.message).toMatch(message);
  });

  it('counts UTF-8 bytes, not UTF-16 units, against the limit', () => {
    const err = errorOf(() => validateTopicName('é'.repeat(125)));
    expect(err.message).toMatch(/250 bytes long/);
  });

  it('accepts exactly the names matching Kafka\'s rules (property)', () => {
    const legalChar = fc.constantFrom(...'abcXYZ019._-'.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 260 }), fc.string({ unit: legalChar, maxLength: 260 })), (name) => {
        const legal = /^[A-Za-z0-9._-]{1,249}$/.test(name) && !name.startsWith('.');
        let ok = true;
        try {
          validateTopicName(name);
        } catch (err) {
          ok = false;
          expect((err as SluiceError).code).toBe('INVALID_TOPIC');
        }
        expect(ok).toBe(legal);
      }),
      { seed: 42, numRuns: 500 },
    );
  });
});

describe('validatePartitionCount', () => {
  it('accepts 1..10000 integers only', () => {
    expect(validatePartitionCount(1)).toBe(1);
    expect(validatePartitionCount(10_000)).toBe(10_000);
    for (const bad of [0, -1, 1.5, 10_001, '3', NaN, undefined]) {
      expect(errorOf(() => validatePartitionCount(bad)).code).toBe('INVALID_CONFIG');
    }
  });
});

describe('validateTopicConfig', () => {
  it('defaults every field to null', () => {
    const none = { retentionMs: null, retentionBytes: null, segmentBytes: null };
    expect(validateTopicConfig(undefined)).toEqual(none);
    expect(validateTopicConfig({})).toEqual(none);
    expect(validateTopicConfig({ retentionMs: null, segmentBytes: undefined })).toEqual(none);
  });

  it('keeps valid values', () => {
    expect(validateTopicConfig({ retentionMs: 1, retentionBytes: 2 ** 40, segmentBytes: MIN_SEGMENT_BYTES })).toEqual({
      retentionMs: 1,
      retentionBytes: 2 ** 40,
      segmentBytes: MIN_SEGMENT_BYTES,
    });
  });

  it.each([
    [{ retentionMs: 0 }, 'retentionMs'],
    [{ retentionMs: -1 }, 'retentionMs'],
    [{ retentionBytes: 1.5 }, 'retentionBytes'],
    [{ retentionBytes: '10' }, 'retentionBytes'],
    [{ segmentBytes: MIN_SEGMENT_BYTES - 1 }, 'segmentBytes'],
    [{ segmentBytes: MAX_SEGMENT_BYTES + 1 }, 'segmentBytes'],
    [{ retentionMS: 5 }, 'retentionMS'],
  ])('refuses %j naming %s', (input, field) => {
    const err = errorOf(() => validateTopicConfig(input));
    expect(err.code).toBe('INVALID_CONFIG');
    expect(err.message).toContain(field);
    expect(err.details).toEqual({ field });
  });

  it('refuses non-objects', () => {
    expect(errorOf(() => validateTopicConfig(5)).code).toBe('INVALID_CONFIG');
    expect(errorOf(() => validateTopicConfig([])).code).toBe('INVALID_CONFIG');
  });
});

describe('limits shared with the storage engine', () => {
  it('caps segment size where the log does', async () => {
    const log = await import('../../../../broker/log/options.js');
    expect(MAX_SEGMENT_BYTES).toBe(log.MAX_SEGMENT_BYTES);
  });
});
