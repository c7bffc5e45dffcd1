import { describe, expect, it } from 'vitest';
import { parseFetchRequest, parseFetchResponse } from '../../../../client/protocol/messages/fetch.js';
import { parseProduceRequest, parseProduceResponse } from '../../../../client/protocol/messages/produce.js';

// The Produce and Fetch parsers add optional keys after building each item (no spread):
// a key is present exactly when the body has it, and bad values are still named by path.
describe('Produce and Fetch parsers', () => {
  const records = Buffer.from([1, 2, 3]);

  it('Fetch request: isolation and maxBytes only when given', () => {
    const plain = parseFetchRequest({ maxWaitMs: 10, minBytes: 1, maxBytes: 100, isolation: 'read_uncommitted', partitions: [{ topic: 't', partition: 0, offset: 5 }] });
    expect(plain).toStrictEqual({ maxWaitMs: 10, minBytes: 1, maxBytes: 100, partitions: [{ topic: 't', partition: 0, offset: 5 }] });
    const full = parseFetchRequest({ maxWaitMs: 10, minBytes: 1, maxBytes: 100, isolation: 'read_committed', partitions: [{ topic: 't', partition: 1, offset: 5, maxBytes: 7 }] });
    expect(full).toStrictEqual({ maxWaitMs: 10, minBytes: 1, maxBytes: 100, isolation: 'read_committed', partitions: [{ topic: 't', partition: 1, offset: 5, maxBytes: 7 }] });
  });

  it('Fetch request: a bad item is named by its path', () => {
    expect(() => parseFetchRequest({ maxWaitMs: 10, minBytes: 1, maxBytes: 100, partitions: [{ topic: 't', partition: 0, offset: 0 }, { topic: 't', partition: -1, offset: 0 }] })).toThrow(
      'Fetch.partitions[1].partition must be an integer in [0, 2147483647], got number',
    );
    expect(() => parseFetchRequest({ maxWaitMs: 10, minBytes: 1, maxBytes: 100, partitions: [{ topic: 't', partition: 0, offset: 0, maxBytes: 0 }] })).toThrow('Fetch.partitions[0].maxBytes');
  });

  it('Fetch response: error only when given', () => {
    const base = { topic: 't', partition: 0, highWatermark: 9, lastStableOffset: 9, logStartOffset: 0, nextOffset: 9, records };
    expect(parseFetchResponse({ partitions: [base] })).toStrictEqual({ partitions: [base] });
    const error = { code: 3, message: 'no such topic' };
    const parsed = parseFetchResponse({ partitions: [{ ...base, error }] });
    expect(parsed.partitions[0]!.error).toMatchObject(error);
    expect(() => parseFetchResponse({ partitions: [{ ...base, records: 'x' }] })).toThrow('FetchResponse.partitions[0].records must be binary');
  });

  it('Produce request and response: error and duplicate only when given', () => {
    expect(parseProduceRequest({ batches: [{ topic: 't', partition: 2, batch: records }] })).toStrictEqual({ batches: [{ topic: 't', partition: 2, batch: records }] });
    const ok = { topic: 't', partition: 0, baseOffset: 3, lastOffset: 4 };
    expect(parseProduceResponse({ results: [ok] })).toStrictEqual({ results: [ok] });
    expect(parseProduceResponse({ results: [{ ...ok, duplicate: true }] })).toStrictEqual({ results: [{ ...ok, duplicate: true }] });
    expect(parseProduceResponse({ results: [{ ...ok, duplicate: false }] })).toStrictEqual({ results: [ok] });
    const withError = parseProduceResponse({ results: [{ ...ok, error: { code: 3, message: 'no' } }] });
    expect(withError.results[0]!.error).toMatchObject({ code: 3, message: 'no' });
    expect(() => parseProduceResponse({ results: [{ ...ok, baseOffset: 1.5 }] })).toThrow('ProduceResponse.results[0].baseOffset');
  });
});
