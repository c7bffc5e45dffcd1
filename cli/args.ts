import { InvalidArgumentError } from 'commander';

/** A commander argument parser for an integer flag within [min, max]. */
export function intArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} must be an integer in [${min}, ${max}]`);
    }
    return n;
  };
}

export type Position = 'earliest' | 'latest' | number;

/** `earliest`, `latest` or an offset, as `--from` and `--to` take them. */
export function positionArg(flag: string): (value: string) => Position {
  return (value) => {
    if (value === 'earliest' || value === 'latest') return value;
    if (/^\d+$/.test(value)) return Number(value);
    throw new InvalidArgumentError(`${flag} must be earliest, latest or an offset`);
  };
}

/** Collects repeated `--header k=v` flags into a record. */
export function headerArg(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`--header must look like key=value, got ${JSON.stringify(value)}`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}
