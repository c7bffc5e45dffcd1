import type { Handler } from './handler.js';

export const handlePing: Handler<'Ping'> = (request) => request;
