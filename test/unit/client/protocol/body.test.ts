import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BODY_LIMITS, decodeBody, encodeBody } from '../../../../client/protocol/body.js';
import { hasCode, isSluiceError } from '../../../../client/protocol/errors.js';

// A packer with msgpackr's extensions switched on, to forge what a hostile peer could send.
const hostile = new Packr({ moreTypes: true, useRecords: false });

function refused(bytes: Uint8Array): string {
  try {
    decodeBody(bytes);
  } catch (err) {
    expect(hasCode(err, 'MALFORMED_FRAME')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected the body to be refused');
}

describe('body codec', () => {
  it('round-trips plain data, with binaries as Buffers', () => {
    const value = { a: 1, b: 'two', c: [true, null, 3.5], d: Buffer.from([1, 2, 3]), e: { f: -7 } };
    const back = decodeBody(encodeBody(value)) as typeof value;
    expect(back).toEqual(value);
    expect(Buffer.isBuffer(back.d)).toBe(true);
  });

  it('refuses keys that reach the prototype chain', () => {
    expect(refused(hostile.pack(JSON.parse('{"__proto__": {"polluted": true}}')))).toMatch(/forbidden key/);
    expect(refused(hostile.pack({ constructor: 1 }))).toMatch(/forbidden key "constructor"/);
    expect(refused(hostile.pack({ a: { prototype: 1 } }))).toMatch(/forbidden key "prototype"/);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('never builds class instances from extension types', () => {
    expect(refused(hostile.pack({ when: new Date(0) }))).toMatch(/unsupported value type Date/);
    expect(refused(hostile.pack(new Set([1])))).toMatch(/unsupported value type Set/);
    expect(refused(hostile.pack(new Error('x')))).toMatch(/unsupported value type Error/);
    expect(refused(hostile.pack(/re/g))).toMatch(/unsupported value type RegExp/);
    expect(refused(hostile.pack(new Uint16Array([1, 2])))).toMatch(/unsupported value type Uint16Array/);
  });

  it('enforces nesting, array and map limits', () => {
    let deep: unknown = 1;
    for (let i = 0; i < DEFAULT_BODY_LIMITS.maxDepth + 1; i++) deep = [deep];
    expect(refused(encodeBody(deep))).toMatch(/nesting deeper/);
    const wide = Object.fromEntries(Array.from({ length: DEFAULT_BODY_LIMITS.maxMapKeys + 1 }, (_, i) => [`k${i}`, i]));
    expect(refused(encodeBody(wide))).toMatch(/more than 1024 keys/);
    expect(refused(encodeBody(new Array(DEFAULT_BODY_LIMITS.maxArrayLength + 1).fill(0)))).toMatch(/array longer/);
  });

  it('turns garbage into MALFORMED_FRAME and nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeBody(bytes);
        } catch (err) {
          expect(isSluiceError(err) && err.code === 'MALFORMED_FRAME').toBe(true);
        }
      }),
      { seed: 3, numRuns: 2000 },
    );
  });
});

describe('body codec key and binary limits', () => {
  it('refuses overlong map keys and oversized binaries', () => {
    expect(refused(encodeBody({ ['k'.repeat(DEFAULT_BODY_LIMITS.maxKeyLength + 1)]: 1 }))).toMatch(/map key longer/);
    expect(() => decodeBody(encodeBody({ b: Buffer.alloc(10) }), { ...DEFAULT_BODY_LIMITS, maxBinaryBytes: 4 })).toThrow(/binary larger than 4 bytes/);
  });
});
