/** The Sluice SDK: what services import as `sluice`. */
export { Connection } from './connection.js';
export type { ConnectionOptions, ConnectionState, RequestOptions } from './connection.js';
export { SluiceError, isSluiceError, hasCode, ERROR_TABLE } from './protocol/errors.js';
export type { ErrorName, SluiceErrorOptions } from './protocol/errors.js';
export { DEFAULT_BROKER, parseBrokerAddress } from './internal/broker-address.js';
export type { BrokerAddress } from './internal/broker-address.js';
export { connect, SluiceClient } from './client.js';
export { Producer } from './producer.js';
export type { ProducerOptions, ProducerConfig, ProducerMessage, RecordMetadata } from './producer.js';
export { Admin } from './admin.js';
export type { CreateTopicOptions, PartitionOffset, ResetGroupOffsetsOptions, DescribeGroupResponse, GroupSummary, ResetOffsetsResponse, DescribeTopicResponse, TopicSettings, TopicSummary, OffsetSpec } from './admin.js';
export { murmur2, partitionForKey } from './partitioner.js';
export type { Message, MessageHeaders } from './value-codec.js';
export { PollConsumer } from './poll-consumer.js';
export type { PollConsumerOptions, StartFrom } from './poll-consumer.js';
export type { TopicPartitionKey } from './internal/group-membership.js';
