import type { ApiName, RequestOf, ResponseOf } from '../../client/protocol/messages/index.js';
import type { RequestContext } from '../net/server-connection.js';

/** One request type's handler: a parsed request in, a response out, or a thrown SluiceError. */
export type Handler<K extends ApiName> = (request: RequestOf<K>, ctx: RequestContext) => ResponseOf<K> | Promise<ResponseOf<K>>;

/** Hello belongs to the connection layer; every other request type must have a handler here. */
export type HandledApi = Exclude<ApiName, 'Hello'>;

export type HandlerTable = { readonly [K in HandledApi]: Handler<K> };
