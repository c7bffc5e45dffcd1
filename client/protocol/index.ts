/** The wire contract: pure codecs and types shared by the broker and the SDK. No I/O here. */
export * from './errors.js';
export * from './opcodes.js';
export * from './frame.js';
export * from './body.js';
export * from './messages/index.js';
