import { SluiceError, errorNameOf, type ErrorName } from '../errors.js';
import { fields } from '../shape.js';

/**
 * Error body, carried by any frame with the ERROR flag (docs/protocol.md, "Errors"):
 *
 *   error = { code: u16, name: str, message: str, details?: map }
 *
 * `code` is authoritative; `name` is there for humans reading a capture.
 */
export interface ErrorBody {
  readonly code: number;
  readonly name: ErrorName;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

export function toErrorBody(err: SluiceError): ErrorBody {
  return {
    code: err.wireCode,
    name: err.code,
    message: err.message,
    ...(err.details === undefined ? {} : { details: err.details }),
  };
}

/** Rebuilds the broker's error on the client side; a malformed error body still yields an error. */
export function fromErrorBody(body: unknown): SluiceError {
  try {
    const o = fields(body, 'Error');
    const code = typeof o['code'] === 'number' ? o['code'] : 1;
    const message = typeof o['message'] === 'string' ? o['message'] : 'broker reported an error';
    const details = typeof o['details'] === 'object' && o['details'] !== null ? (o['details'] as Record<string, unknown>) : undefined;
    return new SluiceError(errorNameOf(code), message, details === undefined ? {} : { details });
  } catch (err) {
    return new SluiceError('UNKNOWN', 'broker sent an unreadable error body', { cause: err });
  }
}
