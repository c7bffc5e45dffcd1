/**
 * The opcode table (docs/protocol.md, "Opcodes"). Requests and their responses share an opcode;
 * the RESPONSE flag tells them apart. Opcode 0 is reserved for connection-level error frames that
 * answer no particular request (e.g. a frame too large to read its header from).
 */
export const Opcode = {
  Connection: 0x00,
  Hello: 0x01,
  Ping: 0x02,
  CreateTopic: 0x10,
  DeleteTopic: 0x11,
  ListTopics: 0x12,
  DescribeTopic: 0x13,
  Produce: 0x20,
  Fetch: 0x21,
  ListOffsets: 0x22,
  GroupHeartbeat: 0x30,
  CommitOffsets: 0x31,
  FetchOffsets: 0x32,
  ListGroups: 0x33,
  DescribeGroup: 0x34,
  ResetOffsets: 0x35,
  Subscribe: 0x40,
  Credit: 0x41,
  Deliver: 0x42,
  Settle: 0x43,
  Unsubscribe: 0x44,
  ListSubscriptions: 0x45,
  DescribeSubscription: 0x46,
  DeleteSubscription: 0x47,
  InitProducer: 0x50,
  TxnCommitOffsets: 0x51,
  TxnSettle: 0x52,
  EndTxn: 0x53,
} as const;

export type OpcodeName = keyof typeof Opcode;
export type OpcodeValue = (typeof Opcode)[OpcodeName];

const NAMES = new Map<number, OpcodeName>(Object.entries(Opcode).map(([k, v]) => [v, k as OpcodeName]));

export function opcodeName(op: number): OpcodeName | undefined {
  return NAMES.get(op);
}
