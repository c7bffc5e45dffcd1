import type { Command } from 'commander';
import type { SubscriptionDescription } from '../../client/protocol/messages/push.js';
import { emit, withClient } from '../context.js';

/** `sluice subscription list|describe|delete`: push subscriptions and their delivery state. */
export function registerSubscriptionCommands(program: Command): void {
  const subscription = program.command('subscription').description('list, describe and delete push subscriptions');

  subscription
    .command('list')
    .description('list push subscriptions')
    .action(async (_o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const { subscriptions } = await client.connection.request('ListSubscriptions', {});
        if (!flags.json && subscriptions.length === 0) process.stdout.write('no subscriptions\n');
        for (const s of subscriptions) emit(flags, s, `${s.subscription}\t${s.topic}\t${s.consumers} consumer${s.consumers === 1 ? '' : 's'}`);
      });
    });

  subscription
    .command('describe <name>')
    .description('configuration, consumers, pending, in flight, redelivered, dead-lettered and oldest pending age')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const d = await client.connection.request('DescribeSubscription', { subscription: name });
        emit(flags, d, describeLines(d).join('\n'));
      });
    });

  subscription
    .command('delete <name>')
    .description('delete a push subscription and its delivery state (its dead-letter topic stays)')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const r = await client.connection.request('DeleteSubscription', { subscription: name });
        emit(flags, r, `deleted subscription ${r.subscription}`);
      });
    });
}

function describeLines(d: SubscriptionDescription): string[] {
  const c = d.config;
  const start = c.startOffset !== undefined ? `offset ${c.startOffset}` : c.startTime !== undefined ? `time ${new Date(c.startTime).toISOString()}` : c.start;
  return [
    `subscription ${d.subscription}  topic ${d.topic}  consumers ${d.consumers.length}`,
    `pending ${d.pending}  in flight ${d.inFlight}  redelivered ${d.redelivered}  dead-lettered ${d.deadLettered}  oldest pending age ${d.oldestPendingAgeMs === null ? '-' : `${d.oldestPendingAgeMs} ms`}`,
    `start ${start}  ack wait ${c.ackWaitMs} ms  max deliveries ${c.maxDeliveries}  backoff ${c.backoffMs.length === 0 ? '-' : c.backoffMs.join(',')} ms  ordering ${c.ordering}  dead letters to ${c.deadLetterTopic}`,
    ...d.consumers.map((k) => `consumer ${k.consumerId}  client ${k.clientId}  prefetch ${k.prefetch}  in flight ${k.inFlight}  credit ${k.credit}`),
    'partition\tack floor\tend\tpending\tin flight',
    ...d.partitions.map((p) => `${p.partition}\t${p.ackFloor}\t${p.endOffset}\t${p.pending}\t${p.inFlight}`),
  ];
}
