import { describe, expect, it } from 'vitest';
import { ERROR_TABLE, SluiceError, errorNameOf, hasCode, isSluiceError } from '../../../../client/protocol/errors.js';

describe('error table', () => {
  it('has unique wire codes', () => {
    const codes = Object.values(ERROR_TABLE).map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
  });
  it('round-trips names through wire codes', () => {
    for (const [name, e] of Object.entries(ERROR_TABLE)) expect(errorNameOf(e.code)).toBe(name);
    expect(errorNameOf(65_000)).toBe('UNKNOWN');
  });
  it('builds errors that carry code, retriable flag and details', () => {
    const err = new SluiceError('OFFSET_OUT_OF_RANGE', undefined, { details: { start: 0, end: 5 } });
    expect(isSluiceError(err)).toBe(true);
    expect(hasCode(err, 'OFFSET_OUT_OF_RANGE')).toBe(true);
    expect(err.wireCode).toBe(22);
    expect(err.retriable).toBe(false);
    expect(err.details).toEqual({ start: 0, end: 5 });
    expect(isSluiceError(new Error('x'))).toBe(false);
  });
});
