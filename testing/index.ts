/**
 * sluice/testing: check a service's own producers and consumers the way Sluice checks itself.
 * Record what they did (History, or the recorders for the SDK), run them against a TestBroker
 * whose faults come on cue, and let checkHistory say what was lost, duplicated or out of order.
 * docs/testing.md walks through an example.
 */
export { History, HistoryFormatError } from './history.js';
export type {
  HistoryEvent,
  HistoryEventInput,
  HistoryOptions,
  ParseOptions,
  EventType,
  RecordRef,
  TopicPartition,
  PartitionOffset,
  SendEvent,
  PollEvent,
  DeliverEvent,
  AckEvent,
  TxnEvent,
  AssignEvent,
  FaultEvent,
} from './history.js';
export { checkHistory, formatCheck } from './checker.js';
export type * from './checker.js';
export { recordSend, recordPoll, recordDelivery, recordAck, positionRecorder, recordRef, valueText } from './recorders.js';
export { TestBroker, startTestBroker } from './test-broker.js';
export type { TestBrokerOptions, CrashOptions, FaultCounts } from './test-broker.js';
