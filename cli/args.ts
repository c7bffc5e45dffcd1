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
