import { SluiceError } from '../../client/protocol/errors.js';
import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

export function topicHandlers(s: Services): Pick<HandlerTable, 'CreateTopic' | 'DeleteTopic' | 'ListTopics' | 'DescribeTopic'> {
  return {
    async CreateTopic(req) {
      const record = await s.topics.create(req, s.now());
      return { topic: record.name, partitions: record.partitions };
    },
    async DeleteTopic(req) {
      const users = s.push.deadLetterUsers(req.topic);
      if (users.length > 0) {
        throw new SluiceError('INVALID_REQUEST', `topic ${req.topic} is the dead-letter topic of subscription ${users.join(', ')}; delete those first`, { details: { subscriptions: users } });
      }
      await s.topics.delete(req.topic);
      s.push.dropTopic(req.topic);
      return { topic: req.topic };
    },
    ListTopics() {
      return { topics: s.topics.list().map((t) => ({ topic: t.name, partitions: t.partitions })) };
    },
    async DescribeTopic(req) {
      await s.topics.ensure(req.topic);
      const record = s.topics.require(req.topic);
      return {
        topic: record.name,
        createdAt: record.createdAt,
        config: record.config,
        partitions: Array.from({ length: record.partitions }, (_, partition) => {
          const log = s.topics.partition(record.name, partition);
          return { partition, startOffset: log.startOffset, endOffset: log.highWatermark };
        }),
      };
    },
  };
}
