/** The Sluice SDK: what services import as `sluice`. */
export { Connection } from './connection.js';
export type { ConnectionOptions, ConnectionState, RequestOptions } from './connection.js';
export { SluiceError, isSluiceError, hasCode, ERROR_TABLE } from './protocol/errors.js';
export type { ErrorName, SluiceErrorOptions } from './protocol/errors.js';
export { DEFAULT_BROKER, parseBrokerAddress } from './internal/broker-address.js';
export type { BrokerAddress } from './internal/broker-address.js';
