import type { HelloRequest, HelloResponse } from './hello.js';
import { parseHelloRequest, parseHelloResponse } from './hello.js';
import type { PingBody } from './ping.js';
import { parsePing } from './ping.js';
import * as t from './topics.js';
import * as p from './produce.js';
import * as f from './fetch.js';
import * as g from './groups.js';
import * as u from './push.js';
import * as pr from './producer.js';
import * as tx from './transactions.js';

export * from './hello.js';
export * from './ping.js';
export * from './error.js';
export * from './common.js';
export * from './topics.js';
export * from './produce.js';
export * from './fetch.js';
export * from './groups.js';
export * from './push.js';
export * from './producer.js';
export * from './transactions.js';

type Empty = Record<string, never>;

/**
 * The request/response types of every opcode, by name. The broker's handler table and the SDK's
 * `request()` are both typed from this map, so a new opcode without a handler fails to compile.
 */
export interface Api {
  Hello: { request: HelloRequest; response: HelloResponse };
  Ping: { request: PingBody; response: PingBody };
  CreateTopic: { request: t.CreateTopicRequest; response: t.TopicSummary };
  DeleteTopic: { request: t.TopicRef; response: t.TopicRef };
  ListTopics: { request: Empty; response: t.ListTopicsResponse };
  DescribeTopic: { request: t.TopicRef; response: t.DescribeTopicResponse };
  Produce: { request: p.ProduceRequest; response: p.ProduceResponse };
  Fetch: { request: f.FetchRequest; response: f.FetchResponse };
  ListOffsets: { request: f.ListOffsetsRequest; response: f.ListOffsetsResponse };
  GroupHeartbeat: { request: g.GroupHeartbeatRequest; response: g.GroupHeartbeatResponse };
  CommitOffsets: { request: g.CommitOffsetsRequest; response: { readonly committed: number } };
  FetchOffsets: { request: g.GroupRef; response: { readonly offsets: readonly g.CommittedOffsetInfo[] } };
  ListGroups: { request: Empty; response: { readonly groups: readonly g.GroupSummary[] } };
  DescribeGroup: { request: g.GroupRef; response: g.DescribeGroupResponse };
  ResetOffsets: { request: g.ResetOffsetsRequest; response: g.ResetOffsetsResponse };
  Subscribe: { request: u.SubscribeRequest; response: u.SubscribeResponse };
  Credit: { request: u.CreditRequest; response: { readonly credit: number } };
  Settle: { request: u.SettleRequest; response: u.SettleResponse };
  Unsubscribe: { request: u.UnsubscribeRequest; response: Empty };
  ListSubscriptions: { request: Empty; response: { readonly subscriptions: readonly u.SubscriptionSummary[] } };
  DescribeSubscription: { request: u.SubscriptionRef; response: u.SubscriptionDescription };
  DeleteSubscription: { request: u.SubscriptionRef; response: u.SubscriptionRef };
  InitProducer: { request: pr.InitProducerRequest; response: pr.InitProducerResponse };
  TxnCommitOffsets: { request: tx.TxnCommitOffsetsRequest; response: Empty };
  TxnSettle: { request: tx.TxnSettleRequest; response: Empty };
  EndTxn: { request: tx.EndTxnRequest; response: tx.EndTxnResponse };
}

export type ApiName = keyof Api;
export type RequestOf<K extends ApiName> = Api[K]['request'];
export type ResponseOf<K extends ApiName> = Api[K]['response'];

/** Shape checks for both directions: the broker parses requests, the SDK parses responses. */
export const parsers: { readonly [K in ApiName]: { request(body: unknown): RequestOf<K>; response(body: unknown): ResponseOf<K> } } = {
  Hello: { request: parseHelloRequest, response: parseHelloResponse },
  Ping: { request: parsePing, response: parsePing },
  CreateTopic: { request: t.parseCreateTopicRequest, response: t.parseTopicSummary },
  DeleteTopic: { request: t.parseTopicRef, response: t.parseTopicRef },
  ListTopics: { request: t.parseEmpty, response: t.parseListTopicsResponse },
  DescribeTopic: { request: t.parseTopicRef, response: t.parseDescribeTopicResponse },
  Produce: { request: p.parseProduceRequest, response: p.parseProduceResponse },
  Fetch: { request: f.parseFetchRequest, response: f.parseFetchResponse },
  ListOffsets: { request: f.parseListOffsetsRequest, response: f.parseListOffsetsResponse },
  GroupHeartbeat: { request: g.parseGroupHeartbeatRequest, response: g.parseGroupHeartbeatResponse },
  CommitOffsets: { request: g.parseCommitOffsetsRequest, response: g.parseCommitOffsetsResponse },
  FetchOffsets: { request: g.parseGroupRef, response: g.parseFetchOffsetsResponse },
  ListGroups: { request: t.parseEmpty, response: g.parseListGroupsResponse },
  DescribeGroup: { request: g.parseGroupRef, response: g.parseDescribeGroupResponse },
  ResetOffsets: { request: g.parseResetOffsetsRequest, response: g.parseResetOffsetsResponse },
  Subscribe: { request: u.parseSubscribeRequest, response: u.parseSubscribeResponse },
  Credit: { request: u.parseCreditRequest, response: u.parseCreditResponse },
  Settle: { request: u.parseSettleRequest, response: u.parseSettleResponse },
  Unsubscribe: { request: u.parseUnsubscribeRequest, response: t.parseEmpty },
  ListSubscriptions: { request: t.parseEmpty, response: u.parseListSubscriptionsResponse },
  DescribeSubscription: { request: u.parseSubscriptionRef, response: u.parseDescribeSubscriptionResponse },
  DeleteSubscription: { request: u.parseSubscriptionRef, response: u.parseSubscriptionRef },
  InitProducer: { request: pr.parseInitProducerRequest, response: pr.parseInitProducerResponse },
  TxnCommitOffsets: { request: tx.parseTxnCommitOffsetsRequest, response: t.parseEmpty },
  TxnSettle: { request: tx.parseTxnSettleRequest, response: t.parseEmpty },
  EndTxn: { request: tx.parseEndTxnRequest, response: tx.parseEndTxnResponse },
};
