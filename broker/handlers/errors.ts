import { SluiceError, isSluiceError } from '../../client/protocol/errors.js';
import { toErrorBody, type ErrorBody } from '../../client/protocol/messages/error.js';

/** A per-partition error for a response that succeeds as a whole. */
export function partitionError(err: unknown): ErrorBody {
  return toErrorBody(isSluiceError(err) ? err : new SluiceError('UNKNOWN', undefined, { cause: err }));
}
