import { isSluiceError, type SluiceError } from '../../client/protocol/errors.js';

/** Resolves to what `p` rejects with; fails the test if it resolves instead. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Waits until `done()` holds, checking every 10 ms; throws after `timeoutMs`. */
export async function until(done: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Like rejection(), and also fails the test unless the rejection is a SluiceError. */
export async function sluiceRejection(p: Promise<unknown>): Promise<SluiceError> {
  const err = await rejection(p);
  if (!isSluiceError(err)) throw new Error(`expected a SluiceError, got ${String(err)}`);
  return err;
}
