import type { HelloRequest, HelloResponse } from './hello.js';
import { parseHelloRequest, parseHelloResponse } from './hello.js';
import type { PingBody } from './ping.js';
import { parsePing } from './ping.js';

export * from './hello.js';
export * from './ping.js';
export * from './error.js';

/**
 * The request/response types of every opcode, by name. The broker's handler table and the SDK's
 * `request()` are both typed from this map, so a new opcode without a handler fails to compile.
 */
export interface Api {
  Hello: { request: HelloRequest; response: HelloResponse };
  Ping: { request: PingBody; response: PingBody };
}

export type ApiName = keyof Api;
export type RequestOf<K extends ApiName> = Api[K]['request'];
export type ResponseOf<K extends ApiName> = Api[K]['response'];

/** Shape checks for both directions: the broker parses requests, the SDK parses responses. */
export const parsers: { readonly [K in ApiName]: { request(body: unknown): RequestOf<K>; response(body: unknown): ResponseOf<K> } } = {
  Hello: { request: parseHelloRequest, response: parseHelloResponse },
  Ping: { request: parsePing, response: parsePing },
};
