import { SluiceError } from '../../client/protocol/errors.js';
import type { GroupLag } from '../../client/protocol/messages/groups.js';
import type { GroupDescription } from '../groups/coordinator.js';
import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

type GroupApi = 'GroupHeartbeat' | 'CommitOffsets' | 'FetchOffsets' | 'ListGroups' | 'DescribeGroup' | 'ResetOffsets';

/** Consumer groups: the coordinator decides; these handlers translate and add log positions. */
export function groupHandlers(s: Services): Pick<HandlerTable, GroupApi> {
  return {
    GroupHeartbeat(req) {
      return s.groups.heartbeat(req, s.now());
    },

    CommitOffsets(req) {
      s.groups.commitOffsets(
        { groupId: req.groupId, memberEpoch: req.memberEpoch, offsets: req.offsets, ...(req.memberId === undefined ? {} : { memberId: req.memberId }) },
        s.now(),
      );
      return { committed: req.offsets.length };
    },

    FetchOffsets(req) {
      if (s.transactions.hasPendingOffsets(req.groupId)) {
        throw new SluiceError('UNSTABLE_OFFSETS', `group ${req.groupId} has offsets staged in an unfinished transaction`, { details: { groupId: req.groupId } });
      }
      return {
        offsets: s.groups.fetchOffsets(req.groupId, req.topic).map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata })),
      };
    },

    ListGroups() {
      return { groups: s.groups.listGroups(s.now()).map((g) => ({ groupId: g.groupId, state: g.state, memberCount: g.memberCount })) };
    },

    DescribeGroup(req) {
      const d = s.groups.describe(req.groupId, s.now());
      return {
        groupId: d.groupId,
        state: d.state,
        groupEpoch: d.groupEpoch,
        members: d.members.map((m) => ({
          memberId: m.memberId,
          clientId: m.clientId,
          memberEpoch: m.memberEpoch,
          subscription: m.subscription,
          assignment: m.assignment,
          pendingRevocation: m.pendingRevocation,
          lastHeartbeatAt: m.lastHeartbeatAt,
        })),
        offsets: lagOf(s, d),
      };
    },

    async ResetOffsets(req) {
      const record = s.topics.require(req.topic);
      const previous = new Map(s.groups.fetchOffsets(req.groupId, req.topic).map((o) => [o.partition, o.offset]));
      const offsets = Array.from({ length: record.partitions }, (_, partition) => {
        const log = s.topics.partition(req.topic, partition);
        const to = req.to === 'earliest' ? log.startOffset : req.to === 'latest' ? log.highWatermark : Math.min(Math.max(req.to, log.startOffset), log.highWatermark);
        return { topic: req.topic, partition, previous: previous.get(partition) ?? null, offset: to };
      });
      if (req.execute) s.groups.resetOffsets(req.groupId, offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })), s.now());
      return { executed: req.execute, offsets };
    },
  };
}

/** Committed offset, end offset and lag for every partition the group commits to or subscribes. */
function lagOf(s: Services, d: GroupDescription): GroupLag[] {
  const committed = new Map(d.offsets.map((o) => [`${o.topic}\u0000${o.partition}`, o]));
  const topics = new Set([...d.offsets.map((o) => o.topic), ...d.members.flatMap((m) => m.subscription)]);
  const rows: GroupLag[] = [];
  for (const topic of [...topics].sort()) {
    const record = s.topics.get(topic);
    if (record === undefined) continue;
    for (let partition = 0; partition < record.partitions; partition++) {
      const log = s.topics.partition(topic, partition);
      const c = committed.get(`${topic}\u0000${partition}`);
      const endOffset = log.highWatermark;
      const from = c?.offset ?? log.startOffset;
      rows.push({ topic, partition, committed: c?.offset ?? null, endOffset, lag: Math.max(0, endOffset - from), metadata: c?.metadata ?? null });
    }
  }
  return rows;
}
